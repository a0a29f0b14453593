using System.Text;

namespace Sluice.Protocol.Sse;

/// <summary>One dispatched Server-Sent Event, or a comment line when the reader is asked to surface them.</summary>
public sealed class SseEvent
{
    /// <summary>Creates an event.</summary>
    public SseEvent(string? eventType, ReadOnlyMemory<byte> data, string? lastEventId, int? retryMs, bool isComment = false)
    {
        EventType = eventType;
        Data = data;
        LastEventId = lastEventId;
        RetryMs = retryMs;
        IsComment = isComment;
    }

    /// <summary>The <c>event:</c> field, or null for the default <c>message</c> type.</summary>
    public string? EventType { get; }

    /// <summary>The <c>data:</c> lines joined with <c>\n</c>, as UTF-8. For a comment: its text.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>The last event id in force when the event was dispatched.</summary>
    public string? LastEventId { get; }

    /// <summary>A <c>retry:</c> value seen in this event, in milliseconds.</summary>
    public int? RetryMs { get; }

    /// <summary>True when this is a comment line (e.g. <c>: ping</c>), not an event.</summary>
    public bool IsComment { get; }

    /// <summary>The data decoded as UTF-8.</summary>
    public string DataText => Encoding.UTF8.GetString(Data.Span);

    /// <summary>True for the OpenAI end-of-stream sentinel <c>data: [DONE]</c>.</summary>
    public bool IsDone => !IsComment && Data.Span.SequenceEqual("[DONE]"u8);
}
