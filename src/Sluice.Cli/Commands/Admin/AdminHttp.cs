using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Sluice.Cli.Commands.Admin;

/// <summary>A failed admin request: a message that says what to do next, and the exit code for its class.</summary>
internal sealed class AdminException(string message, int exitCode) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// The HTTP side of <c>sluice admin</c> and <c>sluice replay</c>: one client per process, a Bearer key, and error
/// answers mapped to a message (the server's own, plus what to do) and an exit code (10 / 11 / 12 / 14).
/// </summary>
internal sealed class AdminHttp : IDisposable
{
    private const int MaxErrorBodyChars = 4096;

    private readonly HttpClient _http;
    private readonly Uri _baseAddress;
    private readonly string _keyHint;

    public AdminHttp(Uri baseAddress, string? bearer, string keyHint, TimeSpan? timeout = null)
    {
        _baseAddress = baseAddress;
        _keyHint = keyHint;
        _http = new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(10) })
        {
            Timeout = timeout ?? TimeSpan.FromSeconds(60),
        };
        if (!string.IsNullOrEmpty(bearer))
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }
    }

    /// <summary>Parses <c>--url</c>; null with a message when it is not an http(s) URL.</summary>
    public static Uri? TryParseBase(string url, out string? error)
    {
        if (Uri.TryCreate(url.TrimEnd('/'), UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            error = null;
            return uri;
        }

        error = $"'{url}' is not an http(s) URL. Pass the gateway's address, e.g. --url http://127.0.0.1:8080.";
        return null;
    }

    /// <summary>Sends a request and returns the JSON answer; throws <see cref="AdminException"/> on failure.</summary>
    public async Task<JsonDocument> SendAsync(HttpMethod method, string path, object? body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, Url(path));
        if (body is not null)
        {
            request.Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        }

        using var response = await SendCoreAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw ErrorFor(response, text);
        }

        try
        {
            return JsonDocument.Parse(text);
        }
        catch (JsonException)
        {
            throw new AdminException(
                $"{method} {path} answered HTTP {(int)response.StatusCode} but not with JSON. Check that --url ({_baseAddress}) points at a Sluice gateway.",
                ExitCodes.ServerError);
        }
    }

    /// <summary>Opens a streaming GET (headers read, body not yet); throws <see cref="AdminException"/> on an error status.</summary>
    public async Task<HttpResponseMessage> OpenStreamAsync(string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(path));
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        var response = await SendCoreAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            throw ErrorFor(response, text);
        }
    }

    public void Dispose() => _http.Dispose();

    private Uri Url(string path) => new(_baseAddress, path);

    private async Task<HttpResponseMessage> SendCoreAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        try
        {
            return await _http.SendAsync(request, completion, cancellationToken);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException || ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            throw new AdminException(
                $"cannot connect to {_baseAddress.GetLeftPart(UriPartial.Authority)} ({ex.Message}). Is the gateway running? Start it with 'sluice serve', or pass its address with --url.",
                ExitCodes.ConnectionRefused);
        }
        catch (HttpRequestException ex)
        {
            throw new AdminException(
                $"the request to {_baseAddress.GetLeftPart(UriPartial.Authority)} failed ({ex.Message}). Check --url and retry.",
                ExitCodes.ConnectionRefused);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AdminException(
                $"{_baseAddress.GetLeftPart(UriPartial.Authority)} did not answer within {_http.Timeout.TotalSeconds:0} s. Check that the gateway is healthy and retry.",
                ExitCodes.Timeout);
        }
    }

    private AdminException ErrorFor(HttpResponseMessage response, string body)
    {
        var status = (int)response.StatusCode;
        var serverSaid = ServerMessage(body) ?? response.ReasonPhrase ?? "(no message)";
        var requestId = response.Headers.TryGetValues("x-request-id", out var ids) ? $" [request {ids.FirstOrDefault()}]" : string.Empty;
        var next = status switch
        {
            401 => $" Check the key ({_keyHint}).",
            403 => $" This key may not do that: use the master key ({_keyHint}).",
            404 => " Check the id or name (list them with the matching 'list'/'show' command) and --url.",
            >= 500 => " The gateway failed: retry, and if it keeps failing check its log for the request id.",
            _ => " Fix the arguments (see --help) and retry.",
        };
        var said = serverSaid.Trim();
        if (!said.EndsWith('.') && !said.EndsWith('!') && !said.EndsWith('?'))
        {
            said += ".";
        }

        return new AdminException(
            $"HTTP {status}: {said}{requestId}{(said.Contains(next.Trim(), StringComparison.Ordinal) ? string.Empty : next)}",
            status >= 500 ? ExitCodes.ServerError : ExitCodes.ClientError);
    }

    /// <summary>The message in <c>{"error": {"message"}}</c>, <c>{"error": "..."}</c>, <c>{"detail": "..."}</c>, or the text.</summary>
    private static string? ServerMessage(string body)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object)
            {
                if (root.TryGetProperty("error", out var error))
                {
                    if (error.ValueKind == JsonValueKind.String)
                    {
                        return error.GetString();
                    }

                    if (error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String)
                    {
                        return message.GetString();
                    }
                }

                if (root.TryGetProperty("detail", out var detail))
                {
                    return detail.ValueKind == JsonValueKind.String ? detail.GetString() : detail.GetRawText();
                }
            }
        }
        catch (JsonException)
        {
            // Not JSON: show the start of the text.
        }

        var trimmed = body.Trim();
        return trimmed.Length > MaxErrorBodyChars ? trimmed[..MaxErrorBodyChars] + "…" : trimmed;
    }
}
