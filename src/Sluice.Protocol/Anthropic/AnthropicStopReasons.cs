using Sluice.Protocol.Events;

namespace Sluice.Protocol.Anthropic;

/// <summary>Anthropic's <c>stop_reason</c> values and their mapping to and from OpenAI's <c>finish_reason</c>.</summary>
public static class AnthropicStopReasons
{
    /// <summary>The model finished its turn.</summary>
    public const string EndTurn = "end_turn";

    /// <summary>The <c>max_tokens</c> limit was reached.</summary>
    public const string MaxTokens = "max_tokens";

    /// <summary>One of the request's <c>stop_sequences</c> was produced (named in <c>stop_sequence</c>).</summary>
    public const string StopSequence = "stop_sequence";

    /// <summary>The model called tools.</summary>
    public const string ToolUse = "tool_use";

    /// <summary>The model declined to answer.</summary>
    public const string Refusal = "refusal";

    /// <summary>The <c>stop_reason</c> for an OpenAI <paramref name="finishReason"/>.</summary>
    /// <param name="finishReason">The finish reason, or null when the stream reported none.</param>
    /// <param name="stopSequence">The stop sequence that ended the answer, when the backend knows it.</param>
    public static string FromFinishReason(string? finishReason, string? stopSequence = null) => finishReason switch
    {
        FinishReasons.Length => MaxTokens,
        FinishReasons.ToolCalls => ToolUse,
        FinishReasons.ContentFilter => Refusal,
        _ when stopSequence is not null => StopSequence,
        _ => EndTurn,
    };

    /// <summary>The OpenAI <c>finish_reason</c> for an Anthropic <paramref name="stopReason"/>.</summary>
    public static string ToFinishReason(string? stopReason) => stopReason switch
    {
        MaxTokens or "model_context_window_exceeded" => FinishReasons.Length,
        ToolUse => FinishReasons.ToolCalls,
        Refusal => FinishReasons.ContentFilter,
        _ => FinishReasons.Stop,
    };
}
