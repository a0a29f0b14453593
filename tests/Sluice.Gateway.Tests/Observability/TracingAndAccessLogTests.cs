using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Trace;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Sluice.Providers;
using Sluice.Providers.Simulation;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>The span structure of a call and the access log line.</summary>
public sealed class TracingAndAccessLogTests
{
    private static readonly byte[] UpstreamAnswer = Encoding.UTF8.GetBytes(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n"
        + "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        + "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n"
        + "data: [DONE]\n\n");

    [Theory]
    [InlineData("sluice")]
    [InlineData("dotnet")]
    public async Task A_call_is_a_gateway_span_under_the_callers_traceparent_with_an_upstream_client_span_whose_context_reaches_the_upstream(string upstreamClient)
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamAnswer);
        var spans = new ConcurrentQueue<Activity>();
        var dataDirectory = Path.Combine(Path.GetTempPath(), "sluice-trace-test-" + Guid.NewGuid().ToString("N"));
        var options = new GatewayOptions
        {
            Port = 0,
            DataDirectory = dataDirectory,
            Models = [new ModelOptions { Name = "up", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "gpt-up", UpstreamClient = upstreamClient }],
        };
        await using var gateway = await SluiceGateway.StartAsync(
            options,
            services => services.AddOpenTelemetry().WithTracing(t => t.AddSluiceInstrumentation().AddInMemoryExporter(new SpanList(spans))),
            logging => logging.SetMinimumLevel(LogLevel.Warning));
        using var client = new HttpClient { BaseAddress = gateway.BaseAddress };

        // The caller's context: the test client's HTTP span is its child and carries it to the gateway.
        var traceId = ActivityTraceId.CreateRandom();
        var callerSpan = ActivitySpanId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = TestGateway.Json("""{"model":"up","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":9,"temperature":0.5}"""),
        };
        HttpResponseMessage response;
        using (var callerActivity = new Activity("test-caller").SetParentId(traceId, callerSpan, ActivityTraceFlags.Recorded).Start())
        {
            response = await client.SendAsync(request);
        }

        using var answered = response;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("[DONE]", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Spans are exported when they stop: the call span just after the last byte, the server span after the
        // response completes, which can be later than the client has read the body. Wait for both.
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (!(spans.Any(s => s.TraceId == traceId && s.OperationName == "gateway.call")
                 && spans.Any(s => s.TraceId == traceId && s.Kind == ActivityKind.Server && s.DisplayName == "POST /v1/chat/completions"))
               && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(20);
        }

        var trace = spans.Where(s => s.TraceId == traceId).ToList();

        // The gateway's server span continues the caller's trace (through the client's HTTP span).
        var server = Assert.Single(trace, s => s.Kind == ActivityKind.Server && s.DisplayName == "POST /v1/chat/completions");
        Assert.NotEqual(default, server.ParentSpanId);
        var call = Assert.Single(trace, s => s.OperationName == "gateway.call");
        Assert.Equal(server.SpanId, call.ParentSpanId);
        Assert.Equal("gateway chat up", call.DisplayName);
        Assert.Equal("chat", call.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("up", call.GetTagItem("gen_ai.request.model"));
        Assert.Equal("openai", call.GetTagItem("sluice.dialect"));
        Assert.Equal("completed", call.GetTagItem("sluice.outcome"));
        Assert.Equal(7, call.GetTagItem("gen_ai.usage.input_tokens"));
        Assert.Equal(2, call.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(response.Headers.GetValues("x-request-id").Single(), call.GetTagItem("sluice.request_id"));

        var upstreamSpan = Assert.Single(trace, s => s.Source.Name == ProviderTelemetry.ActivitySourceName);
        Assert.Equal(call.SpanId, upstreamSpan.ParentSpanId);
        Assert.Equal(ActivityKind.Client, upstreamSpan.Kind);
        Assert.Equal("chat gpt-up", upstreamSpan.DisplayName);
        Assert.Equal("openai", upstreamSpan.GetTagItem("gen_ai.provider.name"));
        Assert.Equal("gpt-up", upstreamSpan.GetTagItem("gen_ai.request.model"));
        Assert.Equal(9, upstreamSpan.GetTagItem("gen_ai.request.max_tokens"));
        Assert.Equal(0.5, upstreamSpan.GetTagItem("gen_ai.request.temperature"));
        Assert.Equal("127.0.0.1", upstreamSpan.GetTagItem("server.address"));
        Assert.Equal(new[] { "stop" }, upstreamSpan.GetTagItem("gen_ai.response.finish_reasons"));

        var sent = Assert.Single(upstream.Requests).Headers["traceparent"];
        if (upstreamClient == "dotnet")
        {
            // HttpClient's span sits under the upstream span, and its context is what the upstream received.
            var http = Assert.Single(trace, s => s.Kind == ActivityKind.Client && s.ParentSpanId == upstreamSpan.SpanId);
            Assert.StartsWith("System.Net.Http", http.Source.Name, StringComparison.Ordinal);
            Assert.Equal($"00-{traceId}-{http.SpanId}-01", sent);
        }
        else
        {
            // Sluice's own HTTP/1.1 client makes no span of its own: the upstream span is the client span the upstream sees.
            Assert.DoesNotContain(trace, s => s.Kind == ActivityKind.Client && s.ParentSpanId == upstreamSpan.SpanId);
            Assert.Equal($"00-{traceId}-{upstreamSpan.SpanId}-01", sent);
        }
    }

    [Fact]
    public async Task The_access_log_has_one_line_per_call_with_its_fields_and_never_the_key_or_the_prompt()
    {
        var lines = new ConcurrentQueue<(string Category, string Message, IReadOnlyList<KeyValuePair<string, object?>> State)>();
        var store = "sqlite:" + Path.Combine(Path.GetTempPath(), "sluice-access-" + Guid.NewGuid().ToString("N"), "sluice.db");
        const string master = "test-master-key-0123456789abcdef";
        var options = new GatewayOptions { Port = 0, Store = store, MasterKey = master, Models = [.. BuiltInModels.All] };
        await using var gateway = await SluiceGateway.StartAsync(
            options,
            configureLogging: logging => logging.SetMinimumLevel(LogLevel.Information).AddProvider(new CapturingProvider(lines)));
        using var admin = new HttpClient { BaseAddress = gateway.BaseAddress };
        admin.DefaultRequestHeaders.Authorization = new("Bearer", master);
        var org = await admin.PostAsync("api/organizations/create", TestGateway.Json("""{"name":"org"}"""));
        var orgId = System.Text.Json.JsonDocument.Parse(await org.Content.ReadAsStringAsync()).RootElement.GetProperty("organization_id").GetString();
        var team = await admin.PostAsync("api/teams/create", TestGateway.Json($$"""{"organization_id":"{{orgId}}","team_alias":"t","credits_allocated":10}"""));
        var teamJson = System.Text.Json.JsonDocument.Parse(await team.Content.ReadAsStringAsync()).RootElement;
        var key = teamJson.GetProperty("virtual_key").GetString()!;
        var teamId = teamJson.GetProperty("team_id").GetString()!;

        using var client = new HttpClient { BaseAddress = gateway.BaseAddress };
        client.DefaultRequestHeaders.Authorization = new("Bearer", key);
        const string secretPrompt = "the-secret-prompt-words";
        using var response = await client.PostAsync("v1/chat/completions", TestGateway.Json(
            $$"""{"model":"sim-fast","messages":[{"role":"user","content":"{{secretPrompt}}"}],"stream":true,"max_tokens":5}"""));
        _ = await response.Content.ReadAsStringAsync();
        var requestId = response.Headers.GetValues("x-request-id").Single();

        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (!lines.Any(l => l.Category == "Sluice.AccessLog") && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(20);
        }

        var line = Assert.Single(lines, l => l.Category == "Sluice.AccessLog");
        var fields = line.State.Where(p => p.Key != "{OriginalFormat}").ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(requestId, fields["RequestId"]);
        Assert.Equal("openai", fields["Dialect"]);
        Assert.Equal("sim-fast", fields["Model"]);
        Assert.Equal(200, fields["Status"]);
        Assert.Equal("completed", fields["Outcome"]);
        Assert.Equal(teamId, fields["TeamId"]);
        Assert.StartsWith("key_", Assert.IsType<string>(fields["KeyId"]), StringComparison.Ordinal);
        Assert.IsType<double>(fields["TtftMs"]);
        Assert.True((double)fields["DurationMs"]! > 0);
        Assert.True((int)fields["TokensIn"]! > 0);
        Assert.True((int)fields["TokensOut"]! > 0);
        Assert.Contains($"{requestId} openai model=sim-fast status=200 outcome=completed team={teamId}", line.Message, StringComparison.Ordinal);

        var everything = string.Join("\n", lines.Select(l => l.Message + " " + string.Join(" ", l.State.Select(p => p.Value))));
        Assert.DoesNotContain(key, everything, StringComparison.Ordinal);
        Assert.DoesNotContain(key["sk-sluice-".Length..], everything, StringComparison.Ordinal);
        Assert.DoesNotContain(master, everything, StringComparison.Ordinal);
        Assert.DoesNotContain(secretPrompt, everything, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_the_debug_option_the_access_log_carries_the_prompt_and_a_refusal_has_its_line_too()
    {
        var lines = new ConcurrentQueue<(string Category, string Message, IReadOnlyList<KeyValuePair<string, object?>> State)>();
        var options = new GatewayOptions
        {
            Port = 0,
            DataDirectory = Path.Combine(Path.GetTempPath(), "sluice-access-" + Guid.NewGuid().ToString("N")),
            Models = [.. BuiltInModels.All],
        };
        options.Observability.AccessLog.IncludePrompts = true;
        await using var gateway = await SluiceGateway.StartAsync(
            options,
            configureLogging: logging => logging.SetMinimumLevel(LogLevel.Information).AddProvider(new CapturingProvider(lines)));
        using var client = new HttpClient { BaseAddress = gateway.BaseAddress };
        (await client.PostAsync("v1/chat/completions", TestGateway.Json("""{"model":"sim-fast","messages":[{"role":"user","content":"lighthouse keepers"}],"max_tokens":3}"""))).Dispose();
        (await client.PostAsync("v1/chat/completions", TestGateway.Json("""{"model":"nope","messages":[{"role":"user","content":"x"}]}"""))).Dispose();

        // What a caller chose reaches the log escaped: no forged line, no terminal escape sequence, no NUL.
        (await client.PostAsync("v1/chat/completions", TestGateway.Json(
            """{"model":"evil\n00:00:00 info: forged\u001b[31m\u0000","messages":[{"role":"user","content":"two\nlines\u202e"}]}"""))).Dispose();

        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (lines.Count(l => l.Category == "Sluice.AccessLog") < 3 && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(20);
        }

        var access = lines.Where(l => l.Category == "Sluice.AccessLog").ToList();
        Assert.Equal(3, access.Count);
        var hostile = Assert.Single(access, l => l.Message.Contains("model=evil", StringComparison.Ordinal)).Message;
        Assert.Contains(@"model=evil\n00:00:00 info: forged\u001b[31m\u0000 status=404", hostile, StringComparison.Ordinal);
        Assert.Contains(@"prompt=two\nlines\u202e", hostile, StringComparison.Ordinal);
        Assert.DoesNotContain(hostile, c => char.IsControl(c) || c == '\u202e');
        Assert.Contains(access, l => l.Message.Contains("prompt=lighthouse keepers", StringComparison.Ordinal) && l.Message.Contains("status=200", StringComparison.Ordinal));
        Assert.Contains(access, l => l.Message.Contains("model=nope status=404 outcome=refused", StringComparison.Ordinal) && l.Message.Contains("error=model_not_found", StringComparison.Ordinal));
    }

    private sealed class SpanList(ConcurrentQueue<Activity> spans) : ICollection<Activity>
    {
        public int Count => spans.Count;

        public bool IsReadOnly => false;

        public void Add(Activity item) => spans.Enqueue(item);

        public void Clear() => spans.Clear();

        public bool Contains(Activity item) => spans.Contains(item);

        public void CopyTo(Activity[] array, int arrayIndex) => spans.CopyTo(array, arrayIndex);

        public IEnumerator<Activity> GetEnumerator() => spans.GetEnumerator();

        public bool Remove(Activity item) => throw new NotSupportedException();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private sealed class CapturingProvider(ConcurrentQueue<(string Category, string Message, IReadOnlyList<KeyValuePair<string, object?>> State)> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, lines);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<(string, string, IReadOnlyList<KeyValuePair<string, object?>>)> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var pairs = state as IReadOnlyList<KeyValuePair<string, object?>> ?? [];
                lines.Enqueue((category, formatter(state, exception), [.. pairs]));
            }
        }
    }
}
