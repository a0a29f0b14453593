using Sluice.Protocol.Sse;

namespace Sluice.Client;

/// <summary>
/// Sees the raw HTTP exchange, for debugging and logging (<see cref="SluiceClientOptions.Trace"/>). Called on the
/// streaming path, from the thread reading the stream: keep implementations cheap and never throw.
/// </summary>
public interface ISluiceTrace
{
    /// <summary>A request is about to be sent (also each retry and each resume).</summary>
    /// <param name="method">The HTTP method.</param>
    /// <param name="url">The URL.</param>
    /// <param name="payload">The JSON body (empty for GET).</param>
    void RequestSending(HttpMethod method, Uri url, ReadOnlySpan<byte> payload);

    /// <summary>Response headers arrived.</summary>
    /// <param name="statusCode">The HTTP status.</param>
    /// <param name="contentType">The media type, when there is one.</param>
    void ResponseReceived(int statusCode, string? contentType);

    /// <summary>The body of an error response (bounded to 64 KiB).</summary>
    /// <param name="body">The text.</param>
    void ErrorBodyReceived(string body);

    /// <summary>A raw Server-Sent Event or comment, before it is interpreted.</summary>
    /// <param name="sseEvent">The event.</param>
    void EventReceived(SseEvent sseEvent);
}
