namespace Sluice.Protocol.Events;

/// <summary>
/// One content-block event of an Anthropic upstream's stream (<c>content_block_start</c>, <c>content_block_delta</c>,
/// <c>content_block_stop</c>), kept as its exact JSON so an Anthropic client of Sluice gets it byte for byte — thinking
/// and its signature, redacted thinking, citations and server-tool blocks included, which the common event model does
/// not carry — together with the answer events decoded from it for accounting and for consumers that write another
/// format.
/// </summary>
/// <remarks>
/// Only consumers that ask for them (<c>ChatCallOptions.AcceptsAnthropicBlocks</c>) receive these; the message around
/// the blocks (<c>message_start</c>, <c>message_delta</c>, <c>message_stop</c>) is written by Sluice from the
/// upstream's facts, as for any backend.
/// </remarks>
public sealed class AnthropicBlockEvent : ChatStreamEvent
{
    /// <summary>Creates the event.</summary>
    /// <param name="type">The event's <c>type</c> (also its SSE <c>event:</c> name).</param>
    /// <param name="index">The content block's <c>index</c>.</param>
    /// <param name="json">The event's JSON, exactly as received.</param>
    /// <param name="events">What it means as answer events (text and tool-call deltas); may be empty (thinking).</param>
    public AnthropicBlockEvent(string type, int index, ReadOnlyMemory<byte> json, IReadOnlyList<ChatStreamEvent> events)
        : base(0)
    {
        Type = type ?? throw new ArgumentNullException(nameof(type));
        Index = index;
        Json = json;
        Events = events ?? throw new ArgumentNullException(nameof(events));
    }

    /// <summary>The event's <c>type</c>.</summary>
    public string Type { get; }

    /// <summary>The content block's <c>index</c> in the upstream's message.</summary>
    public int Index { get; }

    /// <summary>The upstream event's JSON bytes, unchanged.</summary>
    public ReadOnlyMemory<byte> Json { get; }

    /// <summary>The answer events it carries, in order; never nested.</summary>
    public IReadOnlyList<ChatStreamEvent> Events { get; }
}
