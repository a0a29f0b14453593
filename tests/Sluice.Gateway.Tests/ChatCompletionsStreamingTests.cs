using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Accounting;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests;

public sealed class ChatCompletionsStreamingTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync(o => o.Streaming.PingIntervalSeconds = 0.2);

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    [Fact]
    public async Task Stream_has_sse_headers_sequenced_ids_role_finish_usage_and_done()
    {
        using var response = await _gateway.PostChatAsync(
            """{"model":"sim-fast","messages":[{"role":"user","content":"Explain tidal energy"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":20,"seed":7}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("no-cache", response.Headers.CacheControl?.ToString());
        Assert.Equal("no", Assert.Single(response.Headers.GetValues("X-Accel-Buffering")));
        Assert.False(string.IsNullOrEmpty(Assert.Single(response.Headers.GetValues("x-request-id"))));

        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();

        // Every event carries an increasing numeric id.
        var ids = events.Select(e => long.Parse(e.LastEventId!, CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), ids);

        Assert.True(events[^1].IsDone);
        var chunks = events.Take(events.Count - 1).Select(e => e.Json()).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Single(chunks.Select(c => c.GetProperty("created").GetInt64()).Distinct());
        Assert.All(chunks, c => Assert.Equal("sim-fast", c.GetProperty("model").GetString()));

        var first = chunks[0].GetProperty("choices")[0].GetProperty("delta");
        Assert.Equal("assistant", first.GetProperty("role").GetString());
        Assert.All(chunks.Skip(1), c =>
        {
            if (c.GetProperty("choices").GetArrayLength() > 0)
            {
                Assert.False(c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("role", out _));
            }
        });

        var contentChunks = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0
            && c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out _)).ToList();
        Assert.Equal(20, contentChunks.Count);
        Assert.All(contentChunks, c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));

        var finish = chunks[^2];
        Assert.Equal("length", finish.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var usageChunk = chunks[^1];
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        var usage = usageChunk.GetProperty("usage");
        Assert.Equal(20, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(
            usage.GetProperty("prompt_tokens").GetInt32() + 20,
            usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Without_include_usage_there_is_no_usage_chunk_but_usage_is_recorded()
    {
        using var response = await _gateway.PostChatAsync(
            """{"model":"sim-fast","prompt":"Describe a lighthouse","stream":true,"max_tokens":15}""");
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();

        Assert.True(events[^1].IsDone);
        Assert.DoesNotContain(events.Take(events.Count - 1), e => e.Json().TryGetProperty("usage", out _));

        var (record, _) = await _gateway.Usage.WaitForAsync(requestId);
        Assert.Equal(UsageStatus.Completed, record.Status);
        Assert.Equal(15, record.CompletionTokens);
        Assert.True(record.PromptTokens > 0);
        Assert.False(record.Estimated);
        Assert.True(record.Stream);
        Assert.NotNull(record.TimeToFirstToken);
    }

    [Fact]
    public async Task Streamed_text_equals_non_streamed_text_for_the_same_seed()
    {
        const string body = """{"model":"sim-fast","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Compare glaciers and rivers"}],"max_tokens":60,"seed":42,"stream":STREAM}""";
        using var streamed = await _gateway.PostChatAsync(body.Replace("STREAM", "true", StringComparison.Ordinal));
        var text = new StringBuilder();
        foreach (var e in await SseTestClient.ReadAllAsync(streamed))
        {
            if (!e.IsComment && !e.IsDone
                && e.Json().GetProperty("choices") is { ValueKind: JsonValueKind.Array } choices && choices.GetArrayLength() > 0
                && choices[0].GetProperty("delta").TryGetProperty("content", out var content))
            {
                text.Append(content.GetString());
            }
        }

        using var plain = await _gateway.PostChatAsync(body.Replace("STREAM", "false", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        Assert.Equal("application/json", plain.Content.Headers.ContentType?.MediaType);
        var completion = JsonDocument.Parse(await plain.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("chat.completion", completion.GetProperty("object").GetString());
        var message = completion.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        Assert.Equal(text.ToString(), message.GetProperty("content").GetString());
        Assert.Contains("glaciers", text.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal("length", completion.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(60, completion.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Prompt_shorthand_without_model_uses_the_default_model()
    {
        // The default is the first model: with the built-ins, the paced sim-realistic (max_tokens only keeps this short).
        using var response = await _gateway.PostChatAsync("""{"prompt":"Say hello","stream":true,"max_tokens":12}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();
        Assert.True(events[^1].IsDone);
        Assert.Equal("sim-realistic", events[0].Json().GetProperty("model").GetString());
    }

    [Fact]
    public async Task Tool_call_streams_id_name_and_argument_fragments()
    {
        const string tools = """[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}}}]""";
        using var response = await _gateway.PostChatAsync(
            $$"""{"model":"sim-fast","messages":[{"role":"user","content":"What is the weather in Lisbon today?"}],"tools":{{tools}},"stream":true,"seed":3}""");
        var chunks = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment && !e.IsDone).Select(e => e.Json()).ToList();

        var toolDeltas = chunks
            .Where(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("tool_calls", out _))
            .Select(c => c.GetProperty("choices")[0].GetProperty("delta").GetProperty("tool_calls")[0])
            .ToList();
        Assert.True(toolDeltas.Count >= 3, "arguments should arrive in several fragments");
        Assert.StartsWith("call_", toolDeltas[0].GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("function", toolDeltas[0].GetProperty("type").GetString());
        Assert.Equal("get_weather", toolDeltas[0].GetProperty("function").GetProperty("name").GetString());
        Assert.All(toolDeltas.Skip(1), d => Assert.False(d.TryGetProperty("id", out _)));
        var arguments = string.Concat(toolDeltas.Select(d => d.GetProperty("function").GetProperty("arguments").GetString()));
        var parsed = JsonDocument.Parse(arguments).RootElement;
        Assert.Equal("Lisbon", parsed.GetProperty("location").GetString());
        Assert.Contains(parsed.GetProperty("unit").GetString(), new[] { "celsius", "fahrenheit" });
        Assert.Equal("tool_calls", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Failure_after_first_byte_is_one_error_frame_and_no_done()
    {
        using var response = await _gateway.PostChatAsync(
            """{"model":"sim-fast","prompt":"Tell me a story","stream":true,"max_tokens":50,"metadata":{"sim_fail_after_tokens":"4"}}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();

        Assert.DoesNotContain(events, e => e.IsDone);
        Assert.Equal(5, events.Count);
        var error = events[^1].Json().GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Equal("simulated_failure", error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal("5", events[^1].LastEventId);

        var (record, _) = await _gateway.Usage.WaitForAsync(requestId);
        Assert.Equal(UsageStatus.Failed, record.Status);
        Assert.Equal(4, record.CompletionTokens);
        Assert.True(record.Estimated);
    }

    [Theory]
    [InlineData(429, "rate_limit_error")]
    [InlineData(500, "server_error")]
    [InlineData(503, "server_error")]
    public async Task Failure_before_first_token_keeps_its_http_status(int status, string type)
    {
        using var response = await _gateway.PostChatAsync(
            $$$"""{"model":"sim-fast","prompt":"Hi","stream":true,"metadata":{"sim_fail_status":"{{{status}}}","sim_retry_after":"7"}}""");
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.Equal("7", Assert.Single(response.Headers.GetValues("Retry-After")));
    }

    [Fact]
    public async Task Silence_is_filled_with_ping_comments_between_whole_events()
    {
        using var response = await _gateway.PostChatAsync(
            """{"model":"sim-fast","prompt":"Think hard","stream":true,"max_tokens":6,"metadata":{"sim_stall_ms":"900","sim_stall_after_tokens":"3"}}""");
        await using var stream = await response.Content.ReadAsStreamAsync();
        var raw = new StringBuilder();
        var buffer = new byte[4096];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            raw.Append(Encoding.UTF8.GetString(buffer, 0, read));
        }

        var text = raw.ToString();
        var pings = text.Split(": ping\n\n").Length - 1;
        Assert.True(pings >= 2, $"expected pings during a 900 ms stall with a 200 ms interval, got {pings}");

        // Every frame is whole: pings only ever appear where an event ended.
        foreach (var frame in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            Assert.True(
                frame == ": ping" || frame.StartsWith("id: ", StringComparison.Ordinal) || frame.StartsWith(": sluice-stream-id strm_", StringComparison.Ordinal),
                $"unexpected frame: {frame}");
        }

        var events = new List<SseEvent>();
        new SseParser().Feed(Encoding.UTF8.GetBytes(text), events);
        Assert.True(events[^1].IsDone);
        Assert.True(
            text.IndexOf(": ping", StringComparison.Ordinal) > text.IndexOf("id: 3\n", StringComparison.Ordinal),
            "the stall happens after the third token, so the first ping must follow event 3");
    }

    [Fact]
    public async Task Ping_before_the_first_token_commits_the_stream()
    {
        using var response = await _gateway.PostChatAsync(
            """{"model":"sim-fast","prompt":"Think first","stream":true,"max_tokens":3,"metadata":{"sim_stall_ms":"500"}}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = await SseTestClient.ReadAllAsync(response);
        // The stream id comment opens every resumable stream; the ping follows it, before any event.
        Assert.True(events[0].IsComment);
        Assert.StartsWith("sluice-stream-id strm_", Encoding.UTF8.GetString(events[0].Data.Span), StringComparison.Ordinal);
        Assert.True(events[1].IsComment);
        Assert.Equal("ping", Encoding.UTF8.GetString(events[1].Data.Span));
        Assert.True(events[^1].IsDone);
    }

    [Fact]
    public async Task Chunks_are_flushed_as_they_are_generated()
    {
        // 20 tokens/s: the first chunk must reach the client long before the last one is generated.
        using var response = await _gateway.PostChatAsync("""{"model":"sim-paced","prompt":"Count slowly","stream":true,"max_tokens":12}""");
        await using var stream = await response.Content.ReadAsStreamAsync();
        var arrivals = new List<long>();
        await foreach (var e in SseReader.ReadAsync(stream))
        {
            arrivals.Add(Stopwatch.GetTimestamp());
        }

        Assert.Equal(14, arrivals.Count);
        var spread = Stopwatch.GetElapsedTime(arrivals[0], arrivals[^1]);
        Assert.True(spread > TimeSpan.FromMilliseconds(300), $"events arrived in one burst ({spread.TotalMilliseconds:F0} ms): something buffers");
    }

    [Theory]
    [InlineData("sim-paced", "data: [DONE]")]
    [InlineData("sim-fails", "data: {\"error\":")]
    public async Task The_response_ends_with_its_last_frame_not_after_the_gateway_s_bookkeeping(string model, string lastFrame)
    {
        // The last frame ([DONE], or the error frame of an answer that failed) and the end of the body (HTTP/1.1's last
        // chunk, "0\r\n\r\n") leave in one send, before the call's accounting runs: a client that waits for the end of
        // the response (curl, a reader of the whole body, the next request on the connection) is not held by the
        // gateway's bookkeeping, and a streaming one wakes once. Here the accounting takes 300 ms; when the server ended
        // the body after the handler returned, the last chunk came 300 ms after the last frame, in a read of its own.
        ThreadPool.GetMinThreads(out var workers, out var io);
        try
        {
            // The slow sink blocks its thread: enough workers that the response's send does not wait for it.
            ThreadPool.SetMinThreads(Math.Max(workers, 16), io);
            await using var gateway = await TestGateway.StartAsync(
                o => o.Models.Add(new ModelOptions { Name = "sim-fails", Provider = "sim", TokensPerSecond = 20, FailAfterTokens = 2 }),
                s => s.AddSingleton<IUsageSink>(new SlowUsageSink()));
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(gateway.BaseAddress.Host, gateway.BaseAddress.Port);
            var body = $$"""{"model":"{{model}}","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":3}""";
            var bytes = Encoding.UTF8.GetBytes(body);
            await socket.SendAsync(RawHttp.Build(
                ["POST /v1/chat/completions HTTP/1.1", "Host: localhost", "Content-Type: application/json", $"Content-Length: {bytes.Length}"], bytes));

            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var all = new StringBuilder();
            var buffer = new byte[64 * 1024];
            string? lastRead = null;
            while (!all.ToString().EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal))
            {
                var read = await socket.ReceiveAsync(buffer, cts.Token);
                Assert.True(read > 0, $"the connection closed before the response ended: {all}");
                var text = Encoding.UTF8.GetString(buffer, 0, read);
                all.Append(text);
                if (lastRead is null && all.ToString().Contains(lastFrame, StringComparison.Ordinal))
                {
                    lastRead = text;
                }
            }

            Assert.StartsWith("HTTP/1.1 200", all.ToString(), StringComparison.Ordinal);
            Assert.Contains("Transfer-Encoding: chunked", all.ToString(), StringComparison.OrdinalIgnoreCase);
            Assert.NotNull(lastRead);
            Assert.EndsWith("\r\n0\r\n\r\n", lastRead, StringComparison.Ordinal);
            Assert.Equal(1, await gateway.Usage.WaitForCountAsync(1));
        }
        finally
        {
            ThreadPool.SetMinThreads(workers, io);
        }
    }

    private sealed class SlowUsageSink : IUsageSink
    {
        public void Record(UsageRecord record) => Thread.Sleep(300);
    }

    [Fact]
    public async Task Client_disconnect_cancels_generation_within_100_ms_and_records_abandoned_usage()
    {
        // HttpClient normally drains a disposed response for up to 2 s to reuse the connection; a user closing a
        // tab does not, so this client closes the socket at once.
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = _gateway.BaseAddress };
        var delays = new List<TimeSpan>();
        for (var attempt = 0; attempt < 3; attempt++)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var response = await client.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
                {
                    Content = TestGateway.Json("""{"model":"sim-paced","prompt":"A very long story","stream":true,"max_tokens":4000}"""),

                    // Resumable streams outlive their client for a grace period; opting out restores "leave = stop".
                },
                HttpCompletionOption.ResponseHeadersRead,
                cts.Token);
            var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
            var stream = await response.Content.ReadAsStreamAsync(cts.Token);
            var seen = 0;
            await foreach (var e in SseReader.ReadAsync(stream, cancellationToken: cts.Token))
            {
                if (++seen == 3)
                {
                    break;
                }
            }

            var abortedAt = Stopwatch.GetTimestamp();
            response.Dispose();

            var (record, recordedAt) = await _gateway.Usage.WaitForAsync(requestId);
            Assert.Equal(UsageStatus.Abandoned, record.Status);
            Assert.InRange(record.CompletionTokens, 3, 100);
            delays.Add(Stopwatch.GetElapsedTime(abortedAt, recordedAt));
        }

        // The median of three guards against one unlucky scheduling hiccup on a busy 2-core machine.
        delays.Sort();
        Assert.True(delays[1] < TimeSpan.FromMilliseconds(100), $"generation stopped {delays[1].TotalMilliseconds:F0} ms after the disconnect");
    }
}
