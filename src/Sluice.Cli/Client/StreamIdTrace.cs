using Sluice.Client;
using Sluice.Protocol.Sse;

namespace Sluice.Cli.Client;

/// <summary>
/// Notes the id of the resumable stream being read (the gateway's <c>: sluice-stream-id strm_…</c> comment), so
/// that Ctrl+C can cancel the generation on the server and wait for the answer; passes everything on to the
/// <c>--debug</c> trace, if any.
/// </summary>
internal sealed class StreamIdTrace(ISluiceTrace? inner) : ISluiceTrace
{
    private const string CommentPrefix = "sluice-stream-id ";

    private string? _streamId;

    /// <summary>The stream id of the current request, once its comment arrived; null before, or for plain streams.</summary>
    public string? StreamId => Volatile.Read(ref _streamId);

    /// <summary>Forgets the previous request's id.</summary>
    public void Reset() => Volatile.Write(ref _streamId, null);

    public void RequestSending(HttpMethod method, Uri url, ReadOnlySpan<byte> payload) => inner?.RequestSending(method, url, payload);

    public void ResponseReceived(int statusCode, string? contentType) => inner?.ResponseReceived(statusCode, contentType);

    public void ErrorBodyReceived(string body) => inner?.ErrorBodyReceived(body);

    public void EventReceived(SseEvent sseEvent)
    {
        ArgumentNullException.ThrowIfNull(sseEvent);
        if (sseEvent.IsComment)
        {
            var text = sseEvent.DataText.Trim();
            if (text.StartsWith(CommentPrefix, StringComparison.Ordinal) && text[CommentPrefix.Length..].Trim() is { Length: > 0 } id)
            {
                Volatile.Write(ref _streamId, id);
            }
        }

        inner?.EventReceived(sseEvent);
    }
}
