using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Accounting;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Providers.Routing;
using Sluice.Testing;

namespace Sluice.Gateway.Tests;

/// <summary>
/// The edge behaviours seen by a real HTTP client through the gateway, with loopback upstreams standing in
/// for a provider: no buffering, disconnects reaching the upstream, pings over upstream silence, retries/fallbacks.
/// </summary>
public sealed class UpstreamThroughGatewayTests
{
    private static string Chunk(string content, string? finish = null) =>
        "data: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":"
        + (finish is null ? "{\"content\":\"" + content + "\"}" : "{}") + ",\"finish_reason\":" + (finish is null ? "null" : "\"" + finish + "\"") + "}]}\n\n";


    private static Task<TestGateway> GatewayFor(params (string Name, ReplayUpstream Upstream)[] upstreams) =>
        TestGateway.StartAsync(o =>
        {
            o.Streaming.PingIntervalSeconds = 0.2;
            o.Retry = new RetryOptions { BaseDelayMs = 10, MaxDelayMs = 50 };
            o.Models = [.. upstreams.Select(u => new ModelOptions { Name = u.Name, Provider = "openai", BaseUrl = u.Upstream.BaseUrl + "/v1" })];
        });

    [Theory]
    [InlineData(ReplayChunking.Whole, true)]
    [InlineData(ReplayChunking.SmallSlices, true)]
    [InlineData(ReplayChunking.PerEvent, true)]
    [InlineData(ReplayChunking.Whole, false)]
    public async Task Chunks_arriving_together_or_split_are_forwarded_byte_for_byte_each_with_its_own_id(ReplayChunking chunking, bool resumable)
    {
        var chunks = new List<string> { Chunk("") };
        chunks.AddRange(Enumerable.Range(0, 40).Select(i => Chunk("tok" + i)));
        chunks.Add(Chunk("", "stop"));
        var usage = "data: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":41,\"total_tokens\":48}}\n\n";
        var body = Encoding.UTF8.GetBytes(string.Concat(chunks) + usage + "data: [DONE]\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(body, chunking: chunking);
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Streaming.Resumable = resumable;
            o.Models = [new ModelOptions { Name = "up", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1" }];
        });

        using var response = await gateway.PostChatAsync("""{"model":"up","prompt":"hi","stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();

        // Every upstream chunk as its own frame with the next id, its data exactly the upstream's; then the gateway's
        // usage chunk (the upstream's counts, its identity) and [DONE].
        var expected = new StringBuilder();
        for (var i = 0; i < chunks.Count; i++)
        {
            expected.Append("id: ").Append(i + 1).Append('\n').Append(chunks[i]);
        }

        expected.Append("id: ").Append(chunks.Count + 1).Append("\ndata: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":41,\"total_tokens\":48}}\n\n");
        expected.Append("id: ").Append(chunks.Count + 2).Append("\ndata: [DONE]\n\n");
        var frames = resumable ? text[(text.IndexOf("\n\n", StringComparison.Ordinal) + 2)..] : text;
        Assert.Equal(expected.ToString(), frames);

        if (resumable)
        {
            // The replay buffer kept the same frames, each under its own id.
            var streamId = Assert.Single(response.Headers.GetValues("x-sluice-stream-id"));
            using var replay = await gateway.Client.GetAsync($"v1/streams/{streamId}");
            var replayed = await replay.Content.ReadAsStringAsync();
            Assert.EndsWith(expected.ToString(), replayed, StringComparison.Ordinal);
            using var tail = await gateway.Client.GetAsync($"v1/streams/{streamId}?after=30");
            var tailText = await tail.Content.ReadAsStringAsync();
            Assert.StartsWith("id: 31\n" + chunks[30], tailText[tailText.IndexOf("id: ", StringComparison.Ordinal)..], StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Slow_drip_each_chunk_reaches_the_client_before_the_upstream_sends_the_next()
    {
        var seenByClient = new SemaphoreSlim(0);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            for (var k = 0; k < 5; k++)
            {
                await ReplayUpstream.WriteFlushedAsync(context, Chunk("t" + k));

                // The next chunk is sent only once the client has the previous one: a buffering gateway deadlocks here.
                if (!await seenByClient.WaitAsync(TimeSpan.FromSeconds(5), context.RequestAborted))
                {
                    return;
                }
            }

            await ReplayUpstream.WriteFlushedAsync(context, Chunk("", "stop") + "data: [DONE]\n\n");
        });
        await using var gateway = await GatewayFor(("drip", upstream));

        using var response = await gateway.PostChatAsync("""{"model":"drip","prompt":"drip","stream":true}""");
        await using var stream = await response.Content.ReadAsStreamAsync();
        var contents = new List<string>();
        await foreach (var e in SseReader.ReadAsync(stream))
        {
            if (e.IsDone)
            {
                break;
            }

            var choices = e.Json().GetProperty("choices");
            if (choices.GetArrayLength() > 0 && choices[0].GetProperty("delta").TryGetProperty("content", out var content))
            {
                contents.Add(content.GetString()!);
                seenByClient.Release();
            }
        }

        Assert.Equal(["t0", "t1", "t2", "t3", "t4"], contents);
    }

    [Fact]
    public async Task Client_disconnect_aborts_the_upstream_within_100_ms_and_records_estimated_usage()
    {
        var upstreamAborted = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            using var registration = context.RequestAborted.Register(() => upstreamAborted.TrySetResult(Stopwatch.GetTimestamp()));
            foreach (var word in new[] { " alpha", " beta", " gamma" })
            {
                await ReplayUpstream.WriteFlushedAsync(context, Chunk(word));
            }

            // A long generation that only the client's departure should stop.
            await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        });
        await using var gateway = await GatewayFor(("long", upstream));
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.BaseAddress };

        var response = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = TestGateway.Json("""{"model":"long","prompt":"go on","stream":true}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        var stream = await response.Content.ReadAsStreamAsync();
        var seen = 0;
        await foreach (var e in SseReader.ReadAsync(stream))
        {
            if (++seen == 3)
            {
                break;
            }
        }

        var leftAt = Stopwatch.GetTimestamp();
        response.Dispose();
        var abortedAt = await upstreamAborted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var delay = Stopwatch.GetElapsedTime(leftAt, abortedAt);
        Assert.True(delay < TimeSpan.FromMilliseconds(100), $"the upstream kept generating {delay.TotalMilliseconds:F0} ms after the client left");

        var (record, _) = await gateway.Usage.WaitForAsync(requestId);
        Assert.Equal(UsageStatus.Abandoned, record.Status);
        Assert.True(record.Estimated, "the upstream sent no usage, so it is estimated from what was streamed");
        Assert.Equal(3, record.CompletionTokens);
        Assert.True(record.PromptTokens > 0);
    }

    [Fact]
    public async Task Upstream_silence_is_kept_alive_with_pings_between_whole_events()
    {
        var requests = 0;
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await ReplayUpstream.WriteFlushedAsync(context, Chunk("thinking"));

            // The first request only warms the path up (JIT, connections), so the second's silence is all silence.
            if (Interlocked.Increment(ref requests) > 1)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(1200), context.RequestAborted);
            }

            await ReplayUpstream.WriteFlushedAsync(context, Chunk(" done") + Chunk("", "stop") + "data: [DONE]\n\n");
        });
        await using var gateway = await GatewayFor(("thinker", upstream));
        using (var warmUp = await gateway.PostChatAsync("""{"model":"thinker","prompt":"think","stream":true}"""))
        {
            await SseTestClient.ReadAllAsync(warmUp);
        }

        using var response = await gateway.PostChatAsync("""{"model":"thinker","prompt":"think","stream":true}""");
        var events = await SseTestClient.ReadAllAsync(response);
        var firstData = events.FindIndex(e => !e.IsComment);
        var lastData = events.FindLastIndex(e => !e.IsComment && !e.IsDone);
        var pingsBetween = events.Skip(firstData).Take(lastData - firstData).Count(e => e.IsComment);
        Assert.True(pingsBetween >= 2, $"expected pings during 1.2 s of upstream silence, saw {pingsBetween}: " + string.Join(" | ", events.Select(e => e.IsComment ? ":" + e.DataText : e.DataText[..Math.Min(60, e.DataText.Length)])));
        Assert.True(events[^1].IsDone);
    }

    [Fact]
    public async Task Upstream_429_with_retry_after_is_retried_and_a_5xx_falls_back_to_the_next_member()
    {
        var calls = 0;
        await using var busyOnce = await ReplayUpstream.StartAsync(async context =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                context.Response.StatusCode = 429;
                context.Response.Headers.RetryAfter = "1";
                await context.Response.WriteAsync("""{"error":{"message":"slow down","type":"rate_limit_error"}}""");
                return;
            }

            context.Response.ContentType = "text/event-stream";
            await ReplayUpstream.WriteFlushedAsync(context, Chunk("patient") + Chunk("", "stop") + "data: [DONE]\n\n");
        });
        await using var broken = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.StatusCode = 500;
            await context.Response.WriteAsync("""{"error":{"message":"internal","type":"server_error"}}""");
        });
        await using var spare = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await ReplayUpstream.WriteFlushedAsync(context, Chunk("spare") + Chunk("", "stop") + "data: [DONE]\n\n");
        });
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Retry = new RetryOptions { BaseDelayMs = 10, MaxDelayMs = 50 };
            o.Models =
            [
                new ModelOptions { Name = "busy-once", Provider = "openai", BaseUrl = busyOnce.BaseUrl + "/v1" },
                new ModelOptions { Name = "broken", Provider = "openai", BaseUrl = broken.BaseUrl + "/v1" },
                new ModelOptions { Name = "spare", Provider = "openai", BaseUrl = spare.BaseUrl + "/v1" },
            ];
            o.ModelGroups = [new ModelGroupOptions { Name = "resilient", Models = ["broken", "spare"] }];
        });

        var started = Stopwatch.GetTimestamp();
        using (var response = await gateway.PostChatAsync("""{"model":"busy-once","prompt":"hi"}"""))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("patient", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(900), "Retry-After: 1 was not honoured");
        Assert.Equal(2, busyOnce.Requests.Count);

        using (var response = await gateway.PostChatAsync("""{"model":"resilient","prompt":"hi","stream":true}"""))
        {
            var text = string.Concat((await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment && !e.IsDone).Select(e => e.DataText));
            Assert.Contains("spare", text, StringComparison.Ordinal);
        }

        Assert.Equal(2, broken.Requests.Count);
        Assert.Single(spare.Requests);
    }
}
