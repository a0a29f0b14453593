using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Providers.Timing;

namespace Sluice.Providers.Upstream;

/// <summary>
/// The HTTP side of one upstream model entry: its connection pool (one <see cref="SocketsHttpHandler"/>, created
/// once with the catalog), its fixed headers (key, version, extra headers), and the mapping of every transport
/// and HTTP failure to a <see cref="ChatException"/> that says what to do. The API key is never put in a
/// message: upstream error texts are redacted before they are passed on.
/// </summary>
internal sealed class UpstreamTransport : IDisposable
{
    /// <summary>The code of <see cref="AuthError"/>.</summary>
    public const string UpstreamAuthCode = "upstream_auth_error";

    private const int MaxErrorBodyBytes = 64 * 1024;
    private static readonly MediaTypeHeaderValue JsonContentType = new("application/json");

    private readonly HttpClient _client;
    private readonly Http11Handler? _own;
    private readonly byte[] _ownHeaders = [];
    private readonly byte[] _ownHeadersWithoutAccept = [];
    private readonly string? _apiKey;
    private readonly Version _version = System.Net.HttpVersion.Version11;
    private readonly HttpVersionPolicy _versionPolicy = HttpVersionPolicy.RequestVersionOrLower;
    private readonly bool _priorKnowledge;

    /// <summary>
    /// A transport whose key goes in <paramref name="keyHeader"/> (as <paramref name="keyPrefix"/> + key) when a key is
    /// set, besides <paramref name="otherHeaders"/> — the one way every adapter builds its connection pool.
    /// </summary>
    public static UpstreamTransport Create(
        ModelOptions options, string providerLabel, string? apiKey, string accept, string keyHeader, string keyPrefix = "", params KeyValuePair<string, string>[] otherHeaders)
    {
        ArgumentNullException.ThrowIfNull(options);
        var headers = new List<KeyValuePair<string, string>>(otherHeaders);
        if (!string.IsNullOrEmpty(apiKey))
        {
            headers.Add(new(keyHeader, keyPrefix + apiKey));
        }

        return new UpstreamTransport(options, providerLabel, apiKey, headers, accept);
    }

    /// <param name="options">The model entry.</param>
    /// <param name="providerLabel">How messages name the provider, e.g. "OpenAI-compatible".</param>
    /// <param name="apiKey">The key read from <see cref="ModelOptions.ApiKeyEnv"/>, if any.</param>
    /// <param name="fixedHeaders">Headers sent on every request (the key header among them).</param>
    /// <param name="accept">The Accept header value.</param>
    public UpstreamTransport(
        ModelOptions options,
        string providerLabel,
        string? apiKey,
        IEnumerable<KeyValuePair<string, string>> fixedHeaders,
        string accept)
    {
        Options = options;
        ProviderLabel = providerLabel;
        _apiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey;
        BaseUrl = options.BaseUrl!.TrimEnd('/');
        UpstreamModel = string.IsNullOrWhiteSpace(options.UpstreamModel) ? options.Name : options.UpstreamModel;
        if (options.HttpVersion == "2")
        {
            // Over TLS the version is negotiated (ALPN) and falls back to 1.1; without TLS there is nothing to negotiate
            // with, so HTTP/2 is spoken from the first byte ("prior knowledge") and only to a server that speaks it.
            _version = System.Net.HttpVersion.Version20;
            _priorKnowledge = BaseUrl.StartsWith("http:", StringComparison.OrdinalIgnoreCase);
            _versionPolicy = _priorKnowledge ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower;
        }

        var connectTimeout = options.ConnectTimeoutMs > 0 ? TimeSpan.FromMilliseconds(options.ConnectTimeoutMs) : Timeout.InfiniteTimeSpan;
        var baseUri = new Uri(BaseUrl);
        // Plain-text HTTP/1.1 upstreams (local model servers above all) get Sluice's own client: HttpClient's response
        // stream allocates two async boxes per read that waits, which at thousands of paced streams is most of what the
        // gateway allocates and keeps every collection a gen-1 one. TLS, proxies and HTTP/2 stay with .NET's handler.
        UsesOwnClient = options.UpstreamClient != "dotnet" && _version == System.Net.HttpVersion.Version11
            && baseUri.Scheme == Uri.UriSchemeHttp && HttpClient.DefaultProxy.IsBypassed(baseUri);
        HttpMessageHandler handler = UsesOwnClient
            ? new Http11Handler(connectTimeout, TimeSpan.FromSeconds(60))
            : new SocketsHttpHandler
        {
            ConnectTimeout = connectTimeout,
            // Streams are long-lived; recycle pooled connections now and then so DNS changes are seen.
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            // A compressed SSE body can be held back by the decompressor; ask for identity (the default).
            AutomaticDecompression = DecompressionMethods.None,
            // Following a redirect would turn the POST into a GET; report it instead (see MapHttpError).
            AllowAutoRedirect = false,
            UseCookies = false,
            UseProxy = true,
            // When a request is abandoned mid-body, close the connection at once instead of reading on for up
            // to 2 s to reuse it: the upstream must see the disconnect and stop generating (and billing).
            ResponseDrainTimeout = TimeSpan.Zero,
            EnableMultipleHttp2Connections = true,
        };
        _own = handler as Http11Handler;
        _client = new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        var headers = _client.DefaultRequestHeaders;
        headers.Accept.ParseAdd(accept);
        foreach (var (name, value) in fixedHeaders)
        {
            headers.TryAddWithoutValidation(name, value);
        }

        if (options.Headers is { } extra)
        {
            foreach (var (name, value) in extra)
            {
                if (!TrySetHeader(headers, name, value))
                {
                    _client.Dispose();
                    throw new ModelConfigurationException(
                        $"Model \"{options.Name}\": Headers[\"{name}\"] cannot be sent as a request header (content headers such as Content-Type are set by Sluice). Remove it from Headers.");
                }
            }
        }

        if (_own is not null)
        {
            // Sluice's client is called directly with these lines (see SendAsync); a request's own Accept replaces the
            // transport's, as HttpClient's default headers did.
            _ownHeaders = Http11Handler.EncodeHeaders(headers, except: null);
            _ownHeadersWithoutAccept = Http11Handler.EncodeHeaders(headers, except: "Accept");
        }
    }

    /// <summary>The model entry.</summary>
    public ModelOptions Options { get; }

    /// <summary>Watches each call's time limits (the process-wide sweep unless a test gives its own clock).</summary>
    public DeadlineSweep Sweep { get; init; } = DeadlineSweep.System;

    /// <summary>Whether requests go through Sluice's own HTTP/1.1 client (<see cref="Http11Handler"/>) rather than .NET's.</summary>
    public bool UsesOwnClient { get; }

    /// <summary>How messages name the provider.</summary>
    public string ProviderLabel { get; }

    /// <summary>The provider as the GenAI semantic conventions name it (<c>gen_ai.provider.name</c>).</summary>
    public string GenAiProvider => ProviderLabel switch
    {
        "Anthropic" => "anthropic",
        "Gemini" => "gcp.gemini",
        "Ollama" => "ollama",
        _ => "openai",
    };

    /// <summary><see cref="ModelOptions.BaseUrl"/> without a trailing slash.</summary>
    public string BaseUrl { get; }

    /// <summary>The model name sent upstream.</summary>
    public string UpstreamModel { get; }

    /// <summary>"OpenAI-compatible upstream of model "x"", for messages.</summary>
    public string Describe() => $"{ProviderLabel} upstream of model \"{Options.Name}\"";

    /// <summary>
    /// Sends <paramref name="body"/> and returns once the response headers are in (the body is read as it streams).
    /// Transport failures, time-outs and non-success statuses become <see cref="ChatException"/>s; client
    /// cancellation stays an <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <param name="uri">Where to send it.</param>
    /// <param name="body">The JSON body.</param>
    /// <param name="call">The call's time limits and cancellation.</param>
    /// <param name="accept">An Accept header for this request instead of the transport's (a JSON answer rather than a stream).</param>
    /// <param name="header">A header of this request's own (e.g. <c>anthropic-beta</c>), sent beside the transport's.</param>
    public async Task<HttpResponseMessage> SendAsync(Uri uri, ReadOnlyMemory<byte> body, UpstreamCall call, string? accept = null, KeyValuePair<string, string>? header = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Version = _version, VersionPolicy = _versionPolicy };
        request.Content = new UpstreamBodyContent(body);
        request.Content.Headers.ContentType = JsonContentType;
        if (accept is not null)
        {
            request.Headers.Accept.ParseAdd(accept);
        }

        if (header is { } own)
        {
            // Kestrel checked the client's value; a value that still will not go into a header is left out, not sent broken.
            request.Headers.TryAddWithoutValidation(own.Key, own.Value);
        }

        HttpResponseMessage response;
        try
        {
            response = _own is not null
                ? await _own.SendAsync(request, accept is null ? _ownHeaders : _ownHeadersWithoutAccept, call.Token).ConfigureAwait(false)
                : await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, call.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (call.TimedOut)
        {
            throw call.TimeoutError();
        }
        catch (OperationCanceledException ex) when (ex.InnerException is TimeoutException && !call.Token.IsCancellationRequested)
        {
            // SocketsHttpHandler's ConnectTimeout: not the client leaving, not one of the answer's limits.
            throw new ChatException(504, new ErrorInfo(
                $"The {Describe()} at {uri.GetLeftPart(UriPartial.Authority)} did not accept a connection within {Options.ConnectTimeoutMs} ms "
                + $"({nameof(ModelOptions.ConnectTimeoutMs)} of model \"{Options.Name}\"). Check that the server is up and not overloaded, "
                + "then retry; raise ConnectTimeoutMs if it is just slow to accept.",
                ErrorTypes.Timeout, null, "upstream_connect_timeout"), inner: ex);
        }
        catch (HttpRequestException ex)
        {
            throw new ChatException(502, new ErrorInfo(
                $"Cannot reach the {Describe()} at {uri.GetLeftPart(UriPartial.Authority)} ({Redact(ex.Message)}). "
                + "Check that the server is running and that BaseUrl is right, then retry."
                + (_priorKnowledge
                    ? $" Model \"{Options.Name}\" has HttpVersion \"2\" over http://, which needs a server that speaks HTTP/2 without TLS (h2c); if this one does not, remove HttpVersion (HTTP/1.1)."
                    : string.Empty),
                ErrorTypes.Upstream, null, "upstream_unreachable"), inner: ex);
        }

        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            var errorBody = await ReadErrorBodyAsync(response, call).ConfigureAwait(false);
            throw MapHttpError(response, errorBody);
        }
    }

    /// <summary>Turns a non-success upstream response into the error the client gets, with the same status where that makes sense.</summary>
    public ChatException MapHttpError(HttpResponseMessage response, ReadOnlySpan<byte> body)
    {
        ArgumentNullException.ThrowIfNull(response);
        var status = (int)response.StatusCode;
        var upstream = ParseErrorBody(body);
        if (status is >= 300 and < 400)
        {
            var location = response.Headers.Location?.ToString() ?? "another address";
            return new ChatException(502, new ErrorInfo(
                $"The {Describe()} redirected the request (HTTP {status}) to {location}. Set BaseUrl to the final address.",
                ErrorTypes.Upstream, null, "upstream_redirect"));
        }

        if (status is 401 or 403)
        {
            return AuthError(status, upstream.Message);
        }

        var clientStatus = status switch
        {
            408 => 504,
            529 => 503,
            < 400 or > 599 => 502,
            _ => status,
        };
        var type = clientStatus switch
        {
            429 => ErrorTypes.RateLimit,
            504 => ErrorTypes.Timeout,
            >= 500 => ErrorTypes.Upstream,
            _ => ErrorTypes.InvalidRequest,
        };
        var retryAfter = clientStatus is 429 or 503 ? RetryAfterOf(response) : null;
        var nextStep = status switch
        {
            404 => $"Check UpstreamModel (\"{UpstreamModel}\") and BaseUrl of model \"{Options.Name}\".",
            429 => retryAfter is { } delay
                ? $"Retry after {Math.Ceiling(delay.TotalSeconds).ToString(CultureInfo.InvariantCulture)} s."
                : "Slow down and retry later.",
            408 or 504 => "Retry; the upstream took too long.",
            >= 500 => "The upstream failed; retry, or use another model.",
            _ => "Fix the request as the upstream's message says.",
        };
        var message = upstream.Message is { Length: > 0 } text
            ? $"The {Describe()} answered HTTP {status}: {Redact(text)} {nextStep}"
            : $"The {Describe()} answered HTTP {status}. {nextStep}";
        return new ChatException(
            clientStatus,
            new ErrorInfo(message, type, upstream.Param, upstream.Code ?? $"upstream_http_{status.ToString(CultureInfo.InvariantCulture)}"),
            retryAfter);
    }

    /// <summary>
    /// The 502 for an upstream that refused the gateway's own credentials (HTTP 401 or 403): the client's request and key
    /// are fine, so it is not told "authentication error", and nothing of the configuration is sent (key variable, address,
    /// the upstream's words); those go to the operator's log through <see cref="ChatException.OperatorNote"/>.
    /// </summary>
    public ChatException AuthError(int status, string? upstreamMessage)
    {
        var fix = status == 403
            ? $"the upstream account may not use \"{UpstreamModel}\"; check its access"
            : Options.ApiKeyEnv is { Length: > 0 } env
                ? $"check the API key in the environment variable {env}"
                : "this model entry sends no key; set ApiKeyEnv to the environment variable that holds it";
        var said = string.IsNullOrWhiteSpace(upstreamMessage) ? "no message" : Redact(upstreamMessage.Trim());
        return new ChatException(502, new ErrorInfo(
            $"The {Describe()} refused the gateway's credentials (HTTP {status.ToString(CultureInfo.InvariantCulture)}), so it cannot answer. "
            + "This is the gateway's configuration, not your request or key: retry later or use another model, and tell the operator (with the x-request-id) if it persists.",
            ErrorTypes.Upstream, null, UpstreamAuthCode))
        {
            OperatorNote = $"The {Describe()} at {BaseUrl} answered HTTP {status.ToString(CultureInfo.InvariantCulture)} ({said}): {fix}.",
        };
    }

    /// <summary>A 502 for an error the upstream reported inside its stream.</summary>
    public ChatException StreamError(string? message, string? code, int? status = null)
    {
        if (status is 401 or 403)
        {
            return AuthError(status.Value, message);
        }

        // Keep statuses a client can act on; anything else (Gemini's 499 CANCELLED, 500s) is a bad gateway.
        var clientStatus = status is 400 or 404 or 413 or 422 or 429 or 503 ? status.Value : 502;
        var type = clientStatus switch
        {
            429 => ErrorTypes.RateLimit,
            < 500 => ErrorTypes.InvalidRequest,
            _ => ErrorTypes.Upstream,
        };
        var text = string.IsNullOrWhiteSpace(message) ? "no details" : Redact(message.Trim());
        return new ChatException(clientStatus, new ErrorInfo(
            $"The {Describe()} reported an error: {text}. Retry, or use another model if it persists.",
            type, null, code ?? "upstream_error"));
    }

    /// <summary>A 502 for a broken connection or unreadable body.</summary>
    public ChatException Broken(Exception ex) => new(502, new ErrorInfo(
        $"The connection to the {Describe()} broke mid-answer ({Redact(ex.Message)}). Retry the request.",
        ErrorTypes.Upstream, null, "upstream_connection_lost"), inner: ex);

    /// <summary>A 502 for a stream that does not follow the upstream's documented format.</summary>
    public ChatException Malformed(string detail, Exception? inner = null) => new(502, new ErrorInfo(
        $"The {Describe()} sent a stream Sluice cannot read: {Redact(detail)}. Check that BaseUrl points at the provider's API and that Provider is right.",
        ErrorTypes.Upstream, null, "upstream_malformed"), inner: inner);

    /// <summary>A 502 for a stream that ended before its end marker.</summary>
    public ChatException EndedEarly(string marker) => new(502, new ErrorInfo(
        $"The {Describe()} ended its stream before {marker}; the answer may be incomplete. Retry the request.",
        ErrorTypes.Upstream, null, "upstream_truncated"));

    /// <summary>Removes the API key from text that may echo it.</summary>
    public string Redact(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _apiKey is { Length: >= 4 } key ? text.Replace(key, "[redacted]", StringComparison.Ordinal) : text;
    }

    public void Dispose() => _client.Dispose();

    /// <summary>Reads the error fields of an upstream error body in any provider's shape.</summary>
    internal static (string? Message, string? Code, string? Param) ParseErrorBody(ReadOnlySpan<byte> body)
    {
        var trimmed = body.Trim(" \t\r\n"u8);
        if (trimmed.IsEmpty)
        {
            return (null, null, null);
        }

        if (trimmed[0] is not ((byte)'{' or (byte)'['))
        {
            // Plain text (a proxy's page, a bare message): pass a short, single-line excerpt.
            var text = Encoding.UTF8.GetString(trimmed[..Math.Min(trimmed.Length, 300)]).ReplaceLineEndings(" ");
            return (text.Contains('<', StringComparison.Ordinal) ? null : text, null, null);
        }

        try
        {
            using var document = JsonDocument.Parse(trimmed.ToArray());
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Array && root.GetArrayLength() > 0)
            {
                root = root[0]; // Vertex AI sometimes wraps the error in an array.
            }

            if (root.ValueKind != JsonValueKind.Object)
            {
                return (null, null, null);
            }

            if (root.TryGetProperty("error", out var error))
            {
                if (error.ValueKind == JsonValueKind.String)
                {
                    return (error.GetString(), null, null);
                }

                if (error.ValueKind == JsonValueKind.Object)
                {
                    var code = Text(error, "code");
                    return (
                        Text(error, "message"),
                        code is not null && !int.TryParse(code, NumberStyles.Integer, CultureInfo.InvariantCulture, out _) ? code : Text(error, "status") ?? Text(error, "type"),
                        Text(error, "param"));
                }
            }

            return (Text(root, "message") ?? Text(root, "detail"), Text(root, "code"), null);
        }
        catch (JsonException)
        {
            return (null, null, null);
        }
    }

    private static string? Text(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var value) ? value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            _ => null,
        } : null;

    private static bool TrySetHeader(HttpRequestHeaders headers, string name, string value)
    {
        try
        {
            headers.Remove(name);
            return headers.TryAddWithoutValidation(name, value);
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            // Content headers and malformed names are refused by HttpRequestHeaders itself.
            return false;
        }
    }

    private static TimeSpan? RetryAfterOf(HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues("retry-after-ms", out var msValues)
            && double.TryParse(msValues.FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var ms) && ms >= 0)
        {
            return TimeSpan.FromMilliseconds(ms);
        }

        var retryAfter = response.Headers.RetryAfter;
        if (retryAfter?.Delta is { } delta)
        {
            return delta;
        }

        if (retryAfter?.Date is { } date)
        {
            var wait = date - DateTimeOffset.UtcNow;
            return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
        }

        return null;
    }

    private static async Task<byte[]> ReadErrorBodyAsync(HttpResponseMessage response, UpstreamCall call)
    {
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(call.Token).ConfigureAwait(false);
            var buffer = new byte[MaxErrorBodyBytes];
            var total = 0;
            int read;
            while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), call.Token).ConfigureAwait(false)) > 0)
            {
                total += read;
            }

            return buffer[..total];
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException || (ex is OperationCanceledException && call.TimedOut))
        {
            // The status alone still tells the client what happened.
            return [];
        }
    }
}
