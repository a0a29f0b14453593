using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Http;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Upstreams that fail, stall, drip, reject, or get abandoned.</summary>
public sealed class FaultTests
{
    private const string OpenAIChunk = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";

    [Theory]
    [InlineData("openai", "openai/text-b.sse")]
    [InlineData("anthropic", "anthropic/tool_use_response.sse")]
    [InlineData("gemini", "gemini/googleai/streaming-success-citations.sse")]
    public async Task Upstream_dying_mid_stream_is_an_error_after_the_events_already_received(string provider, string fixture)
    {
        var pieces = ReplayUpstream.SplitEvents(Fixtures.Read(fixture));
        var received = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            foreach (var piece in pieces.Take(pieces.Count / 2))
            {
                await context.Response.Body.WriteAsync(piece, context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
            }

            // Reset the connection once the adapter has passed something on (a reset discards unread bytes).
            await received.Task.WaitAsync(TimeSpan.FromSeconds(10), context.RequestAborted);
            context.Abort();
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);

        var events = new List<ChatStreamEvent>();
        Exception? failure = null;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), timeout.Token))
            {
                events.Add(e);
                received.TrySetResult();
            }
        }
        catch (ChatException caught)
        {
            failure = caught;
        }

        Assert.NotEmpty(events);
        Assert.DoesNotContain(events, e => e is FinishEvent || (e is OpenAIChunkEvent chunk && chunk.Events.Any(i => i is FinishEvent)));
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_connection_lost", ex.Error.Code);
        Assert.Contains("Retry", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Malformed_json_line_is_an_error()
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(OpenAIChunk + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"\n\n"));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.Single(events);
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_malformed", ex.Error.Code);
    }

    [Fact]
    public async Task OpenAI_error_frame_mid_stream_is_an_error_event()
    {
        // llama.cpp ends a failed stream this way (and vLLM adds [DONE] after it, which must not make it a success).
        const string Error = "data: {\"error\":{\"code\":500,\"message\":\"context shift failed\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(OpenAIChunk + Error));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);
        var events = await rig.CollectAsync();

        Assert.IsType<OpenAIChunkEvent>(events[0]);
        var error = Assert.IsType<ErrorEvent>(events[^1]);
        Assert.Contains("context shift failed", error.Error.Message, StringComparison.Ordinal);
        Assert.Equal(2, events.Count);
    }

    [Fact]
    public async Task OpenAI_stream_closing_without_done_or_finish_is_an_error()
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(OpenAIChunk + OpenAIChunk));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.Equal(2, events.Count);
        Assert.Equal("upstream_truncated", Assert.IsType<ChatException>(failure).Error.Code);
    }

    [Fact]
    public async Task OpenAI_stream_closing_after_every_choice_finished_is_accepted_without_done()
    {
        var recording = Encoding.UTF8.GetString(Fixtures.Read("openai/length-cutoff.sse")).Replace("data: [DONE]", string.Empty, StringComparison.Ordinal);
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(recording));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var answer = UpstreamKit.Assemble(await rig.CollectAsync());
        Assert.Equal("length", Assert.Single(answer.Choices).FinishReason);
    }

    [Theory]
    [InlineData("openai")]
    [InlineData("anthropic")]
    [InlineData("gemini")]
    [InlineData("ollama")]
    public async Task Stall_beyond_idle_timeout_is_a_504_naming_the_setting(string provider)
    {
        var first = provider switch
        {
            "openai" => OpenAIChunk,
            "anthropic" => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "gemini" => "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\n\n",
            _ => "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
        };
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.RequestAborted.Register(() => aborted.TrySetResult());
            await context.Response.WriteAsync(first, context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream, o => o.IdleTimeoutMs = 300);

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.Single(events);
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(504, ex.StatusCode);
        Assert.Equal(ErrorTypes.Timeout, ex.Error.Type);
        Assert.Contains("IdleTimeoutMs", ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains("went silent mid-answer for more than 300 ms", ex.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("for within", ex.Error.Message, StringComparison.Ordinal);
        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_first_token_slower_than_the_idle_limit_is_fine_and_silence_after_it_is_still_caught()
    {
        // The timer's first wake-up comes at the idle limit even before the answer starts (so the start needs no timer
        // change): it must only re-arm then, and the idle limit must still hold once the answer has started.
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(700, context.RequestAborted);
            for (var i = 0; i < 5; i++)
            {
                await context.Response.WriteAsync(OpenAIChunk, context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
                await Task.Delay(50, context.RequestAborted);
            }

            await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, o =>
        {
            o.FirstTokenTimeoutMs = 10_000;
            o.IdleTimeoutMs = 300;
        });

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.True(events.Count >= 1, "the first token came after the idle limit but within the first-token limit");
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(504, ex.StatusCode);
        Assert.Contains("went silent mid-answer for more than 300 ms", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_answer_longer_than_the_idle_limit_is_fine_while_chunks_keep_coming()
    {
        // The idle limit counts while a read waits for the upstream: chunks 600 ms apart, each ending a read of its own,
        // must keep a 2 s limit from firing over a 3 s answer. A first, quick call warms the process up: a fresh test
        // process's thread pool can stall for most of a second at its first stream.
        var calls = 0;
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            var chunks = Interlocked.Increment(ref calls) == 1 ? 1 : 5;
            for (var i = 0; i < chunks; i++)
            {
                await context.Response.WriteAsync(OpenAIChunk, context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
                if (chunks > 1)
                {
                    await Task.Delay(600, context.RequestAborted);
                }
            }

            await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, o => o.IdleTimeoutMs = 2_000);
        Assert.Null((await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest))).Failure);

        var started = Stopwatch.GetTimestamp();
        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.Null(failure);
        Assert.Equal(string.Concat(Enumerable.Repeat("Hi", 5)), Assert.Single(UpstreamKit.Assemble(events).Choices).Content);
        Assert.True(Stopwatch.GetElapsedTime(started) > TimeSpan.FromSeconds(2), "the answer outlasted the idle limit");
    }

    [Fact]
    public async Task A_slow_consumer_is_not_taken_for_a_silent_upstream()
    {
        // Half the answer, then the rest 300 ms later; the consumer takes 1.2 s per event with a 0.8 s idle limit. The
        // read for the second half ends once it arrives, long before the consumer has passed on the first half: the
        // upstream was not silent while the gateway waited for it, so the limit must not fire (it did when it counted
        // from the last event or the last read).
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await context.Response.WriteAsync(string.Concat(Enumerable.Repeat(OpenAIChunk, 3)), context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(300, context.RequestAborted);
            await context.Response.WriteAsync(string.Concat(Enumerable.Repeat(OpenAIChunk, 3)) + "data: [DONE]\n\n", context.RequestAborted);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, o => o.IdleTimeoutMs = 800);

        var events = new List<ChatStreamEvent>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), timeout.Token))
        {
            events.Add(e);
            await Task.Delay(1_200, timeout.Token);
        }

        Assert.Equal(string.Concat(Enumerable.Repeat("Hi", 6)), Assert.Single(UpstreamKit.Assemble(events).Choices).Content);
    }

    [Fact]
    public async Task An_upstream_that_does_not_accept_within_the_connect_limit_is_a_504_naming_the_limit()
    {
        // A listener that never accepts: once its accept queue is full the kernel drops further SYNs, so a connect hangs.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;
        var fillers = new List<Socket>();
        try
        {
            var full = false;
            for (var i = 0; i < 16 && !full; i++)
            {
                var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(filler);
                using var wait = new CancellationTokenSource(300);
                try
                {
                    await filler.ConnectAsync(endpoint, wait.Token);
                }
                catch (OperationCanceledException)
                {
                    full = true;
                }
            }

            Assert.True(full, "the listener's accept queue should fill up");
            var catalog = new ModelCatalog([new ModelOptions
            {
                Name = "slow-accept",
                Provider = "openai",
                BaseUrl = $"http://127.0.0.1:{endpoint.Port}/v1",
                ConnectTimeoutMs = 300,
                MaxAttempts = 1,
            }]);

            var ex = await Assert.ThrowsAsync<ChatException>(() => UpstreamKit.CollectAsync(catalog.Models[0].Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest)));
            Assert.Equal(504, ex.StatusCode);
            Assert.Equal("upstream_connect_timeout", ex.Error.Code);
            Assert.Equal(ErrorTypes.Timeout, ex.Error.Type);
            Assert.Contains("did not accept a connection within 300 ms (ConnectTimeoutMs of model \"slow-accept\")", ex.Error.Message, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var filler in fillers)
            {
                filler.Dispose();
            }
        }
    }

    [Fact]
    public async Task No_first_token_within_the_limit_is_a_504_before_any_event()
    {
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, o => o.FirstTokenTimeoutMs = 250);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(504, ex.StatusCode);
        Assert.Contains("FirstTokenTimeoutMs", ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains("sent no answer within 250 ms", ex.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("openai", 401)]
    [InlineData("anthropic", 401)]
    [InlineData("gemini", 403)]
    [InlineData("ollama", 401)]
    public async Task An_upstream_refusing_the_gateways_key_is_a_502_without_configuration_details(string provider, int status)
    {
        const string Env = "SLUICE_TEST_SECRET_KEY_VARIABLE";
        Environment.SetEnvironmentVariable(Env, "test-upstream-key-0123456789");
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.StatusCode = status;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"error": {"message": "Incorrect API key provided: sk-proj-abc***xyz", "type": "invalid_request_error"}}""");
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream, o => o.ApiKeyEnv = Env);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_auth_error", ex.Error.Code);
        Assert.Equal(ErrorTypes.Upstream, ex.Error.Type);
        foreach (var detail in new[] { Env, upstream.BaseUrl, "Incorrect API key", "sk-proj", "ApiKeyEnv" })
        {
            Assert.DoesNotContain(detail, ex.Error.Message, StringComparison.Ordinal);
        }

        // The operator learns what to fix (logged by the gateway, never sent).
        Assert.Contains(status == 401 ? Env : "may not use", ex.OperatorNote, StringComparison.Ordinal);
        Assert.Contains("Incorrect API key", ex.OperatorNote, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Total_timeout_applies_even_while_chunks_keep_coming()
    {
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            while (!context.RequestAborted.IsCancellationRequested)
            {
                await context.Response.WriteAsync(OpenAIChunk, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                await Task.Delay(30, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, o =>
        {
            o.IdleTimeoutMs = 10_000;
            o.TotalTimeoutMs = 400;
        });

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.NotEmpty(events);
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(504, ex.StatusCode);
        Assert.Contains("TotalTimeoutMs", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_401_is_a_502_for_the_client_and_a_note_for_the_operator_without_the_key()
    {
        const string Key = "sk-live-SECRET-0123456789abcdef";
        var body = "{\"error\":{\"message\":\"Incorrect API key provided: " + Key + ". You can find your API key at https://platform.openai.com/account/api-keys.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(body), "application/json", 401);
        var variable = "SLUICE_TEST_KEY_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(variable, Key);
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, o => o.ApiKeyEnv = variable);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal(ErrorTypes.Upstream, ex.Error.Type);
        Assert.Equal("upstream_auth_error", ex.Error.Code);
        Assert.DoesNotContain("Incorrect API key provided", ex.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(variable, ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains("Incorrect API key provided", ex.OperatorNote, StringComparison.Ordinal);
        Assert.Contains(variable, ex.OperatorNote, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, ex.OperatorNote, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, ex.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Key, ex.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("openai", "{\"error\":{\"message\":\"Rate limit reached for gpt-4o\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}")]
    [InlineData("anthropic", "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Rate limit reached\"}}")]
    [InlineData("gemini", "{\"error\":{\"code\":429,\"message\":\"Rate limit reached\",\"status\":\"RESOURCE_EXHAUSTED\"}}")]
    public async Task Http_429_keeps_retry_after(string provider, string body)
    {
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.StatusCode = 429;
            context.Response.Headers.RetryAfter = "7";
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(body, context.RequestAborted);
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(429, ex.StatusCode);
        Assert.Equal(ErrorTypes.RateLimit, ex.Error.Type);
        Assert.Equal(TimeSpan.FromSeconds(7), ex.RetryAfter);
        Assert.Contains("Rate limit reached", ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains("Retry after 7 s", ex.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(500, 500)]
    [InlineData(503, 503)]
    [InlineData(529, 503)]
    [InlineData(404, 404)]
    [InlineData(400, 400)]
    public async Task Http_errors_keep_their_status(int upstreamStatus, int clientStatus)
    {
        // 401 and 403 are the gateway's own credentials: see An_upstream_refusing_the_gateways_key_….
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8("{\"type\":\"error\",\"error\":{\"type\":\"x\",\"message\":\"upstream says no\"}}"), "application/json", upstreamStatus);
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(clientStatus, ex.StatusCode);
        Assert.Contains("upstream says no", ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains($"HTTP {upstreamStatus}", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unreachable_upstream_is_a_502_naming_the_address()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var catalog = new ModelCatalog([new ModelOptions { Name = "m", Provider = "openai", BaseUrl = $"http://127.0.0.1:{port}/v1" }]);

        var ex = await Assert.ThrowsAsync<ChatException>(() => UpstreamKit.CollectAsync(catalog.Models[0].Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest)));
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_unreachable", ex.Error.Code);
        Assert.Contains($"127.0.0.1:{port}", ex.Error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string, string, string> DripStreams() => new()
    {
        // provider, recording, marker of the pieces that each produce one answer event, content type
        { "openai", "openai/text-a.sse", "\"choices\":[{", "text/event-stream" },
        { "anthropic", "anthropic/tool_use_response.sse", "\"delta\":{\"type\":\"", "text/event-stream" },
        { "gemini", "gemini/googleai/streaming-success-basic-reply-short.sse", "\"text\"", "text/event-stream" },
    };

    [Theory]
    [MemberData(nameof(DripStreams))]
    public async Task Slow_drip_each_chunk_is_yielded_before_the_upstream_sends_the_next(string provider, string fixture, string marker, string contentType)
    {
        var pieces = ReplayUpstream.SplitEvents(Fixtures.Read(fixture));
        var producing = pieces.Select(p => Encoding.UTF8.GetString(p).Contains(marker, StringComparison.Ordinal)).ToList();
        var signals = pieces.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToList();
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = contentType;
            for (var k = 0; k < pieces.Count; k++)
            {
                await context.Response.Body.WriteAsync(pieces[k], context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
                if (producing[k])
                {
                    // Chunk k+1 is only sent once the test has seen chunk k come out of the adapter.
                    await signals[k].Task.WaitAsync(TimeSpan.FromSeconds(10), context.RequestAborted);
                }
            }
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);

        var producingIndexes = Enumerable.Range(0, pieces.Count).Where(k => producing[k]).ToList();
        var seen = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), timeout.Token))
        {
            if (e is OpenAIChunkEvent or TextDeltaEvent or ToolCallDeltaEvent)
            {
                signals[producingIndexes[seen++]].TrySetResult();
            }
        }

        Assert.Equal(producingIndexes.Count, seen);
        Assert.All(producingIndexes, k => Assert.True(signals[k].Task.IsCompletedSuccessfully));
    }

    [Theory]
    [InlineData("openai")]
    [InlineData("anthropic")]
    [InlineData("gemini")]
    [InlineData("ollama")]
    public async Task Cancelling_a_pending_read_aborts_the_upstream_request_within_100_ms(string provider)
    {
        var first = provider switch
        {
            "openai" => OpenAIChunk,
            "anthropic" => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "gemini" => "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\n\n",
            _ => "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
        };
        var abortedAt = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            using var registration = context.RequestAborted.Register(() => abortedAt.TrySetResult(Stopwatch.GetTimestamp()));
            await context.Response.WriteAsync(first, context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);

        using var cancellation = new CancellationTokenSource();
        var enumerator = rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), cancellation.Token).GetAsyncEnumerator(cancellation.Token);
        try
        {
            Assert.True(await enumerator.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
            var pending = enumerator.MoveNextAsync().AsTask();
            Assert.False(pending.IsCompleted);

            var cancelledAt = Stopwatch.GetTimestamp();
            await cancellation.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(TimeSpan.FromSeconds(5)));
            var observed = await abortedAt.Task.WaitAsync(TimeSpan.FromSeconds(5));
            Assert.True(
                Stopwatch.GetElapsedTime(cancelledAt, observed) < TimeSpan.FromMilliseconds(100),
                $"The upstream saw the abort after {Stopwatch.GetElapsedTime(cancelledAt, observed).TotalMilliseconds} ms.");
        }
        finally
        {
            await enumerator.DisposeAsync();
        }
    }

    [Fact]
    public async Task Abandoning_the_stream_between_events_closes_the_upstream_connection_within_100_ms()
    {
        var abortedAt = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            using var registration = context.RequestAborted.Register(() => abortedAt.TrySetResult(Stopwatch.GetTimestamp()));
            await context.Response.WriteAsync(OpenAIChunk + OpenAIChunk, context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var enumerator = rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), CancellationToken.None).GetAsyncEnumerator();
        Assert.True(await enumerator.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        var disposedAt = Stopwatch.GetTimestamp();
        await enumerator.DisposeAsync();

        var observed = await abortedAt.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(
            Stopwatch.GetElapsedTime(disposedAt, observed) < TimeSpan.FromMilliseconds(100),
            $"The upstream saw the abort after {Stopwatch.GetElapsedTime(disposedAt, observed).TotalMilliseconds} ms.");
    }

    [Theory]
    [InlineData("openai", "openai/text-a.sse")]
    [InlineData("anthropic", "anthropic/basic_response.sse")]
    [InlineData("gemini", "gemini/googleai/streaming-success-basic-reply-short.sse")]
    public async Task Completed_streams_reuse_the_connection_abandoned_ones_do_not(string provider, string fixture)
    {
        var recording = Fixtures.Read(fixture);
        var pieces = ReplayUpstream.SplitEvents(recording);
        var requests = 0;
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            if (Interlocked.Increment(ref requests) != 3)
            {
                await ReplayUpstream.PlayAsync(context, recording);
                return;
            }

            // The third request is abandoned mid-answer: send a little, then wait.
            context.Response.ContentType = "text/event-stream";
            foreach (var piece in pieces.Take(pieces.Count / 2))
            {
                await context.Response.Body.WriteAsync(piece, context.RequestAborted);
            }

            await context.Response.Body.FlushAsync(context.RequestAborted);
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);
        await rig.CollectAsync();
        await rig.CollectAsync();

        var enumerator = rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), CancellationToken.None).GetAsyncEnumerator();
        Assert.True(await enumerator.MoveNextAsync());
        await enumerator.DisposeAsync();
        await rig.CollectAsync();

        var connections = rig.Upstream.Requests.Select(r => r.ConnectionId).ToList();
        Assert.Equal(connections[0], connections[1]);
        Assert.Equal(connections[1], connections[2]);
        Assert.NotEqual(connections[2], connections[3]);
    }

    [Theory]
    [InlineData("openai", "openai/text-a.sse", "text/event-stream")]
    [InlineData("anthropic", "anthropic/tool_use_response.sse", "text/event-stream")]
    [InlineData("ollama", null, "application/x-ndjson")]
    public async Task Body_ending_late_after_the_end_marker_is_read_to_its_end_not_cut(string provider, string? fixture, string contentType)
    {
        var recording = fixture is null
            ? UpstreamKit.Utf8("{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"done\":true,\"done_reason\":\"stop\"}\n")
            : Fixtures.Read(fixture);
        var finished = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            await ReplayUpstream.PlayAsync(context, recording, contentType);

            // The end marker is out, but the body only ends a moment later (a slow proxy, a busy server).
            await Task.Delay(200, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            finished.TrySetResult(context.RequestAborted.IsCancellationRequested);
        });
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);
        await rig.CollectAsync();

        var aborted = await finished.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(aborted, "The connection was cut after a complete answer instead of being kept for reuse.");
    }
}
