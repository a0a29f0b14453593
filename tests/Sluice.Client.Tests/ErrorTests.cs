using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Sluice.Gateway.Accounting;
using Sluice.Providers;
using Sluice.Providers.Simulation;
using static Sluice.Client.Tests.Streams;

namespace Sluice.Client.Tests;

/// <summary>Each failure class against a real gateway (simulation fault switches), plus retries, timeouts and cancellation.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ErrorTests(GatewayFixture gateway)
{
    private const string Prompt = "Tell me about rivers";

    [Theory]
    [InlineData(429, typeof(SluiceRateLimitException), "rate_limit_exceeded")]
    [InlineData(500, typeof(SluiceServerException), "simulated_failure")]
    [InlineData(401, typeof(SluiceAuthenticationException), "invalid_api_key")]
    [InlineData(403, typeof(SluicePermissionException), "permission_denied")]
    public async Task Error_statuses_before_the_first_token_raise_their_own_type_with_the_servers_details(int status, Type expected, string code)
    {
        using var client = gateway.Client(o => o.MaxRetries = 0);

        var ex = await Assert.ThrowsAnyAsync<SluiceException>(() => client.GetResponseAsync(User(Prompt), GatewayFixture.Faults(("sim_fail_status", status.ToString(System.Globalization.CultureInfo.InvariantCulture)))));

        Assert.IsType(expected, ex);
        Assert.Equal(status, ex.StatusCode);
        Assert.Equal(code, ex.ErrorCode);
        Assert.Contains("Simulated", ex.ServerMessage, StringComparison.Ordinal);
        Assert.Contains(ex.ServerMessage!, ex.Message, StringComparison.Ordinal);
        Assert.Matches("^[0-9a-f]{32}$", ex.RequestId);
        Assert.Contains(ex.RequestId!, ex.Message, StringComparison.Ordinal);
        if (ex is SluiceRateLimitException rate)
        {
            Assert.Equal(TimeSpan.FromSeconds(1), rate.RetryAfter);
        }
    }

    [Fact]
    public async Task Unknown_model_is_not_found_with_code_and_param()
    {
        using var client = gateway.Client();

        var ex = await Assert.ThrowsAsync<SluiceNotFoundException>(() => client.GetResponseAsync(User(Prompt), new ChatOptions { ModelId = "no-such-model" }));

        Assert.Equal(404, ex.StatusCode);
        Assert.Equal("model_not_found", ex.ErrorCode);
        Assert.Equal("model", ex.Param);
        Assert.Contains("The model 'no-such-model' does not exist", ex.Message, StringComparison.Ordinal);
        Assert.NotNull(ex.RequestId);
    }

    [Fact]
    public async Task Bad_temperature_is_a_bad_request_naming_the_param_and_is_not_retried()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);

        var ex = await Assert.ThrowsAsync<SluiceBadRequestException>(() => client.GetResponseAsync(User(Prompt), new ChatOptions { Temperature = 7 }));

        Assert.Equal(400, ex.StatusCode);
        Assert.Equal("temperature", ex.Param);
        Assert.Equal("invalid_request_error", ex.Details.Type);
        Assert.Contains("parameter 'temperature'", ex.Message, StringComparison.Ordinal);
        Assert.Single(trace.Requests);
    }

    [Fact]
    public async Task Error_frame_mid_stream_raises_a_stream_error_after_the_partial_text()
    {
        using var client = gateway.Client();
        var received = new List<ChatResponseUpdate>();

        var ex = await Assert.ThrowsAsync<SluiceStreamException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(User(Prompt), GatewayFixture.Faults(("sim_fail_after_tokens", "3"))))
            {
                received.Add(update);
            }
        });

        Assert.Equal(3, received.Count(u => u.Text.Length > 0));
        Assert.Equal("simulated_failure", ex.ErrorCode);
        Assert.Contains("failure after 3 tokens", ex.ServerMessage, StringComparison.Ordinal);
        Assert.Contains("incomplete", ex.Message, StringComparison.Ordinal);
        Assert.NotNull(ex.RequestId);
    }

    [Fact]
    public async Task Retries_a_429_after_its_Retry_After_and_then_streams_the_answer()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        var backend = (SimulatedChatBackend)GetBackend(GatewayFixture.FlakyModel);

        var response = await client.GetResponseAsync(User(Prompt), new ChatOptions { ModelId = GatewayFixture.FlakyModel, MaxOutputTokens = 6 });

        Assert.Equal(6, response.Usage?.OutputTokenCount);
        Assert.Equal([429, 200], trace.Statuses);
        Assert.Equal(2, trace.Requests.Count);
        Assert.Equal(2, backend.RequestsStarted);
    }

    [Fact]
    public async Task Retries_are_bounded_and_a_Retry_After_beyond_the_allowed_wait_is_raised_at_once()
    {
        var bounded = new RecordingTrace();
        using var retrying = gateway.Client(o =>
        {
            o.Trace = bounded;
            o.MaxRetries = 2;
        });
        var impatient = new RecordingTrace();
        using var refusing = gateway.Client(o =>
        {
            o.Trace = impatient;
            o.MaxRetryDelay = TimeSpan.FromSeconds(2);
        });

        await Assert.ThrowsAsync<SluiceServerException>(() => retrying.GetResponseAsync(User(Prompt), GatewayFixture.Faults(("sim_fail_status", "500"))));
        var rate = await Assert.ThrowsAsync<SluiceRateLimitException>(() => refusing.GetResponseAsync(User(Prompt), GatewayFixture.Faults(("sim_fail_status", "429"), ("sim_retry_after", "60"))));

        Assert.Equal(3, bounded.Requests.Count);
        Assert.Single(impatient.Requests);
        Assert.Equal(TimeSpan.FromSeconds(60), rate.RetryAfter);
        Assert.Contains("60 s (Retry-After)", rate.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connection_refused_is_retried_then_raised_as_a_connection_error()
    {
        var trace = new RecordingTrace();
        using var client = new SluiceChatClient(new SluiceClientOptions
        {
            Endpoint = new Uri($"http://127.0.0.1:{ScriptedServer.UnusedPort()}"),
            RetryDelay = TimeSpan.FromMilliseconds(10),
            MaxRetries = 1,
            Trace = trace,
        });

        var ex = await Assert.ThrowsAsync<SluiceConnectionException>(() => client.GetResponseAsync(User(Prompt)));

        Assert.Contains("connection refused", ex.Message, StringComparison.Ordinal);
        Assert.Null(ex.StatusCode);
        Assert.Equal(2, trace.Requests.Count);
    }

    [Fact]
    public async Task First_token_timeout_fires_when_the_model_stalls_before_answering()
    {
        using var client = gateway.Client(o => o.FirstTokenTimeout = TimeSpan.FromMilliseconds(300));

        // The stall (20 s) outlasts the limit by far: only the client's timer can end this call.
        var ex = await Assert.ThrowsAsync<SluiceTimeoutException>(() => client.GetResponseAsync(User(Prompt), GatewayFixture.Faults(("sim_stall_ms", "20000"))));

        Assert.Equal(SluiceTimeoutKind.FirstToken, ex.Kind);
        Assert.Contains("FirstTokenTimeout", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Idle_timeout_fires_when_the_stream_goes_silent_after_tokens()
    {
        using var client = gateway.Client(o => o.IdleTimeout = TimeSpan.FromMilliseconds(300));
        var received = new List<ChatResponseUpdate>();

        var ex = await Assert.ThrowsAsync<SluiceTimeoutException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(User(Prompt), GatewayFixture.Faults(("sim_stall_ms", "20000"), ("sim_stall_after_tokens", "2"))))
            {
                received.Add(update);
            }
        });

        Assert.Equal(SluiceTimeoutKind.Idle, ex.Kind);
        Assert.Equal(2, received.Count(u => u.Text.Length > 0));
    }

    [Fact]
    public async Task Total_timeout_ends_a_stream_that_is_still_flowing()
    {
        using var client = gateway.Client(o => o.TotalTimeout = TimeSpan.FromMilliseconds(500));
        var received = new List<ChatResponseUpdate>();

        // 400 tokens at 20 tokens/s take 20 s; tokens keep flowing, so only the total limit can end it.
        var ex = await Assert.ThrowsAsync<SluiceTimeoutException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(User(Prompt), new ChatOptions { ModelId = GatewayFixture.PacedModel, MaxOutputTokens = 400 }))
            {
                received.Add(update);
            }
        });

        Assert.Equal(SluiceTimeoutKind.Total, ex.Kind);
        Assert.InRange(received.Count(u => u.Text.Length > 0), 1, 399);
    }

    [Fact]
    public async Task Cancelling_mid_stream_throws_OperationCanceled_promptly_and_the_gateway_sees_the_stream_abandoned()
    {
        using var client = gateway.Client();
        var totals = gateway.Gateway.GetRequiredService<UsageTotals>();
        var abandonedBefore = totals.Abandoned;
        using var cts = new CancellationTokenSource();
        var received = 0;
        var watch = new Stopwatch();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(User(Prompt), new ChatOptions { ModelId = GatewayFixture.PacedModel, MaxOutputTokens = 400 }, cts.Token))
            {
                if (update.Text.Length > 0 && ++received == 3)
                {
                    watch.Start();
                    await cts.CancelAsync();
                }
            }
        });
        watch.Stop();

        Assert.Equal(3, received);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), $"cancellation took {watch.Elapsed}");
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (totals.Abandoned == abandonedBefore)
        {
            await Task.Delay(20, deadline.Token);
        }
    }

    [Fact]
    public async Task A_pre_cancelled_token_sends_nothing()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(User(Prompt), cancellationToken: cts.Token));

        Assert.All(trace.Statuses, s => Assert.Fail($"a response arrived ({s})"));
    }

    [Fact]
    public async Task Insufficient_credits_403_is_its_own_type_and_still_a_permission_error()
    {
        await using var server = await ScriptedServer.StartAsync(app => app.MapPost("/v1/chat/completions", (HttpContext context) =>
        {
            context.Response.Headers["x-request-id"] = "req-credits";
            return Results.Json(new { error = new { message = "Team t1 has no credits left. Add credits, then retry.", type = "permission_error", code = "insufficient_credits" } }, statusCode: 403);
        }));
        using var client = new SluiceChatClient(server.Url);

        var ex = await Assert.ThrowsAsync<SluiceInsufficientCreditsException>(() => client.GetResponseAsync(User(Prompt)));

        Assert.IsAssignableFrom<SluicePermissionException>(ex);
        Assert.Equal("insufficient_credits", ex.ErrorCode);
        Assert.Equal("req-credits", ex.RequestId);
        Assert.Contains("add credits", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Other_servers_error_shapes_and_non_stream_answers_are_understood()
    {
        await using var server = await ScriptedServer.StartAsync(app =>
        {
            app.MapPost("/detail/v1/chat/completions", () => Results.Json(new { detail = "Job not found" }, statusCode: 404));
            app.MapPost("/text/v1/chat/completions", () => Results.Text("upstream exploded", statusCode: 502));
            app.MapPost("/json/v1/chat/completions", () => Results.Json(new { hello = "world" }));
        });

        using var detail = new SluiceChatClient(new Uri(server.Url, "/detail/v1"));
        using var text = new SluiceChatClient(new SluiceClientOptions { Endpoint = new Uri(server.Url, "/text/v1"), MaxRetries = 0 });
        using var json = new SluiceChatClient(new Uri(server.Url, "/json/v1"));

        Assert.Equal("Job not found", (await Assert.ThrowsAsync<SluiceNotFoundException>(() => detail.GetResponseAsync(User("x")))).ServerMessage);
        Assert.Equal("upstream exploded", (await Assert.ThrowsAsync<SluiceServerException>(() => text.GetResponseAsync(User("x")))).ServerMessage);
        Assert.Contains("instead of an event stream", (await Assert.ThrowsAsync<SluiceServerException>(() => json.GetResponseAsync(User("x")))).Message, StringComparison.Ordinal);
    }

    private IChatBackend GetBackend(string model)
    {
        Assert.True(gateway.Gateway.GetRequiredService<ModelCatalog>().TryGet(model, out var entry));
        return entry.Backend;
    }
}

/// <summary>The connect limit, against a listener whose accept queue is full (the kernel drops further SYNs).</summary>
public sealed class ConnectTimeoutTests
{
    [Fact]
    public async Task Connect_timeout_fires_when_the_server_never_completes_the_handshake()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;

        // Fill the accept queue (never accepted) so that the client's connection attempt hangs.
        var fillers = new List<Socket>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(filler);
                using var quick = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
                try
                {
                    await filler.ConnectAsync(endpoint, quick.Token);
                }
                catch (OperationCanceledException)
                {
                    break; // the queue is full
                }
            }

            using var client = new SluiceChatClient(new SluiceClientOptions
            {
                Endpoint = new Uri($"http://127.0.0.1:{endpoint.Port}"),
                ConnectTimeout = TimeSpan.FromMilliseconds(300),
                FirstTokenTimeout = TimeSpan.FromSeconds(5),
                MaxRetries = 0,
            });

            var ex = await Assert.ThrowsAsync<SluiceTimeoutException>(() => client.GetResponseAsync(Streams.User("Hi")));

            Assert.Equal(SluiceTimeoutKind.Connect, ex.Kind);
            Assert.Contains("ConnectTimeout", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            fillers.ForEach(f => f.Dispose());
        }
    }
}
