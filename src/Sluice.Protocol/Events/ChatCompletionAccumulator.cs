using System.Text;
using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Events;

/// <summary>
/// Assembles a stream of <see cref="ChatStreamEvent"/>s into whole answers: text, tool calls (joined by
/// index), finish reasons and usage. Used for non-streaming responses and by clients.
/// </summary>
public sealed class ChatCompletionAccumulator
{
    private readonly SortedDictionary<int, ChoiceState> _choices = [];
    private List<AnthropicBlockEvent>? _anthropicBlocks;

    /// <summary>The usage reported by the stream, if any.</summary>
    public ChatUsage? Usage { get; private set; }

    /// <summary>The error reported by the stream, if any.</summary>
    public ErrorInfo? Error { get; private set; }

    /// <summary>What the backend said before its content (its message id, prompt count, service tier), if it did.</summary>
    public AnswerStartEvent? Start { get; private set; }

    /// <summary>An Anthropic upstream's content-block events passed through, in order (empty for every other backend).</summary>
    public IReadOnlyList<AnthropicBlockEvent> AnthropicBlocks => _anthropicBlocks ?? (IReadOnlyList<AnthropicBlockEvent>)[];

    /// <summary>The answer of an embeddings call, if this was one.</summary>
    public Embeddings.EmbeddingResult? Embeddings { get; private set; }

    /// <summary>The assembled choices, by index.</summary>
    public IEnumerable<AssembledChoice> Choices =>
        _choices.Select(pair => pair.Value.ToChoice(pair.Key));

    /// <summary>Adds one event.</summary>
    public void Add(ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        switch (streamEvent)
        {
            case OpenAIChunkEvent chunk:
                foreach (var inner in chunk.Events)
                {
                    Add(inner);
                }

                break;
            case ResponsesEvent responses:
                foreach (var inner in responses.Events)
                {
                    Add(inner);
                }

                break;
            case AnthropicBlockEvent block:
                (_anthropicBlocks ??= []).Add(block);
                foreach (var inner in block.Events)
                {
                    Add(inner);
                }

                break;
            case TextDeltaEvent text:
                var choice = GetChoice(text.ChoiceIndex);
                choice.Text.Append(text.Text);
                if (text.Logprobs is { Count: > 0 } logprobs)
                {
                    choice.Logprobs.AddRange(logprobs);
                }

                break;
            case RefusalDeltaEvent refusal:
                GetChoice(refusal.ChoiceIndex).Refusal.Append(refusal.Text);
                break;
            case ToolCallDeltaEvent tool:
                GetChoice(tool.ChoiceIndex).AddTool(tool);
                break;
            case FinishEvent finish:
                var finished = GetChoice(finish.ChoiceIndex);
                finished.FinishReason = finish.Reason;
                finished.StopSequence = finish.StopSequence;
                finished.StopDetailsJson = finish.StopDetailsJson;
                finished.AnthropicStopReason = finish.AnthropicStopReason;
                break;
            case AnswerStartEvent start:
                Start = start;
                break;
            case EmbeddingResultEvent embeddings:
                Embeddings = embeddings.Result;
                break;
            case UsageEvent usage:
                Usage = usage.Usage;
                break;
            case ErrorEvent error:
                Error = error.Error;
                break;
        }
    }

    private ChoiceState GetChoice(int index)
    {
        if (!_choices.TryGetValue(index, out var state))
        {
            state = new ChoiceState();
            _choices[index] = state;
        }

        return state;
    }

    private sealed class ChoiceState
    {
        private readonly SortedDictionary<int, (string? Id, string? Name, StringBuilder Arguments)> _tools = [];

        public StringBuilder Text { get; } = new();

        public StringBuilder Refusal { get; } = new();

        public List<TokenLogprob> Logprobs { get; } = [];

        public string? FinishReason { get; set; }

        public string? StopSequence { get; set; }

        public string? StopDetailsJson { get; set; }

        public string? AnthropicStopReason { get; set; }

        public void AddTool(ToolCallDeltaEvent tool)
        {
            if (!_tools.TryGetValue(tool.ToolIndex, out var state))
            {
                state = (null, null, new StringBuilder());
            }

            state = (tool.Id ?? state.Id, tool.Name ?? state.Name, state.Arguments.Append(tool.ArgumentsFragment));
            _tools[tool.ToolIndex] = state;
        }

        public AssembledChoice ToChoice(int index) => new(
            index,
            Text.Length == 0 && (_tools.Count > 0 || Refusal.Length > 0) ? null : Text.ToString(),
            _tools.Count == 0
                ? []
                : _tools.Values.Select(t => new ToolCall(t.Id ?? string.Empty, t.Name ?? string.Empty, t.Arguments.ToString())).ToList(),
            FinishReason)
        {
            Refusal = Refusal.Length == 0 ? null : Refusal.ToString(),
            StopSequence = StopSequence,
            StopDetailsJson = StopDetailsJson,
            AnthropicStopReason = AnthropicStopReason,
            Logprobs = Logprobs.Count == 0 ? null : [.. Logprobs],
        };
    }
}

/// <summary>One assembled answer.</summary>
/// <param name="Index">Choice index.</param>
/// <param name="Content">The text, or null when the answer only calls tools.</param>
/// <param name="ToolCalls">Tool calls, in index order.</param>
/// <param name="FinishReason">Why it ended, if it did.</param>
public sealed record AssembledChoice(int Index, string? Content, IReadOnlyList<ToolCall> ToolCalls, string? FinishReason)
{
    /// <summary>The refusal text, when the model declined instead of answering.</summary>
    public string? Refusal { get; init; }

    /// <summary>The stop sequence that ended the answer, when the backend reported one.</summary>
    public string? StopSequence { get; init; }

    /// <summary>The backend's <c>stop_details</c> object (raw JSON), when it sent one.</summary>
    public string? StopDetailsJson { get; init; }

    /// <summary>The backend's own Anthropic <c>stop_reason</c>, when it is an Anthropic model (see <see cref="FinishEvent.AnthropicStopReason"/>).</summary>
    public string? AnthropicStopReason { get; init; }

    /// <summary>The log probabilities of the answer's tokens, when the backend sent them.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
}
