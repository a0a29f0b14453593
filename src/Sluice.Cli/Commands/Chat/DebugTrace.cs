using System.Text;
using Sluice.Client;
using Sluice.Protocol.Sse;

namespace Sluice.Cli.Commands.Chat;

/// <summary>
/// <c>--debug</c>: the request (<c>[http]</c> lines) and every raw event and comment of the response
/// (<c>[sse]</c> lines, as they appeared on the wire) on stderr.
/// </summary>
internal sealed class DebugTrace(TextWriter error) : ISluiceTrace
{
    public void RequestSending(HttpMethod method, Uri url, ReadOnlySpan<byte> payload)
    {
        error.WriteLine($"[http] {method} {url}");
        if (!payload.IsEmpty)
        {
            error.WriteLine("[http] request " + Encoding.UTF8.GetString(payload));
        }

        error.Flush();
    }

    public void ResponseReceived(int statusCode, string? contentType)
    {
        error.WriteLine($"[http] response {statusCode} {contentType}");
        error.Flush();
    }

    public void ErrorBodyReceived(string body)
    {
        foreach (var line in body.Split('\n'))
        {
            error.WriteLine("[http] body " + line.TrimEnd('\r'));
        }

        error.Flush();
    }

    public void EventReceived(SseEvent sseEvent)
    {
        if (sseEvent.IsComment)
        {
            error.WriteLine("[sse] : " + sseEvent.DataText);
        }
        else
        {
            if (sseEvent.EventType is { } type)
            {
                error.WriteLine("[sse] event: " + type);
            }

            foreach (var line in sseEvent.DataText.Split('\n'))
            {
                error.WriteLine("[sse] data: " + line);
            }
        }

        error.Flush();
    }
}
