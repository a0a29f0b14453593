namespace Sluice.Protocol.Events;

/// <summary>
/// One event of an upstream's Responses API stream (<c>response.output_text.delta</c>, …), kept as its exact JSON so a
/// Responses client of Sluice gets it byte for byte, together with the answer events decoded from it for accounting
/// and for consumers that write another format.
/// </summary>
/// <remarks>Only consumers that ask for them (<c>ChatCallOptions.AcceptsResponsesEvents</c>) receive these.</remarks>
public sealed class ResponsesEvent : ChatStreamEvent
{
    /// <summary>Creates the event.</summary>
    /// <param name="type">The event's <c>type</c> (also its SSE <c>event:</c> name).</param>
    /// <param name="json">The event's JSON, exactly as received.</param>
    /// <param name="events">What it means as answer events (text, refusal, tool-call deltas, finish, usage); may be empty.</param>
    public ResponsesEvent(string type, ReadOnlyMemory<byte> json, IReadOnlyList<ChatStreamEvent> events)
        : base(0)
    {
        Type = type;
        Json = json;
        Events = events;
    }

    /// <summary>The event's <c>type</c>.</summary>
    public string Type { get; }

    /// <summary>The upstream event's JSON bytes, unchanged.</summary>
    public ReadOnlyMemory<byte> Json { get; }

    /// <summary>The answer events it carries, in order; never nested.</summary>
    public IReadOnlyList<ChatStreamEvent> Events { get; }
}
