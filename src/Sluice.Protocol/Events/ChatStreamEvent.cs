namespace Sluice.Protocol.Events;

/// <summary>
/// One event of a model's answer stream. Every backend produces these and every writer
/// (OpenAI SSE, portal SSE, WebSocket, …) consumes them, so no wire format is written twice.
/// </summary>
public abstract class ChatStreamEvent
{
    private protected ChatStreamEvent(int choiceIndex) => ChoiceIndex = choiceIndex;

    /// <summary>The choice this event belongs to (0 unless the request asked for several).</summary>
    public int ChoiceIndex { get; }
}

/// <summary>A piece of answer text.</summary>
public sealed class TextDeltaEvent(string text, int choiceIndex = 0) : ChatStreamEvent(choiceIndex)
{
    /// <summary>The text fragment; may be empty.</summary>
    public string Text { get; } = text;

    /// <summary>The log probabilities of the tokens in <see cref="Text"/>, when the request asked for them (<c>logprobs</c>).</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
}

/// <summary>One output token's log probability, and the most likely alternatives at its position.</summary>
/// <param name="Token">The token text.</param>
/// <param name="Logprob">Its natural-log probability (≤ 0).</param>
/// <param name="TopLogprobs">The most likely tokens at this position, most likely first (empty unless asked for).</param>
public sealed record TokenLogprob(string Token, double Logprob, IReadOnlyList<TopLogprob> TopLogprobs);

/// <summary>An alternative token at one position.</summary>
/// <param name="Token">The token text.</param>
/// <param name="Logprob">Its natural-log probability (≤ 0).</param>
public sealed record TopLogprob(string Token, double Logprob);

/// <summary>A piece of a refusal: the model declined, and says so in this text instead of the answer.</summary>
public sealed class RefusalDeltaEvent(string text, int choiceIndex = 0) : ChatStreamEvent(choiceIndex)
{
    /// <summary>The refusal text fragment.</summary>
    public string Text { get; } = text;
}

/// <summary>
/// A fragment of a tool call. The first fragment of a call carries <see cref="Id"/> and <see cref="Name"/>;
/// later fragments carry only <see cref="ToolIndex"/> and a piece of the JSON arguments.
/// </summary>
public sealed class ToolCallDeltaEvent(int toolIndex, string? id, string? name, string? argumentsFragment, int choiceIndex = 0)
    : ChatStreamEvent(choiceIndex)
{
    /// <summary>Position of the call among the calls of this answer (parallel calls use 0, 1, …).</summary>
    public int ToolIndex { get; } = toolIndex;

    /// <summary>The call id, on the first fragment only.</summary>
    public string? Id { get; } = id;

    /// <summary>The function name, on the first fragment only.</summary>
    public string? Name { get; } = name;

    /// <summary>A piece of the arguments JSON text.</summary>
    public string? ArgumentsFragment { get; } = argumentsFragment;
}

/// <summary>The end of one choice, with its reason (<c>stop</c>, <c>length</c>, <c>tool_calls</c>, <c>content_filter</c>).</summary>
public sealed class FinishEvent(string reason, int choiceIndex = 0) : ChatStreamEvent(choiceIndex)
{
    /// <summary>The OpenAI <c>finish_reason</c> value.</summary>
    public string Reason { get; } = reason;

    /// <summary>
    /// The stop sequence that ended the answer, when the backend knows one did (<see cref="Reason"/> is then
    /// <c>stop</c>); OpenAI has no field for it, Anthropic reports it as <c>stop_sequence</c>.
    /// </summary>
    public string? StopSequence { get; init; }

    /// <summary>
    /// Why the answer stopped, in more detail, as the backend's raw JSON object (Anthropic's <c>stop_details</c>, e.g.
    /// the category of a refusal); written by dialects that have the field, null when the backend sent none.
    /// </summary>
    public string? StopDetailsJson { get; init; }

    /// <summary>
    /// The backend's own Anthropic <c>stop_reason</c>, when the backend is an Anthropic model: Anthropic clients get it
    /// as it was (<c>pause_turn</c>, <c>model_context_window_exceeded</c> — which <see cref="Reason"/> can only
    /// approximate); null for every other backend.
    /// </summary>
    public string? AnthropicStopReason { get; init; }
}

/// <summary>Token usage of the whole request, as counted by the backend.</summary>
public sealed class UsageEvent(ChatUsage usage) : ChatStreamEvent(0)
{
    /// <summary>The counts.</summary>
    public ChatUsage Usage { get; } = usage;
}

/// <summary>A failure reported by the backend inside the stream; the stream ends after it.</summary>
public sealed class ErrorEvent(ErrorInfo error) : ChatStreamEvent(0)
{
    /// <summary>What went wrong, in OpenAI error terms.</summary>
    public ErrorInfo Error { get; } = error;
}

/// <summary>Finish reasons as OpenAI names them.</summary>
public static class FinishReasons
{
    /// <summary>Natural end or a stop sequence.</summary>
    public const string Stop = "stop";

    /// <summary>The output token limit was reached.</summary>
    public const string Length = "length";

    /// <summary>The model called tools.</summary>
    public const string ToolCalls = "tool_calls";

    /// <summary>Content was withheld by a filter.</summary>
    public const string ContentFilter = "content_filter";
}
