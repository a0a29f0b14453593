using System.Text;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.Tests;

/// <summary>Feeds SSE bytes to a <see cref="SseParser"/> in different chunkings.</summary>
internal static class SseTestHelpers
{
    public static List<SseEvent> ParseWhole(byte[] bytes, bool surfaceComments = false)
    {
        var parser = new SseParser(surfaceComments);
        var events = new List<SseEvent>();
        parser.Feed(bytes, events);
        parser.Complete(events);
        return events;
    }

    public static List<SseEvent> ParseWhole(string text, bool surfaceComments = false) =>
        ParseWhole(Encoding.UTF8.GetBytes(text), surfaceComments);

    public static List<SseEvent> ParseByteByByte(byte[] bytes, bool surfaceComments = false)
    {
        var parser = new SseParser(surfaceComments);
        var events = new List<SseEvent>();
        for (var i = 0; i < bytes.Length; i++)
        {
            parser.Feed(bytes.AsSpan(i, 1), events);
        }

        parser.Complete(events);
        return events;
    }

    public static List<SseEvent> ParseInChunks(byte[] bytes, params int[] splitPoints)
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        var start = 0;
        foreach (var split in splitPoints.Append(bytes.Length))
        {
            parser.Feed(bytes.AsSpan(start, split - start), events);
            start = split;
        }

        parser.Complete(events);
        return events;
    }

    /// <summary>A comparable summary of an event.</summary>
    public static string Describe(SseEvent e) =>
        $"{(e.IsComment ? "comment" : "event")}|{e.EventType}|{e.LastEventId}|{e.RetryMs}|{e.DataText}";

    public static List<string> Describe(IEnumerable<SseEvent> events) => events.Select(Describe).ToList();
}
