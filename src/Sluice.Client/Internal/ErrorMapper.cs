using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol;

namespace Sluice.Client.Internal;

/// <summary>Turns error answers into typed <see cref="SluiceException"/>s.</summary>
internal static class ErrorMapper
{
    private const int MaxErrorBodyBytes = 64 * 1024;

    /// <summary>Reads an error response's body (bounded) and maps it.</summary>
    public static async Task<SluiceException> FromResponseAsync(HttpResponseMessage response, Uri url, CancellationToken cancellationToken)
    {
        var body = await ReadBoundedAsync(response.Content, cancellationToken);
        return FromStatus((int)response.StatusCode, body, RequestIdOf(response), RetryAfterOf(response), url);
    }

    /// <summary>Maps a status and its body: <c>{"error": {...}}</c>, <c>{"error": "..."}</c>, <c>{"detail": "..."}</c> or text.</summary>
    public static SluiceException FromStatus(int status, string body, string? requestId, TimeSpan? retryAfter, Uri url)
    {
        var details = ParseBody(body, status, requestId);
        var what = DescribeServerSaid(details);
        var waited = retryAfter is { } delay ? $" The server asks to wait {SluiceClientOptions.Describe(delay)} (Retry-After)." : string.Empty;
        return status switch
        {
            401 => new SluiceAuthenticationException($"{what} Check the API key (SluiceClientOptions.ApiKey): it is missing, unknown, revoked or expired.", details),
            403 when string.Equals(details.Code, SluiceInsufficientCreditsException.Code, StringComparison.Ordinal) =>
                new SluiceInsufficientCreditsException($"{what} The team has no credits left: add credits (POST /api/credits/teams/{{id}}/add), then retry.", details),
            403 => new SluicePermissionException($"{what} This key may not do that; use a key allowed to (e.g. for this model), or ask an administrator.", details),
            404 => new SluiceNotFoundException($"{what} Check the name or id{(details.Param is { } p ? $" in '{p}'" : string.Empty)} and the server address ({url.GetLeftPart(UriPartial.Authority)}).", details),
            408 => new SluiceTimeoutException($"{what} The server gave up waiting for the request; retry.", SluiceTimeoutKind.Server, details),
            429 => new SluiceRateLimitException($"{what} Slow down and retry later.{waited}", details, retryAfter),
            >= 500 => new SluiceServerException($"{what} The server or its upstream failed. Retry the request; if it keeps failing, quote the request id.{waited}", details, retryAfter),
            _ => new SluiceBadRequestException($"{what} Fix the request{(details.Param is { } param ? $" (parameter '{param}')" : string.Empty)} and send it again.", details),
        };
    }

    /// <summary>A mid-stream error event.</summary>
    public static SluiceStreamException FromErrorEvent(ErrorInfo error, string? requestId) =>
        new(
            $"The stream failed after it started{(error.Code is { } code ? $" ({code})" : string.Empty)}: {error.Message} The answer is incomplete; retry the request.",
            new SluiceErrorDetails(null, error.Message, error.Type, error.Code, error.Param, requestId));

    public static string? RequestIdOf(HttpResponseMessage response) =>
        response.Headers.TryGetValues(SluiceClientOptions.RequestIdHeader, out var values) ? values.FirstOrDefault() : null;

    public static TimeSpan? RetryAfterOf(HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues("retry-after-ms", out var ms)
            && double.TryParse(ms.FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var millis) && millis >= 0)
        {
            return TimeSpan.FromMilliseconds(millis);
        }

        return response.Headers.RetryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - DateTimeOffset.UtcNow is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero,
            _ => null,
        };
    }

    public static async Task<string> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
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

    private static string DescribeServerSaid(SluiceErrorDetails details)
    {
        var parts = new List<string>(3) { "HTTP " + details.StatusCode?.ToString(CultureInfo.InvariantCulture) };
        if (details.Code is { } code)
        {
            parts.Add(code);
        }

        if (details.Param is { } param)
        {
            parts.Add($"param '{param}'");
        }

        var message = string.IsNullOrWhiteSpace(details.Message) ? "(the server gave no message)" : details.Message.Trim();
        if (!message.EndsWith('.') && !message.EndsWith('!') && !message.EndsWith('?'))
        {
            message += ".";
        }

        var id = details.RequestId is { } requestId ? $" [request {requestId}]" : string.Empty;
        return $"{string.Join(", ", parts)}: {message}{id}";
    }

    private static SluiceErrorDetails ParseBody(string body, int status, string? requestId)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return new SluiceErrorDetails(status, null, null, null, null, requestId);
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
                        return new SluiceErrorDetails(status, error.GetString(), null, null, null, requestId);
                    }

                    if (error.ValueKind == JsonValueKind.Object)
                    {
                        return new SluiceErrorDetails(status, Text(error, "message"), Text(error, "type"), Text(error, "code"), Text(error, "param"), requestId);
                    }
                }

                // FastAPI-style servers (the SaaS job API this client also speaks) answer {"detail": "..."}.
                if (root.TryGetProperty("detail", out var detail))
                {
                    var message = detail.ValueKind == JsonValueKind.String ? detail.GetString() : detail.GetRawText();
                    return new SluiceErrorDetails(status, message, null, Text(root, "code"), null, requestId);
                }
            }
        }
        catch (JsonException)
        {
            // Not JSON: show the start of the text below.
        }

        var trimmed = body.Trim();
        return new SluiceErrorDetails(status, trimmed.Length > 300 ? trimmed[..300] + "…" : trimmed, null, null, null, requestId);
    }

    private static string? Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) ? value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Number => value.GetRawText(),
            _ => null,
        } : null;

    /// <summary>True for <c>text/event-stream</c> (any parameters).</summary>
    public static bool IsEventStream(MediaTypeHeaderValue? contentType) =>
        string.Equals(contentType?.MediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
}
