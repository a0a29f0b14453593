using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Sluice.Protocol.Sse;
using static Sluice.Client.Tests.Streams;

namespace Sluice.Client.Tests;

/// <summary>
/// Resume after a cut connection, against a loopback server that implements the resumable-stream contract in front of
/// the real gateway: it answers <c>POST /v1/chat/completions</c> with the gateway's events plus
/// <c>x-sluice-stream-id</c>, cuts the connection mid-stream, and serves <c>GET /v1/streams/{id}</c> from
/// <c>Last-Event-ID</c> on.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ResumeTests(GatewayFixture gateway)
{
    private const string Prompt = "Tell me a long story about rivers";
    private static readonly ChatOptions Seeded = new() { MaxOutputTokens = 40, Seed = 17 };

    [Fact]
    public async Task A_stream_cut_cleanly_mid_answer_resumes_and_the_text_equals_an_uninterrupted_run()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, 40, 17);
        await using var proxy = await ResumableProxy.StartAsync(gateway, cutAfter: 10, CutMode.EndOfStream);
        var trace = new RecordingTrace();
        using var client = proxy.Client(trace);

        var updates = await CollectAsync(client.GetStreamingResponseAsync(User(Prompt), Seeded));

        Assert.Equal(expected, Text(updates));
        Assert.Single(updates, u => u.FinishReason == ChatFinishReason.Length);
        Assert.Equal(40, Assert.Single(updates.SelectMany(u => u.Contents).OfType<UsageContent>()).Details.OutputTokenCount);
        Assert.Equal(["10"], proxy.ResumedFrom);
        var resume = trace.Requests.Last();
        Assert.Equal(HttpMethod.Get, resume.Method);
        Assert.Equal($"/v1/streams/{proxy.LastStreamId}", resume.Url.AbsolutePath);
    }

    [Fact]
    public async Task A_reset_connection_resumes_and_a_second_cut_during_the_resume_resumes_again()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, 40, 17);
        await using var proxy = await ResumableProxy.StartAsync(gateway, cutAfter: 5, CutMode.Abort);
        proxy.CutResumesAfter = 8;
        proxy.CutResumes = 1;
        using var client = proxy.Client();

        var response = await client.GetResponseAsync(User(Prompt), Seeded);

        Assert.Equal(expected, response.Text);
        Assert.Equal(40, response.Usage?.OutputTokenCount);
        Assert.Equal(["5", "13"], proxy.ResumedFrom);
    }

    [Fact]
    public async Task Events_a_resumed_stream_sends_again_are_skipped()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, 40, 17);
        await using var proxy = await ResumableProxy.StartAsync(gateway, cutAfter: 12, CutMode.EndOfStream);
        proxy.ReplayOverlap = 4;
        using var client = proxy.Client();

        var response = await client.GetResponseAsync(User(Prompt), Seeded);

        Assert.Equal(expected, response.Text);
    }

    [Fact]
    public async Task A_stream_the_server_no_longer_has_raises_the_mid_stream_error()
    {
        await using var proxy = await ResumableProxy.StartAsync(gateway, cutAfter: 6, CutMode.EndOfStream);
        proxy.Forget = true;
        using var client = proxy.Client();
        var received = new List<ChatResponseUpdate>();

        var ex = await Assert.ThrowsAsync<SluiceStreamException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(User(Prompt), Seeded))
            {
                received.Add(update);
            }
        });

        Assert.Equal(404, ex.StatusCode);
        Assert.Contains("no longer has stream", ex.Message, StringComparison.Ordinal);
        Assert.Contains("retry", ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(6, received.Count(u => u.Text.Length > 0));
        Assert.Single(proxy.ResumedFrom);
    }

    [Fact]
    public async Task Without_a_stream_id_or_with_resume_off_a_cut_is_a_mid_stream_error_and_nothing_is_retried()
    {
        await using var proxy = await ResumableProxy.StartAsync(gateway, cutAfter: 6, CutMode.Abort);
        proxy.SendStreamId = false;
        var trace = new RecordingTrace();
        using var client = proxy.Client(trace);
        await using var resumable = await ResumableProxy.StartAsync(gateway, cutAfter: 6, CutMode.EndOfStream);
        using var resumeOff = resumable.Client(configure: o => o.ResumeStreams = false);

        var noId = await Assert.ThrowsAsync<SluiceStreamException>(() => client.GetResponseAsync(User(Prompt), Seeded));
        var off = await Assert.ThrowsAsync<SluiceStreamException>(() => resumeOff.GetResponseAsync(User(Prompt), Seeded));

        Assert.Contains("broke mid-stream", noId.Message, StringComparison.Ordinal);
        Assert.Single(trace.Requests);
        Assert.Contains("without its [DONE] marker", off.Message, StringComparison.Ordinal);
        Assert.Empty(resumable.ResumedFrom);
    }

    [Fact]
    public async Task Resume_attempts_are_bounded()
    {
        await using var proxy = await ResumableProxy.StartAsync(gateway, cutAfter: 3, CutMode.EndOfStream);
        proxy.CutResumesAfter = 0;
        proxy.CutResumes = int.MaxValue;
        using var client = proxy.Client(configure: o => o.MaxResumeAttempts = 2);

        var ex = await Assert.ThrowsAsync<SluiceStreamException>(() => client.GetResponseAsync(User(Prompt), Seeded));

        Assert.Contains("2 attempts to resume", ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, proxy.ResumedFrom.Count);
    }

    public enum CutMode
    {
        /// <summary>End the response body properly, without [DONE] (a proxy closing the stream).</summary>
        EndOfStream,

        /// <summary>Reset the connection.</summary>
        Abort,
    }

    /// <summary>The resumable-stream server: the gateway's real events, cut and resumed as scripted.</summary>
    private sealed class ResumableProxy : IAsyncDisposable
    {
        private readonly ConcurrentDictionary<string, List<(long Id, string Data)>> _streams = new();
        private readonly GatewayFixture _gateway;
        private readonly int _cutAfter;
        private readonly CutMode _mode;
        private ScriptedServer? _server;

        private ResumableProxy(GatewayFixture gateway, int cutAfter, CutMode mode)
        {
            _gateway = gateway;
            _cutAfter = cutAfter;
            _mode = mode;
        }

        public ConcurrentQueue<string?> ResumedFrom { get; } = new();

        public string? LastStreamId { get; private set; }

        public bool SendStreamId { get; set; } = true;

        /// <summary>Answer 404 on resume, as a server that has evicted the stream.</summary>
        public bool Forget { get; set; }

        /// <summary>Cut the first <see cref="CutResumes"/> resumed streams again after this many events.</summary>
        public int CutResumesAfter { get; set; }

        /// <summary>How many resumed streams are cut again.</summary>
        public int CutResumes { get; set; }

        /// <summary>Send this many already-delivered events again on resume.</summary>
        public int ReplayOverlap { get; set; }

        public static async Task<ResumableProxy> StartAsync(GatewayFixture gateway, int cutAfter, CutMode mode)
        {
            var proxy = new ResumableProxy(gateway, cutAfter, mode);
            proxy._server = await ScriptedServer.StartAsync(app =>
            {
                app.MapPost("/v1/chat/completions", proxy.StartAsync);
                app.MapGet("/v1/streams/{id}", proxy.ResumeAsync);
            });
            return proxy;
        }

        public SluiceChatClient Client(RecordingTrace? trace = null, Action<SluiceClientOptions>? configure = null)
        {
            var options = new SluiceClientOptions { Endpoint = _server!.Url, DefaultModel = "sim-fast", RetryDelay = TimeSpan.FromMilliseconds(20), Trace = trace };
            configure?.Invoke(options);
            return new SluiceChatClient(options);
        }

        public async ValueTask DisposeAsync()
        {
            if (_server is not null)
            {
                await _server.DisposeAsync();
            }
        }

        private async Task StartAsync(HttpContext context)
        {
            // Run the request on the real gateway to the end and keep its numbered events.
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync(context.RequestAborted);
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var upstream = await _gateway.Http.PostAsync(new Uri(_gateway.Url, "/v1/chat/completions"), content, context.RequestAborted);
            await using var stream = await upstream.Content.ReadAsStreamAsync(context.RequestAborted);
            var events = new List<(long Id, string Data)>();
            await foreach (var sseEvent in SseReader.ReadAsync(stream, cancellationToken: context.RequestAborted))
            {
                // The gateway numbers its events; the resume contract relies on that.
                events.Add((long.Parse(sseEvent.LastEventId!, System.Globalization.CultureInfo.InvariantCulture), sseEvent.DataText));
            }

            var id = "str_" + Guid.NewGuid().ToString("N");
            _streams[id] = events;
            LastStreamId = id;
            if (SendStreamId)
            {
                context.Response.Headers["x-sluice-stream-id"] = id;
            }

            ScriptedServer.StartStream(context);
            await ServeAsync(context, events.Take(_cutAfter), cut: true);
        }

        private async Task ResumeAsync(HttpContext context, string id)
        {
            var lastEventId = context.Request.Headers["Last-Event-ID"].FirstOrDefault();
            ResumedFrom.Enqueue(lastEventId);
            if (Forget || !_streams.TryGetValue(id, out var events))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                await context.Response.WriteAsJsonAsync(new { error = new { message = $"No stream {id}.", type = "invalid_request_error", code = "stream_not_found" } });
                return;
            }

            var after = (lastEventId is null ? 0 : long.Parse(lastEventId, System.Globalization.CultureInfo.InvariantCulture)) - ReplayOverlap;
            var rest = events.Where(e => e.Id > after);
            ScriptedServer.StartStream(context);
            var cut = ResumedFrom.Count <= CutResumes;
            await ServeAsync(context, cut ? rest.Take(CutResumesAfter) : rest, cut);
        }

        private async Task ServeAsync(HttpContext context, IEnumerable<(long Id, string Data)> events, bool cut)
        {
            foreach (var (eventId, data) in events)
            {
                await ScriptedServer.WriteEventAsync(context, data, eventId);
            }

            if (cut && _mode == CutMode.Abort)
            {
                // Give the client time to read what was sent before the reset discards it.
                await Task.Delay(150, context.RequestAborted);
                context.Abort();
            }
        }
    }
}
