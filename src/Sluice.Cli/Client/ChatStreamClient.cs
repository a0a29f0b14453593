using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Sse;

namespace Sluice.Cli.Client;

/// <summary>
/// Streams chat completions from an OpenAI-compatible endpoint (<c>stream: true</c>) and turns the
/// Server-Sent Events into <see cref="ChatStreamUpdate"/>s. One instance owns one <see cref="HttpClient"/>
/// for all its requests. Failures become <see cref="ChatClientException"/>s with a <see cref="ChatFailureKind"/>;
/// cancelling the caller's token aborts the HTTP request and surfaces as <see cref="OperationCanceledException"/>.
/// </summary>
/// <remarks>
/// Time limits: connecting (<see cref="ChatClientSettings.ConnectTimeout"/>, by the socket handler), sending to
/// first token (<see cref="ChatClientSettings.FirstTokenTimeout"/>), silence between events once tokens flow
/// (<see cref="ChatClientSettings.IdleTimeout"/>; keep-alive comments count as life), and the whole request
/// (<see cref="ChatClientSettings.TotalTimeout"/>). The first two share one timer that is re-armed per event.
/// </remarks>
internal sealed class ChatStreamClient : IDisposable
{
    private const int MaxErrorBodyBytes = 64 * 1024;

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        // Keep text readable in --debug output; JSON-significant characters are still escaped.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly ChatClientSettings _settings;
    private readonly IChatStreamTrace? _trace;
    private readonly HttpClient _http;

    /// <summary>Creates the client and its HTTP connection pool.</summary>
    /// <exception cref="ChatClientConfigException">The URL in <paramref name="settings"/> is not usable.</exception>
    public ChatStreamClient(ChatClientSettings settings, IChatStreamTrace? trace = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _settings = settings;
        _trace = trace;
        Endpoint = settings.ResolveEndpoint();
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = settings.ConnectTimeout,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };

        // Time limits are ours (per phase), so HttpClient's own whole-request timeout is off.
        _http = new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>The chat-completions URL requests go to.</summary>
    public Uri Endpoint { get; }

    /// <summary>Sends <paramref name="request"/> and yields the answer as it arrives.</summary>
    /// <exception cref="ChatClientException">The request failed; the kind says how.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async IAsyncEnumerable<ChatStreamUpdate> StreamAsync(
        ChatStreamRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var payload = BuildPayload(request);
        _trace?.RequestSending(Endpoint, payload);

        using var watch = new StreamWatch(_settings, Endpoint, cancellationToken);
        using var message = new HttpRequestMessage(HttpMethod.Post, Endpoint) { Content = new ByteArrayContent(payload) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        message.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        if (!string.IsNullOrEmpty(_settings.ApiKey))
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _settings.ApiKey);
        }

        using var response = await SendAsync(message, watch);
        _trace?.ResponseReceived((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType);
        await EnsureEventStreamAsync(response, watch);

        var stream = await watch.RunAsync(response.Content.ReadAsStreamAsync(watch.Token), streaming: true);
        // Comments are surfaced even without a trace: keep-alive pings reset the idle timer.
        await using var events = SseReader.ReadAsync(stream, surfaceComments: true, watch.Token).GetAsyncEnumerator(watch.Token);
        var done = false;
        var modelSent = false;
        while (await watch.RunAsync(events.MoveNextAsync().AsTask(), streaming: true))
        {
            var sseEvent = events.Current;
            _trace?.EventReceived(sseEvent);
            watch.EventArrived();
            if (sseEvent.IsComment)
            {
                continue;
            }

            if (sseEvent.IsDone)
            {
                done = true;
                break;
            }

            var chunk = ParseChunk(sseEvent);
            if (chunk.Model is not null && !modelSent)
            {
                modelSent = true;
                yield return new ModelUpdate(chunk.Model);
            }

            if (chunk.HasTokens)
            {
                watch.TokenArrived();
            }

            if (!string.IsNullOrEmpty(chunk.Content))
            {
                yield return new ContentUpdate(chunk.Content);
            }

            if (chunk.FinishReason is not null)
            {
                yield return new FinishUpdate(chunk.FinishReason);
            }

            if (chunk.Usage is { } usage)
            {
                yield return usage;
            }
        }

        if (!done)
        {
            throw new ChatClientException(
                ChatFailureKind.MidStream,
                "The stream ended without its [DONE] marker: the server or a proxy cut it short, so the answer is incomplete. Retry the request.");
        }
    }

    /// <inheritdoc />
    public void Dispose() => _http.Dispose();

    /// <summary>The request body: OpenAI chat completions with streaming and usage reporting on.</summary>
    internal static byte[] BuildPayload(ChatStreamRequest request)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            if (request.Model is not null)
            {
                json.WriteString("model", request.Model);
            }

            json.WriteStartArray("messages");
            foreach (var turn in request.Messages)
            {
                json.WriteStartObject();
                json.WriteString("role", turn.Role);
                json.WriteString("content", turn.Content);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteBoolean("stream", true);
            json.WriteStartObject("stream_options");
            json.WriteBoolean("include_usage", true);
            json.WriteEndObject();
            if (request.MaxTokens is { } maxTokens)
            {
                json.WriteNumber("max_tokens", maxTokens);
            }

            if (request.Temperature is { } temperature)
            {
                json.WriteNumber("temperature", temperature);
            }

            if (request.Seed is { } seed)
            {
                json.WriteNumber("seed", seed);
            }

            if (request.Metadata is { Count: > 0 } metadata)
            {
                json.WriteStartObject("metadata");
                foreach (var (key, value) in metadata)
                {
                    json.WriteString(key, value);
                }

                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private Task<HttpResponseMessage> SendAsync(HttpRequestMessage message, StreamWatch watch) =>
        watch.RunAsync(_http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, watch.Token), streaming: false);

    private async Task EnsureEventStreamAsync(HttpResponseMessage response, StreamWatch watch)
    {
        var status = (int)response.StatusCode;
        var mediaType = response.Content.Headers.ContentType?.MediaType;
        if (response.IsSuccessStatusCode && string.Equals(mediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            return;
        }

        var body = await watch.RunAsync(ReadBoundedAsync(response.Content, watch.Token), streaming: false);
        _trace?.BodyReceived(body);
        var error = TryParseError(body);
        var retryAfter = response.Headers.RetryAfter?.Delta
            ?? (response.Headers.RetryAfter?.Date is { } date ? date - DateTimeOffset.UtcNow : null);
        if (response.IsSuccessStatusCode)
        {
            throw new ChatClientException(
                ChatFailureKind.Server,
                $"The server answered HTTP {status} with '{mediaType ?? "no content type"}' instead of an event stream. Check that --url points at a Sluice or OpenAI-compatible gateway.",
                status, error);
        }

        var kind = status is >= 400 and < 500 ? ChatFailureKind.Client : ChatFailureKind.Server;
        throw new ChatClientException(kind, DescribeHttpError(status, error, body, retryAfter), status, error, retryAfter);
    }

    private static string DescribeHttpError(int status, ErrorInfo? error, string body, TimeSpan? retryAfter)
    {
        var text = new StringBuilder();
        text.Append(status is >= 400 and < 500 ? "The server rejected the request" : "The server failed")
            .Append(" (HTTP ").Append(status.ToString(CultureInfo.InvariantCulture));
        if (error?.Code is { } code)
        {
            text.Append(", ").Append(code);
        }

        if (error?.Param is { } param)
        {
            text.Append(", param '").Append(param).Append('\'');
        }

        text.Append("): ");
        if (error is not null)
        {
            text.Append(error.Message);
        }
        else
        {
            var snippet = body.Trim();
            text.Append(snippet.Length == 0 ? "no error details." : (snippet.Length > 300 ? snippet[..300] + "…" : snippet));
        }

        // The server's message usually says what to do; add the generic next step where it may not.
        var hint = status switch
        {
            401 or 403 when error is null => " Pass --api-key or set SLUICE_API_KEY.",
            429 or >= 500 when retryAfter is { } delay => $" Retry in {Math.Max(1, Math.Ceiling(delay.TotalSeconds)).ToString(CultureInfo.InvariantCulture)} s.",
            429 => " Wait a moment and retry.",
            >= 500 => " Retry in a moment; if it keeps failing, check the gateway's log.",
            _ => string.Empty,
        };
        return text.Append(hint).ToString();
    }

    private static async Task<string> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[MaxErrorBodyBytes];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken)) > 0)
        {
            total += read;
        }

        return Encoding.UTF8.GetString(buffer, 0, total);
    }

    private static ErrorInfo? TryParseError(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            return ReadError(document.RootElement);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Reads <c>{"error": {"message", "type", "param", "code"}}</c> (or <c>{"error": "text"}</c>).</summary>
    private static ErrorInfo? ReadError(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("error", out var error))
        {
            return null;
        }

        if (error.ValueKind == JsonValueKind.String)
        {
            return new ErrorInfo(error.GetString() ?? string.Empty, ErrorTypes.Server);
        }

        if (error.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        return new ErrorInfo(
            StringOrNull(error, "message") ?? "(no message)",
            StringOrNull(error, "type") ?? ErrorTypes.Server,
            StringOrNull(error, "param"),
            StringOrNull(error, "code"));
    }

    private static string? StringOrNull(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static Chunk ParseChunk(SseEvent sseEvent)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(sseEvent.Data);
        }
        catch (JsonException ex)
        {
            throw new ChatClientException(
                ChatFailureKind.MidStream,
                $"The server sent an event that is not JSON ({ex.Message}); the answer is incomplete. Run with --debug to see the raw stream.",
                inner: ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (ReadError(root) is { } error)
            {
                var code = error.Code is null ? string.Empty : $" ({error.Code})";
                throw new ChatClientException(
                    ChatFailureKind.MidStream,
                    $"The stream failed after it started{code}: {error.Message} The answer is incomplete; retry the request.",
                    error: error);
            }

            if (root.ValueKind != JsonValueKind.Object)
            {
                return default;
            }

            var chunk = new Chunk { Model = StringOrNull(root, "model") };
            if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array)
            {
                foreach (var choice in choices.EnumerateArray())
                {
                    // The CLI shows one answer: choice 0.
                    if (choice.TryGetProperty("index", out var index) && index.ValueKind == JsonValueKind.Number && index.GetInt32() != 0)
                    {
                        continue;
                    }

                    if (choice.TryGetProperty("delta", out var delta) && delta.ValueKind == JsonValueKind.Object)
                    {
                        chunk.Content = StringOrNull(delta, "content");
                        chunk.HasTokens = !string.IsNullOrEmpty(chunk.Content)
                            || (delta.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array && calls.GetArrayLength() > 0);
                    }

                    chunk.FinishReason = StringOrNull(choice, "finish_reason");
                }
            }

            if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object
                && usage.TryGetProperty("completion_tokens", out var completion) && completion.TryGetInt32(out var completionTokens))
            {
                var promptTokens = usage.TryGetProperty("prompt_tokens", out var prompt) && prompt.TryGetInt32(out var p) ? p : 0;
                chunk.Usage = new UsageUpdate(promptTokens, completionTokens);
            }

            return chunk;
        }
    }

    private struct Chunk
    {
        public string? Model;
        public string? Content;
        public bool HasTokens;
        public string? FinishReason;
        public UsageUpdate? Usage;
    }

    /// <summary>
    /// The time limits of one request and the translation of failures into <see cref="ChatClientException"/>s.
    /// </summary>
    private sealed class StreamWatch : IDisposable
    {
        private readonly ChatClientSettings _settings;
        private readonly Uri _endpoint;
        private readonly CancellationToken _caller;
        private readonly CancellationTokenSource _total;
        private readonly CancellationTokenSource _watchdog;
        private bool _tokenSeen;

        public StreamWatch(ChatClientSettings settings, Uri endpoint, CancellationToken caller)
        {
            _settings = settings;
            _endpoint = endpoint;
            _caller = caller;
            _total = new CancellationTokenSource(settings.TotalTimeout);
            _watchdog = CancellationTokenSource.CreateLinkedTokenSource(caller, _total.Token);

            // Until the first token arrives, one deadline counts from the moment of sending.
            _watchdog.CancelAfter(settings.FirstTokenTimeout);
        }

        public CancellationToken Token => _watchdog.Token;

        /// <summary>Any event (even a keep-alive comment) proves the connection alive once tokens flow.</summary>
        public void EventArrived()
        {
            if (_tokenSeen)
            {
                Rearm();
            }
        }

        public void TokenArrived()
        {
            _tokenSeen = true;
            Rearm();
        }

        public async Task<T> RunAsync<T>(Task<T> task, bool streaming)
        {
            try
            {
                return await task;
            }
            catch (Exception ex) when (Translate(ex, streaming) is { } translated)
            {
                throw translated;
            }
        }

        public void Dispose()
        {
            _watchdog.Dispose();
            _total.Dispose();
        }

        private void Rearm()
        {
            if (!_watchdog.IsCancellationRequested)
            {
                _watchdog.CancelAfter(_settings.IdleTimeout);
            }
        }

        /// <summary>The exception to throw instead of <paramref name="ex"/>, or null to let it through.</summary>
        private Exception? Translate(Exception ex, bool streaming)
        {
            if (ex is ChatClientException)
            {
                return null;
            }

            if (_caller.IsCancellationRequested)
            {
                // The caller stopped us: whatever broke as a consequence is a cancellation.
                return ex is OperationCanceledException ? null : new OperationCanceledException("The request was cancelled.", ex, _caller);
            }

            if (_total.IsCancellationRequested)
            {
                return new ChatClientException(
                    ChatFailureKind.Timeout,
                    $"The request took longer than {ChatClientSettings.Describe(_settings.TotalTimeout)} (TotalTimeoutSeconds). Lower --max-tokens, or raise TotalTimeoutSeconds in the client config.",
                    inner: ex);
            }

            if (_watchdog.IsCancellationRequested)
            {
                return _tokenSeen
                    ? new ChatClientException(
                        ChatFailureKind.Timeout,
                        $"The stream went silent for {ChatClientSettings.Describe(_settings.IdleTimeout)} (IdleTimeoutSeconds); the answer is incomplete. Retry, or raise IdleTimeoutSeconds in the client config.",
                        inner: ex)
                    : new ChatClientException(
                        ChatFailureKind.Timeout,
                        $"No token arrived within {ChatClientSettings.Describe(_settings.FirstTokenTimeout)} (FirstTokenTimeoutSeconds). The model may be busy: retry, or raise FirstTokenTimeoutSeconds in the client config.",
                        inner: ex);
            }

            if (ex is OperationCanceledException or HttpRequestException && ex.InnerException is TimeoutException)
            {
                return new ChatClientException(
                    ChatFailureKind.Timeout,
                    $"Connecting to {_endpoint.Authority} took longer than {ChatClientSettings.Describe(_settings.ConnectTimeout)} (ConnectTimeoutSeconds). Check --url and that the gateway is reachable.",
                    inner: ex);
            }

            if (streaming && ex is IOException or HttpRequestException)
            {
                return new ChatClientException(
                    ChatFailureKind.MidStream,
                    $"The connection to {_endpoint.Authority} broke mid-stream ({ex.Message}); the answer is incomplete. Retry the request.",
                    inner: ex);
            }

            if (ex is HttpRequestException http)
            {
                return DescribeConnectFailure(http);
            }

            return null;
        }

        private ChatClientException DescribeConnectFailure(HttpRequestException ex)
        {
            var authority = _endpoint.Authority;
            var socket = ex.InnerException as SocketException;
            var message = ex.HttpRequestError switch
            {
                _ when socket?.SocketErrorCode == SocketError.ConnectionRefused =>
                    $"Cannot connect to {authority}: connection refused. Is the gateway running? Start it with 'sluice serve', or pass --url with the right address.",
                HttpRequestError.NameResolutionError =>
                    $"Cannot resolve the host '{_endpoint.Host}'. Check the address passed to --url.",
                HttpRequestError.SecureConnectionError =>
                    $"The TLS handshake with {authority} failed ({ex.Message}). Check http:// versus https:// in --url.",
                HttpRequestError.ResponseEnded =>
                    $"{authority} closed the connection without answering. Check that --url points at a Sluice or OpenAI-compatible gateway.",
                _ => $"Cannot reach {authority} ({ex.Message}). Check --url and that the gateway is running.",
            };
            var kind = ex.HttpRequestError == HttpRequestError.ResponseEnded ? ChatFailureKind.Server : ChatFailureKind.Connection;
            return new ChatClientException(kind, message, inner: ex);
        }
    }
}
