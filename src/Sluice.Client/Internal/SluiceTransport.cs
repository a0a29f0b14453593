using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;

namespace Sluice.Client.Internal;

/// <summary>One decoded stream chunk: its answer events (a fresh list per chunk) and what else it carried.</summary>
internal sealed record StreamChunk(List<ChatStreamEvent> Events, OpenAIChunkInfo Info, string? RequestId);

/// <summary>What one event of a stream means to <see cref="SluiceTransport.StreamEventsAsync{T}"/>.</summary>
/// <param name="Item">What to hand the caller, if anything.</param>
/// <param name="End">True when this event completes the stream (nothing is read after it).</param>
/// <param name="HasTokens">True when it carries answer tokens (for the first-token timeout).</param>
/// <param name="Finished">True when it carries the answer's finish reason.</param>
internal readonly record struct DecodedEvent<T>(T? Item, bool End = false, bool HasTokens = false, bool Finished = false)
    where T : class;

/// <summary>
/// The HTTP side shared by the clients: one <see cref="HttpClient"/>, requests with retries before the first token,
/// per-phase timeouts, OpenAI chunk streams read with <see cref="SseReader"/>, and resume after a dropped connection.
/// </summary>
internal sealed class SluiceTransport : IDisposable
{
    /// <summary>How long disposing waits for "stop generating" requests still under way.</summary>
    internal static readonly TimeSpan CancelWaitOnDispose = TimeSpan.FromSeconds(2);

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly ISluiceTrace? _trace;

    // "Stop generating" requests still under way: disposing waits for them (briefly), so a client disposed right after
    // its caller left a stream still tells the server (disposing the HttpClient would cut the request).
    private readonly ConcurrentDictionary<Task, byte> _pendingCancels = new();

    public SluiceTransport(SluiceClientOptions options, HttpClient? httpClient)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options.Clone();
        Endpoints = new SluiceEndpoints(Options.Endpoint);
        _trace = Options.Trace;
        if (httpClient is null)
        {
            // Time limits are ours (per phase), so HttpClient's own whole-request timeout is off.
            _http = new HttpClient(CreateHandler(Options), disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
            _ownsHttp = true;
        }
        else
        {
            _http = httpClient;
        }
    }

    public SluiceClientOptions Options { get; }

    public SluiceEndpoints Endpoints { get; }

    /// <summary>A handler with the connect timeout and a connection pool suited to long streams.</summary>
    public static SocketsHttpHandler CreateHandler(SluiceClientOptions options) => new()
    {
        ConnectTimeout = options.ConnectTimeout,
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
    };

    public void Dispose()
    {
        var pending = _pendingCancels.Keys.ToArray();
        if (pending.Length > 0)
        {
            // Bounded, and the requests never throw (best effort); they do not need this thread to finish.
            Task.WaitAll(pending, CancelWaitOnDispose);
        }

        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    /// <summary>
    /// POSTs <paramref name="payload"/> to <paramref name="url"/> and yields the decoded chunks of the event stream until
    /// <c>[DONE]</c>. Errors become <see cref="SluiceException"/>s; a dropped connection is resumed when possible.
    /// </summary>
    public IAsyncEnumerable<StreamChunk> StreamAsync(Uri url, byte[] payload, CancellationToken cancellationToken) =>
        StreamEventsAsync(url, payload, DecodeOpenAI, onResponse: null, cancellationToken);

    /// <summary>
    /// POSTs <paramref name="payload"/> to <paramref name="url"/> and yields what <paramref name="decode"/> makes of each
    /// event until it marks one as the end. Errors become <see cref="SluiceException"/>s; a dropped connection is
    /// resumed when possible. <paramref name="onResponse"/> sees the first response's headers.
    /// </summary>
    public async IAsyncEnumerable<T> StreamEventsAsync<T>(
        Uri url,
        byte[] payload,
        Func<SseEvent, string?, DecodedEvent<T>> decode,
        Action<HttpResponseMessage>? onResponse,
        [EnumeratorCancellation] CancellationToken cancellationToken)
        where T : class
    {
        using var watch = new RequestWatch(Options, cancellationToken);
        var response = await SendStreamingAsync(url, payload, watch).ConfigureAwait(false);
        onResponse?.Invoke(response);
        var requestId = ErrorMapper.RequestIdOf(response);
        var streamId = Options.ResumeStreams && response.Headers.TryGetValues(SluiceClientOptions.StreamIdHeader, out var ids)
            ? ids.FirstOrDefault() : null;
        string? lastEventId = null;
        var finishSeen = false;
        var resumes = 0;
        var source = url;
        try
        {
            while (true)
            {
                Exception? dropCause = null;
                Stream? body = null;
                try
                {
                    body = await watch.RunAsync(response.Content.ReadAsStreamAsync(watch.Token), source, streaming: true).ConfigureAwait(false);
                }
                catch (StreamDropException drop)
                {
                    dropCause = drop.InnerException ?? drop;
                }

                if (body is not null)
                {
                    // Comments are surfaced: keep-alive pings reset the idle timer.
                    var events = SseReader.ReadAsync(body, surfaceComments: true, watch.Token).GetAsyncEnumerator(watch.Token);
                    try
                    {
                        while (true)
                        {
                            bool hasEvent;
                            try
                            {
                                hasEvent = await watch.RunAsync(events.MoveNextAsync().AsTask(), source, streaming: true).ConfigureAwait(false);
                            }
                            catch (StreamDropException drop)
                            {
                                dropCause = drop.InnerException ?? drop;
                                break;
                            }

                            if (!hasEvent)
                            {
                                break;
                            }

                            var sseEvent = events.Current;
                            _trace?.EventReceived(sseEvent);
                            watch.EventArrived();
                            if (sseEvent.IsComment || IsReplayed(sseEvent.LastEventId, lastEventId))
                            {
                                continue;
                            }

                            lastEventId = sseEvent.LastEventId ?? lastEventId;
                            var decoded = decode(sseEvent, requestId);
                            if (decoded.HasTokens)
                            {
                                watch.TokenArrived();
                            }

                            finishSeen |= decoded.Finished;
                            if (decoded.End)
                            {
                                streamId = null; // complete: nothing to cancel
                            }

                            if (decoded.Item is { } item)
                            {
                                yield return item;
                            }

                            if (decoded.End)
                            {
                                yield break;
                            }
                        }
                    }
                    finally
                    {
                        await DisposeQuietlyAsync(events).ConfigureAwait(false);
                    }
                }

                if (streamId is null && dropCause is null && finishSeen)
                {
                    // Some OpenAI-compatible servers end the stream after the finish reason without [DONE]:
                    // nothing is missing but the marker, and there is no way to ask for more.
                    yield break;
                }

                response.Dispose();
                response = await ResumeAsync(streamId, lastEventId, ++resumes, dropCause, requestId, source, watch).ConfigureAwait(false);
                source = Endpoints.Stream(streamId!);
            }
        }
        finally
        {
            response.Dispose();
            if (streamId is not null)
            {
                // Left before [DONE] (the caller cancelled or stopped reading, or resuming failed): a resumable stream
                // would keep generating on the server for its grace period, so tell it to stop now. Best effort,
                // without delaying the caller; Dispose waits for it briefly.
                var cancel = CancelServerStreamAsync(streamId);
                _pendingCancels.TryAdd(cancel, 0);
                _ = cancel.ContinueWith(
                    static (done, pending) => ((ConcurrentDictionary<Task, byte>)pending!).TryRemove(done, out _),
                    _pendingCancels,
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
            }
        }
    }

    private async Task CancelServerStreamAsync(string streamId)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            using var request = NewRequest(HttpMethod.Delete, Endpoints.Stream(streamId), null, "application/json");
            using var response = await _http.SendAsync(request, timeout.Token).ConfigureAwait(false);
            _trace?.ResponseReceived((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType);
        }
#pragma warning disable CA1031 // Best effort: the stream ends on the server after its grace period anyway.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>
    /// Sends a JSON request (or a GET) and parses the JSON answer. Connection failures and 429 are retried;
    /// 5xx only when <paramref name="idempotent"/> (a retried POST could otherwise do its work twice).
    /// </summary>
    public async Task<JsonDocument> SendJsonAsync(HttpMethod method, Uri url, byte[]? payload, bool idempotent, CancellationToken cancellationToken)
    {
        using var watch = new RequestWatch(Options, cancellationToken, streaming: false);
        for (var attempt = 0; ; attempt++)
        {
            using var request = NewRequest(method, url, payload, "application/json");
            HttpResponseMessage response;
            try
            {
                response = await watch.RunAsync(_http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, watch.Token), url, streaming: false).ConfigureAwait(false);
            }
            catch (SluiceException ex) when (attempt < Options.MaxRetries && IsRetryable(ex))
            {
                await DelayAsync(Backoff(attempt), watch).ConfigureAwait(false);
                continue;
            }

            using (response)
            {
                _trace?.ResponseReceived((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType);
                if (response.IsSuccessStatusCode)
                {
                    var text = await watch.RunAsync(response.Content.ReadAsStringAsync(watch.Token), url, streaming: false).ConfigureAwait(false);
                    try
                    {
                        return JsonDocument.Parse(text);
                    }
                    catch (JsonException ex)
                    {
                        throw new SluiceServerException(
                            $"{url.Authority} answered {(int)response.StatusCode} to {method} {url.AbsolutePath} with a body that is not JSON ({ex.Message}). Check that the address points at a Sluice gateway.",
                            new SluiceErrorDetails((int)response.StatusCode, null, null, null, null, ErrorMapper.RequestIdOf(response)),
                            inner: ex);
                    }
                }

                var error = await ReadErrorAsync(response, url, watch).ConfigureAwait(false);
                var status = (int)response.StatusCode;
                var retryable = status is 408 or 429 || (idempotent && status >= 500);
                if (!retryable || attempt >= Options.MaxRetries || !TryRetryDelay(error, attempt, out var delay))
                {
                    throw error;
                }

                await DelayAsync(delay, watch).ConfigureAwait(false);
            }
        }
    }

    private async Task<HttpResponseMessage> SendStreamingAsync(Uri url, byte[] payload, RequestWatch watch)
    {
        for (var attempt = 0; ; attempt++)
        {
            watch.BeginAttempt();
            var request = NewRequest(HttpMethod.Post, url, payload, "text/event-stream");
            if (Options.ResumeStreams)
            {
                // Asks Sluice to keep generating through a dropped connection so this client can resume it.
                request.Headers.TryAddWithoutValidation(SluiceClientOptions.ResumeHeader, "on");
            }

            HttpResponseMessage response;
            try
            {
                response = await watch.RunAsync(_http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, watch.Token), url, streaming: false).ConfigureAwait(false);
            }
            catch (SluiceException ex) when (attempt < Options.MaxRetries && IsRetryable(ex))
            {
                request.Dispose();
                await DelayAsync(Backoff(attempt), watch).ConfigureAwait(false);
                continue;
            }
            catch
            {
                request.Dispose();
                throw;
            }

            _trace?.ResponseReceived((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType);
            if (response.IsSuccessStatusCode && ErrorMapper.IsEventStream(response.Content.Headers.ContentType))
            {
                return response;
            }

            using (request)
            using (response)
            {
                if (response.IsSuccessStatusCode)
                {
                    var body = await watch.RunAsync(ErrorMapper.ReadBoundedAsync(response.Content, watch.Token), url, streaming: false).ConfigureAwait(false);
                    _trace?.ErrorBodyReceived(body);
                    throw new SluiceServerException(
                        $"{url.Authority} answered {(int)response.StatusCode} with '{response.Content.Headers.ContentType?.MediaType ?? "no content type"}' instead of an event stream. Check that the address points at a Sluice or OpenAI-compatible server.",
                        new SluiceErrorDetails((int)response.StatusCode, null, null, null, null, ErrorMapper.RequestIdOf(response)));
                }

                var error = await ReadErrorAsync(response, url, watch).ConfigureAwait(false);
                var status = (int)response.StatusCode;
                if (status is not (408 or 429 or >= 500) || attempt >= Options.MaxRetries || !TryRetryDelay(error, attempt, out var delay))
                {
                    throw error;
                }

                await DelayAsync(delay, watch).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Reconnects to a dropped stream with <c>Last-Event-ID</c>, or raises the mid-stream error.</summary>
    private async Task<HttpResponseMessage> ResumeAsync(
        string? streamId, string? lastEventId, int resume, Exception? dropCause, string? requestId, Uri source, RequestWatch watch)
    {
        var what = dropCause is null
            ? "The stream ended without its [DONE] marker"
            : $"The connection to {source.Authority} broke mid-stream ({dropCause.Message})";
        var details = new SluiceErrorDetails(null, null, null, null, null, requestId);
        if (streamId is null)
        {
            throw new SluiceStreamException(
                $"{what}: the server or a proxy cut it short, and it gave no stream id to resume from. The answer is incomplete; retry the request.",
                details,
                dropCause);
        }

        var url = Endpoints.Stream(streamId);
        for (var attempt = resume; ; attempt++)
        {
            if (attempt > Options.MaxResumeAttempts)
            {
                throw new SluiceStreamException(
                    $"{what}, and {Options.MaxResumeAttempts} attempts to resume stream {streamId} failed. The answer is incomplete; retry the request.",
                    details,
                    dropCause);
            }

            watch.BeginAttempt();
            using var request = NewRequest(HttpMethod.Get, url, null, "text/event-stream");
            if (lastEventId is not null)
            {
                request.Headers.TryAddWithoutValidation("Last-Event-ID", lastEventId);
            }

            HttpResponseMessage response;
            try
            {
                response = await watch.RunAsync(_http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, watch.Token), url, streaming: false).ConfigureAwait(false);
            }
            catch (SluiceException ex) when (IsRetryable(ex))
            {
                dropCause = ex;
                await DelayAsync(Backoff(attempt - 1), watch).ConfigureAwait(false);
                continue;
            }

            _trace?.ResponseReceived((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType);
            if (response.IsSuccessStatusCode && ErrorMapper.IsEventStream(response.Content.Headers.ContentType))
            {
                return response;
            }

            using (response)
            {
                var status = (int)response.StatusCode;
                if (status is 404 or 410)
                {
                    throw new SluiceStreamException(
                        $"{what}, and the server no longer has stream {streamId} (GET {url.AbsolutePath} answered {status}), so it cannot be resumed. The answer is incomplete; retry the request.",
                        details with { StatusCode = status },
                        dropCause);
                }

                if (status is 408 or 429 or >= 500)
                {
                    var error = await ReadErrorAsync(response, url, watch).ConfigureAwait(false);
                    dropCause = error;
                    await DelayAsync(TryRetryDelay(error, attempt - 1, out var delay) ? delay : Backoff(attempt - 1), watch).ConfigureAwait(false);
                    continue;
                }

                var rejected = response.IsSuccessStatusCode
                    ? $"answered with '{response.Content.Headers.ContentType?.MediaType}' instead of an event stream"
                    : (await ReadErrorAsync(response, url, watch).ConfigureAwait(false)).Message;
                throw new SluiceStreamException(
                    $"{what}, and resuming stream {streamId} failed: {rejected} The answer is incomplete; retry the request.",
                    details with { StatusCode = status },
                    dropCause);
            }
        }
    }

    private HttpRequestMessage NewRequest(HttpMethod method, Uri url, byte[]? payload, string accept)
    {
        var request = new HttpRequestMessage(method, url);
        if (payload is not null)
        {
            request.Content = new ByteArrayContent(payload);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        }

        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(accept));
        if (!string.IsNullOrEmpty(Options.ApiKey))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Options.ApiKey);
        }

        _trace?.RequestSending(method, url, payload ?? []);
        return request;
    }

    private async Task<SluiceException> ReadErrorAsync(HttpResponseMessage response, Uri url, RequestWatch watch)
    {
        var body = await watch.RunAsync(ErrorMapper.ReadBoundedAsync(response.Content, watch.Token), url, streaming: false).ConfigureAwait(false);
        _trace?.ErrorBodyReceived(body);
        return ErrorMapper.FromStatus((int)response.StatusCode, body, ErrorMapper.RequestIdOf(response), ErrorMapper.RetryAfterOf(response), url);
    }

    private static DecodedEvent<StreamChunk> DecodeOpenAI(SseEvent sseEvent, string? requestId)
    {
        if (sseEvent.IsDone)
        {
            return new DecodedEvent<StreamChunk>(null, End: true);
        }

        var chunk = Decode(sseEvent, requestId);
        return new DecodedEvent<StreamChunk>(chunk, HasTokens: HasTokens(chunk.Events), Finished: chunk.Events.Exists(e => e is FinishEvent { ChoiceIndex: 0 }));
    }

    private static StreamChunk Decode(SseEvent sseEvent, string? requestId)
    {
        var events = new List<ChatStreamEvent>(2);
        OpenAIChunkInfo info;
        try
        {
            info = OpenAIChunkDecoder.Decode(sseEvent.Data.Span, events, captureIdentity: true);
        }
        catch (JsonException ex)
        {
            throw new SluiceStreamException(
                $"The server sent an event that is not a JSON chunk ({ex.Message}): \"{Shorten(sseEvent.DataText)}\". The answer is incomplete; check that the server speaks the OpenAI streaming format.",
                new SluiceErrorDetails(RequestId: requestId),
                ex);
        }

        if (info.Error is { } error)
        {
            throw ErrorMapper.FromErrorEvent(error, requestId);
        }

        return new StreamChunk(events, info, requestId);
    }

    private static bool HasTokens(List<ChatStreamEvent> events)
    {
        foreach (var streamEvent in events)
        {
            if (streamEvent is TextDeltaEvent or RefusalDeltaEvent or ToolCallDeltaEvent)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>True for an event a resumed stream sends again (numeric ids not above the last one seen).</summary>
    private static bool IsReplayed(string? eventId, string? lastEventId) =>
        eventId is not null && lastEventId is not null
        && long.TryParse(eventId, out var id) && long.TryParse(lastEventId, out var last) && id <= last;

    private static bool IsRetryable(SluiceException ex) =>
        ex is SluiceConnectionException or SluiceTimeoutException { Kind: SluiceTimeoutKind.Connect };

    private bool TryRetryDelay(SluiceException error, int attempt, out TimeSpan delay)
    {
        var retryAfter = error switch
        {
            SluiceRateLimitException rate => rate.RetryAfter,
            SluiceServerException server => server.RetryAfter,
            _ => null,
        };
        delay = retryAfter ?? Backoff(attempt);

        // A server that asks for a longer wait than we allow gets its error raised, carrying the delay.
        return delay <= Options.MaxRetryDelay;
    }

    private TimeSpan Backoff(int attempt)
    {
        var factor = Math.Pow(2, Math.Min(attempt, 16)) * (0.8 + (Random.Shared.NextDouble() * 0.4));
        var delay = TimeSpan.FromTicks((long)(Options.RetryDelay.Ticks * factor));
        return delay > Options.MaxRetryDelay ? Options.MaxRetryDelay : delay;
    }

    private static async Task DelayAsync(TimeSpan delay, RequestWatch watch)
    {
        watch.Pause();
        if (delay > TimeSpan.Zero)
        {
            await watch.RunAsync(WaitAsync(delay, watch.ScopeToken), new Uri("http://delay/"), streaming: false).ConfigureAwait(false);
        }
    }

    private static async Task<bool> WaitAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        return true;
    }

    private static async ValueTask DisposeQuietlyAsync(IAsyncEnumerator<SseEvent> events)
    {
        try
        {
            await events.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException or OperationCanceledException)
        {
            // The connection is being abandoned; its failure to close cleanly changes nothing.
        }
    }

    private static string Shorten(string text) => text.Length > 120 ? text[..120] + "…" : text;
}

/// <summary>UTF-8 helpers.</summary>
internal static class Utf8
{
    public static readonly Encoding NoBom = new UTF8Encoding(false);
}
