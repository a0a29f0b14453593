namespace Sluice.Protocol.Events;

/// <summary>
/// What a backend said about its answer before the content: its own message id, the prompt count it measured and the
/// service tier — Anthropic's <c>message_start</c>. Carries no text; writers that open a message with these facts
/// (Anthropic's <c>message_start</c>) use them instead of Sluice's own id and estimate.
/// </summary>
/// <remarks>
/// Backends emit it together with the first event of the answer (never alone), so a failure reported right after the
/// upstream's opening still reaches the client before anything was sent, with a real HTTP status.
/// </remarks>
public sealed class AnswerStartEvent : ChatStreamEvent
{
    /// <summary>Creates the event.</summary>
    /// <param name="messageId">The upstream's message id (e.g. <c>msg_…</c>), if it sent one.</param>
    /// <param name="usage">The usage reported at the start: the prompt count (with cache details) and the completion so far.</param>
    public AnswerStartEvent(string? messageId, ChatUsage? usage)
        : base(0)
    {
        MessageId = messageId;
        Usage = usage;
    }

    /// <summary>The upstream's message id, if any.</summary>
    public string? MessageId { get; }

    /// <summary>The usage known at the start, if the backend reported it.</summary>
    public ChatUsage? Usage { get; }

    /// <summary>The service tier that serves the request (Anthropic <c>usage.service_tier</c>), if reported.</summary>
    public string? ServiceTier { get; init; }
}
