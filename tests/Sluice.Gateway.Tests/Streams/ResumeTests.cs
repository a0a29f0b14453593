using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Sluice.Gateway.Http;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Protocol.Sse;
using Sluice.Providers;

namespace Sluice.Gateway.Tests.Streams;

/// <summary>Resumable streams over a real Kestrel socket: cut, reconnect, replay, expiry and memory bounds.</summary>
public sealed class ResumeTests
{
    private const string Request = """{"model":"sim-quick","prompt":"Tell me about lighthouses","stream":true,"seed":7,"max_tokens":40,"stream_options":{"include_usage":true}}""";

    /// <summary>Paced (100 tokens/s, no jitter) so a cut lands mid-answer, quick enough for tests.</summary>
    internal static ModelOptions Quick => new() { Name = "sim-quick", Provider = "sim", TokensPerSecond = 100 };

    internal static Task<TestGateway> StartAsync(Action<GatewayOptions>? configure = null) =>
        TestGateway.StartAsync(o =>
        {
            o.Models.Add(Quick);
            o.Streaming.PingIntervalSeconds = 0.2;

            // These clients do not send x-sluice-resume: on; the grace applies to them all.
            o.Streaming.ResumeGraceForAllRequests = true;
            configure?.Invoke(o);
        });

    [Fact]
    public async Task A_cut_client_resumes_with_Last_Event_ID_and_gets_the_same_text_as_an_uninterrupted_run_billed_once()
    {
        await using var gateway = await StartAsync();
        var reference = await ReadAllAsync(await gateway.PostChatAsync(Request));
        Assert.True(reference.Done);

        // The same request, cut after five events by a client that closes its socket at once.
        using var cutting = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.BaseAddress };
        var response = await cutting.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = TestGateway.Json(Request) },
            HttpCompletionOption.ResponseHeadersRead);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        var first = new List<SseEvent>();
        await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync(), surfaceComments: true))
        {
            first.Add(e);
            if (first.Count(x => !x.IsComment) == 5)
            {
                break;
            }
        }

        response.Dispose();
        Assert.True(first[0].IsComment);
        Assert.Contains(streamId, first[0].DataText, StringComparison.Ordinal);
        var lastId = first.Last().LastEventId!;
        Assert.Equal("5", lastId);

        using var resume = new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}");
        resume.Headers.TryAddWithoutValidation("Last-Event-ID", lastId);
        using var resumed = await gateway.Client.SendAsync(resume, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        Assert.Equal("text/event-stream", resumed.Content.Headers.ContentType?.MediaType);
        Assert.Equal(streamId, Assert.Single(resumed.Headers.GetValues(HttpStreamSink.StreamIdHeader)));
        var rest = await ReadAllAsync(resumed);

        Assert.True(rest.Done, "the resumed stream ends with [DONE]");
        Assert.Equal("6", rest.Ids[0]);
        var text = Content(first.Where(e => !e.IsComment)) + rest.Text;
        Assert.Equal(reference.Text, text);

        var (record, _) = await gateway.Usage.WaitForAsync(requestId);
        Assert.Equal(UsageStatus.Completed, record.Status);
        await Task.Delay(100);
        Assert.Single(gateway.Usage.Records, r => r.RequestId == requestId);
        Assert.Equal(2, gateway.Usage.Records.Count);
    }

    [Fact]
    public async Task After_N_replays_a_finished_stream_from_event_N_plus_1_and_from_the_start_byte_for_byte()
    {
        await using var gateway = await StartAsync();
        using var response = await gateway.PostChatAsync(Request);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var original = await ReadAllAsync(response);

        var all = await ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}", HttpCompletionOption.ResponseHeadersRead));
        Assert.Equal(original.Ids, all.Ids);
        Assert.Equal(original.Data, all.Data);

        var tail = await ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}?after=3", HttpCompletionOption.ResponseHeadersRead));
        Assert.Equal(original.Ids.Skip(3), tail.Ids);
        Assert.Equal(original.Data.Skip(3), tail.Data);
        Assert.True(tail.Done);

        using var bad = await gateway.Client.GetAsync($"v1/streams/{streamId}?after=soon");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [Fact]
    public async Task A_finished_stream_answers_204_to_a_Last_Event_ID_at_or_past_its_end_so_EventSource_stops_reconnecting()
    {
        await using var gateway = await StartAsync();
        using var response = await gateway.PostChatAsync(Request);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var original = await ReadAllAsync(response);
        var last = long.Parse(original.Ids[^1], System.Globalization.CultureInfo.InvariantCulture);

        foreach (var lastEventId in new[] { last, last + 5 })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}");
            request.Headers.TryAddWithoutValidation("Last-Event-ID", lastEventId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            using var done = await gateway.Client.SendAsync(request);
            Assert.Equal(HttpStatusCode.NoContent, done.StatusCode);
            Assert.Empty(await done.Content.ReadAsByteArrayAsync());
        }

        using var afterQuery = await gateway.Client.GetAsync($"v1/streams/{streamId}?after={last}");
        Assert.Equal(HttpStatusCode.NoContent, afterQuery.StatusCode);

        // One event short of the end: that event, with 200 as before.
        using var oneShort = new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}");
        oneShort.Headers.TryAddWithoutValidation("Last-Event-ID", (last - 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
        var tail = await ReadAllAsync(await gateway.Client.SendAsync(oneShort, HttpCompletionOption.ResponseHeadersRead));
        Assert.Equal([original.Ids[^1]], tail.Ids);
    }

    [Fact]
    public async Task A_running_stream_followed_from_its_latest_event_is_not_answered_204()
    {
        await using var gateway = await StartAsync();
        var request = Request.Replace("sim-quick", "sim-paced", StringComparison.Ordinal).Replace("\"max_tokens\":40", "\"max_tokens\":6", StringComparison.Ordinal);
        using var response = await gateway.PostChatAsync(request);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        await using var body = await response.Content.ReadAsStreamAsync();
        string? firstId = null;
        await foreach (var e in SseReader.ReadAsync(body))
        {
            firstId = e.LastEventId;
            break;
        }

        using var follow = new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}");
        follow.Headers.TryAddWithoutValidation("Last-Event-ID", firstId);
        var rest = await ReadAllAsync(await gateway.Client.SendAsync(follow, HttpCompletionOption.ResponseHeadersRead));
        Assert.True(rest.Done);
        Assert.NotEmpty(rest.Ids);
    }

    [Fact]
    public async Task Timed_replay_keeps_the_original_gaps_while_a_plain_replay_comes_at_once()
    {
        await using var gateway = await StartAsync();
        var request = Request.Replace("sim-quick", "sim-paced", StringComparison.Ordinal).Replace("\"max_tokens\":40", "\"max_tokens\":8", StringComparison.Ordinal);
        using var response = await gateway.PostChatAsync(request);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var original = await ReadAllAsync(response);

        var plain = await ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}", HttpCompletionOption.ResponseHeadersRead));
        var timed = await ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}?replay=timed", HttpCompletionOption.ResponseHeadersRead));

        Assert.Equal(original.Data, timed.Data);
        var originalSpread = original.Spread;
        Assert.True(timed.Spread > originalSpread * 0.6, $"timed replay took {timed.Spread.TotalMilliseconds:F0} ms, the original {originalSpread.TotalMilliseconds:F0} ms");
        Assert.True(plain.Spread < timed.Spread * 0.5, $"plain replay took {plain.Spread.TotalMilliseconds:F0} ms, timed {timed.Spread.TotalMilliseconds:F0} ms");
    }

    [Fact]
    public async Task Readers_of_one_stream_are_capped_one_more_is_a_429_and_a_reader_leaving_makes_room()
    {
        await using var gateway = await StartAsync(o => o.Streaming.MaxReadersPerStream = 2);
        var request = Request.Replace("\"max_tokens\":40", "\"max_tokens\":400", StringComparison.Ordinal);
        using var original = await gateway.PostChatAsync(request);
        var streamId = Assert.Single(original.Headers.GetValues(HttpStreamSink.StreamIdHeader));

        // The first request reads (1), one resumer joins (2): the next is refused while both read.
        using var second = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        using var third = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.NotNull(third.Headers.RetryAfter);
        using (var error = JsonDocument.Parse(await third.Content.ReadAsStringAsync()))
        {
            Assert.Equal("too_many_readers", error.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("Streaming:MaxReadersPerStream", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        // The resumer leaves: a new one is let in and reads the stream to its end.
        second.Dispose();
        HttpResponseMessage? fourth = null;
        for (var i = 0; i < 50; i++)
        {
            fourth = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}"), HttpCompletionOption.ResponseHeadersRead);
            if (fourth.StatusCode == HttpStatusCode.OK)
            {
                break;
            }

            fourth.Dispose();
            await Task.Delay(50);
        }

        Assert.Equal(HttpStatusCode.OK, fourth!.StatusCode);
        var rest = await ReadAllAsync(fourth);
        Assert.True(rest.Done);
        fourth.Dispose();
    }

    [Fact]
    public async Task Unknown_ids_get_a_404_saying_the_stream_expired()
    {
        await using var gateway = await StartAsync();
        using var response = await gateway.Client.GetAsync("v1/streams/strm_nope");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("stream_not_found", error.GetProperty("code").GetString());
        Assert.Contains("expired", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Finished_streams_expire_after_their_time_to_live()
    {
        await using var gateway = await StartAsync(o => o.Streaming.ReplayTtlSeconds = 0.2);
        using var response = await gateway.PostChatAsync(Request);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        await ReadAllAsync(response);
        await Task.Delay(400);
        using var expired = await gateway.Client.GetAsync($"v1/streams/{streamId}");
        Assert.Equal(HttpStatusCode.NotFound, expired.StatusCode);
    }

    [Fact]
    public async Task The_global_budget_evicts_the_oldest_finished_streams_and_bounds_memory()
    {
        // Each answer is a few KiB of frames; the budget holds about two.
        const long budget = 12 * 1024;
        await using var gateway = await StartAsync(o => o.Streaming.ReplayBudgetBytes = budget);
        var registry = gateway.Gateway.GetRequiredService<StreamRegistry>();
        var ids = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            using var response = await gateway.PostChatAsync(Request.Replace("sim-quick", "sim-fast", StringComparison.Ordinal));
            ids.Add(Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader)));
            Assert.True((await ReadAllAsync(response)).Done);
            Assert.InRange(registry.TotalBytes, 1, budget);
        }

        using var oldest = await gateway.Client.GetAsync($"v1/streams/{ids[0]}");
        Assert.Equal(HttpStatusCode.NotFound, oldest.StatusCode);
        using var newest = await gateway.Client.GetAsync($"v1/streams/{ids[^1]}");
        Assert.Equal(HttpStatusCode.OK, newest.StatusCode);
    }

    [Fact]
    public async Task A_stream_that_outgrows_its_buffer_still_streams_but_cannot_be_resumed()
    {
        await using var gateway = await StartAsync(o => o.Streaming.MaxStreamBufferBytes = 1024);
        var registry = gateway.Gateway.GetRequiredService<StreamRegistry>();
        using var response = await gateway.PostChatAsync(Request.Replace("sim-quick", "sim-fast", StringComparison.Ordinal));
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var all = await ReadAllAsync(response);
        Assert.True(all.Done);
        Assert.Equal(0, registry.TotalBytes);

        using var gone = await gateway.Client.GetAsync($"v1/streams/{streamId}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Contains("outgrew", await gone.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_reconnect_the_generation_is_cancelled_after_the_grace_period_and_billed_once_as_abandoned()
    {
        await using var gateway = await StartAsync(o => o.Streaming.ResumeGraceSeconds = 0.3);
        using var cutting = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.BaseAddress };
        var long_ = Request.Replace("\"max_tokens\":40", "\"max_tokens\":2000", StringComparison.Ordinal);
        var response = await cutting.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = TestGateway.Json(long_) },
            HttpCompletionOption.ResponseHeadersRead);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync()))
        {
            break;
        }

        var cutAt = Stopwatch.GetTimestamp();
        response.Dispose();
        var (record, recordedAt) = await gateway.Usage.WaitForAsync(requestId);
        Assert.Equal(UsageStatus.Abandoned, record.Status);
        var lived = Stopwatch.GetElapsedTime(cutAt, recordedAt);
        Assert.True(lived >= TimeSpan.FromMilliseconds(250), $"cancelled {lived.TotalMilliseconds:F0} ms after the cut, before the grace period ended");
        // The generation went on past what the client read (one event) but not to its end; how far depends on how
        // loaded the machine is (100 tokens/s would make ~30 in the grace on a quiet one), so only "more than one" is asserted.
        Assert.InRange(record.CompletionTokens, 2, 1999);

        // A late client still sees what was generated, and why it stops.
        var late = await ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}", HttpCompletionOption.ResponseHeadersRead));
        Assert.False(late.Done);
        Assert.Contains("stream_cancelled", late.Data[^1], StringComparison.Ordinal);
        Assert.Single(gateway.Usage.Records, r => r.RequestId == requestId);
    }

    [Fact]
    public async Task A_client_that_leaves_before_the_headers_gets_no_grace_it_could_never_resume()
    {
        // The model takes 20 s to its first token and no ping goes out meanwhile, so the client leaves without ever
        // having seen the stream id: keeping the generation for the 30 s grace would only burn the model. (The bounds
        // leave room for a loaded CI machine: 3 s once proved too tight there; 10 s is still far from 20 s and 30 s.)
        await using var gateway = await StartAsync(o =>
        {
            o.Streaming.ResumeGraceSeconds = 30;
            o.Streaming.PingIntervalSeconds = 60;
            o.Models.Add(new ModelOptions { Name = "sim-slowstart", Provider = "sim", TimeToFirstTokenMs = 20_000 });
        });
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.BaseAddress };
        using var leave = new CancellationTokenSource();
        var body = """{"model":"sim-slowstart","prompt":"Tell me about lighthouses","stream":true,"max_tokens":50}""";
        var sending = client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = TestGateway.Json(body) },
            HttpCompletionOption.ResponseHeadersRead,
            leave.Token);

        // The client leaves once the gateway holds its stream (no headers yet): leaving after a fixed 300 ms could, on a
        // loaded machine, leave before the request reached the gateway at all — and then nothing is billed.
        var registry = gateway.Gateway.GetRequiredService<StreamRegistry>();
        var waiting = Stopwatch.StartNew();
        while (registry.Count == 0 && waiting.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(10);
        }

        Assert.Equal(1, registry.Count);
        await leave.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sending);
        var leftAt = Stopwatch.GetTimestamp();

        await gateway.Usage.WaitForCountAsync(1, TimeSpan.FromSeconds(10));
        var record = Assert.Single(gateway.Usage.Records);
        Assert.Equal("sim-slowstart", record.Model);
        Assert.Equal(UsageStatus.Abandoned, record.Status);
        Assert.Equal(0, record.CompletionTokens);
        Assert.True(Stopwatch.GetElapsedTime(leftAt) < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task With_resume_opted_out_or_a_zero_grace_a_disconnect_cancels_within_100_ms()
    {
        await using var gateway = await StartAsync(o => o.Streaming.ResumeGraceSeconds = 0);
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.BaseAddress };
        var delays = new List<TimeSpan>();
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var response = await client.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
                {
                    Content = TestGateway.Json("""{"model":"sim-paced","prompt":"A very long story","stream":true,"max_tokens":4000}"""),
                },
                HttpCompletionOption.ResponseHeadersRead);
            Assert.True(response.Headers.Contains(HttpStreamSink.StreamIdHeader), "still resumable while connected");
            var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
            var seen = 0;
            await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync()))
            {
                if (++seen == 3)
                {
                    break;
                }
            }

            var abortedAt = Stopwatch.GetTimestamp();
            response.Dispose();
            var (record, recordedAt) = await gateway.Usage.WaitForAsync(requestId);
            Assert.Equal(UsageStatus.Abandoned, record.Status);
            delays.Add(Stopwatch.GetElapsedTime(abortedAt, recordedAt));
        }

        delays.Sort();
        Assert.True(delays[1] < TimeSpan.FromMilliseconds(100), $"generation stopped {delays[1].TotalMilliseconds:F0} ms after the disconnect");
    }

    [Fact]
    public async Task Delete_cancels_a_running_generation_and_its_client_sees_why()
    {
        await using var gateway = await StartAsync();
        using var response = await gateway.PostChatAsync(Request.Replace("\"max_tokens\":40", "\"max_tokens\":2000", StringComparison.Ordinal));
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var reading = ReadAllAsync(response);
        using var deleted = await gateway.Client.DeleteAsync($"v1/streams/{streamId}");
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.True(JsonDocument.Parse(await deleted.Content.ReadAsStringAsync()).RootElement.GetProperty("cancelled").GetBoolean());
        var all = await reading.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(all.Done);
        Assert.Contains("stream_cancelled", all.Data[^1], StringComparison.Ordinal);
    }

    internal static string Content(IEnumerable<SseEvent> events) => string.Concat(events.Select(ContentOf));

    internal static string ContentOf(SseEvent e)
    {
        if (e.IsComment || e.IsDone)
        {
            return string.Empty;
        }

        using var doc = JsonDocument.Parse(e.Data);
        if (!doc.RootElement.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0)
        {
            return string.Empty;
        }

        return choices[0].GetProperty("delta").TryGetProperty("content", out var content) ? content.GetString() ?? string.Empty : string.Empty;
    }

    internal static async Task<Read> ReadAllAsync(HttpResponseMessage response)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var read = new Read();
        var last = 0L;
        await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync(cts.Token), cancellationToken: cts.Token))
        {
            var now = Stopwatch.GetTimestamp();
            if (last != 0)
            {
                read.Gaps.Add(Stopwatch.GetElapsedTime(last, now));
            }

            read.First = read.First == 0 ? now : read.First;
            read.Last = now;
            last = now;
            read.Events.Add(e);
            read.Ids.Add(e.LastEventId ?? string.Empty);
            read.Data.Add(e.DataText);
            read.Done |= e.IsDone;
        }

        response.Dispose();
        return read;
    }

    internal sealed class Read
    {
        public List<SseEvent> Events { get; } = [];

        public List<string> Ids { get; } = [];

        public List<string> Data { get; } = [];

        public List<TimeSpan> Gaps { get; } = [];

        public bool Done { get; set; }

        public long First { get; set; }

        public long Last { get; set; }

        public TimeSpan Spread => Last == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(First, Last);

        public string Text => Content(Events);
    }
}
