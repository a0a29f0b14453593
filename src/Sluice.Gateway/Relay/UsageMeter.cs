using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Relay;

/// <summary>
/// Counts what one answer delivered — tokens (the backend's usage when it reports one, else an estimate from the
/// text), time to first token, the finish reason and the outcome — and makes the call's one usage record.
/// </summary>
/// <remarks>
/// Passed-through OpenAI chunks are counted without being parsed: an undecoded chunk is a plain content delta,
/// assumed to carry about one token (the upstream's own usage, which it always sends at the end, replaces the
/// estimate). Times come from the injected <see cref="TimeProvider"/>, so tests can step them.
/// </remarks>
internal sealed class UsageMeter(TimeProvider time, long startTimestamp, ChatRequest request)
{
    private ChatUsage? _reported;
    private int _estimatedCompletion;
    private long _firstTokenTimestamp;
    private string? _errorCode;

    /// <summary>How the call ended (completed until told otherwise).</summary>
    public UsageStatus Status { get; private set; } = UsageStatus.Completed;

    /// <summary>Whether a finish event was seen (choice 0 or any).</summary>
    public bool Finished { get; private set; }

    /// <summary>The last finish reason seen, for formats that report it.</summary>
    public string? FinishReason { get; private set; }

    public bool HasFirstToken => _firstTokenTimestamp != 0;

    /// <summary>The usage so far: the backend's report, or estimates (with the prompt count the backend gave at the start, if any).</summary>
    public ChatUsage Usage => _reported ?? (Start?.Usage is { } started
        ? new ChatUsage(started.PromptTokens, Math.Max(started.CompletionTokens, _estimatedCompletion)) { Details = started.Details }
        : new ChatUsage(request.PromptTokenEstimate ?? TokenCounter.CountPrompt(request.Messages), _estimatedCompletion));

    /// <summary>What the backend said about the answer before its content (its message id, prompt count), if it did.</summary>
    public AnswerStartEvent? Start { get; private set; }

    /// <summary>Whether <see cref="Usage"/> is the backend's own count.</summary>
    public bool IsReported => _reported is not null;

    public void Observe(ChatStreamEvent streamEvent)
    {
        switch (streamEvent)
        {
            case OpenAIChunkBatch batch:
                if (batch.HasUndecoded)
                {
                    MarkFirstToken();
                    _estimatedCompletion += batch.EstimatedTokens;
                }

                for (var i = 0; i < batch.Count; i++)
                {
                    if (batch.EventsAt(i) is { } decoded)
                    {
                        foreach (var inner in decoded)
                        {
                            Observe(inner);
                        }
                    }
                }

                break;
            case OpenAIChunkEvent { IsDecoded: false } plain:
                MarkFirstToken();
                _estimatedCompletion += plain.EstimatedTokens;
                break;
            case OpenAIChunkEvent chunk:
                foreach (var inner in chunk.Events)
                {
                    Observe(inner);
                }

                break;
            case ResponsesEvent responses:
                foreach (var inner in responses.Events)
                {
                    Observe(inner);
                }

                break;
            case AnthropicBlockEvent block:
                // Thinking reaches an Anthropic client as it is written: its first delta is the answer's first token.
                if (block.Type == "content_block_delta")
                {
                    MarkFirstToken();
                }

                foreach (var inner in block.Events)
                {
                    Observe(inner);
                }

                break;
            case TextDeltaEvent text:
                MarkFirstToken();
                _estimatedCompletion += TokenCounter.Count(text.Text);
                break;
            case RefusalDeltaEvent refusal:
                MarkFirstToken();
                _estimatedCompletion += TokenCounter.Count(refusal.Text);
                break;
            case ToolCallDeltaEvent tool:
                MarkFirstToken();
                _estimatedCompletion += TokenCounter.Count(tool.Name) + TokenCounter.Count(tool.ArgumentsFragment);
                break;
            case FinishEvent finish:
                Finished = true;
                FinishReason = finish.ChoiceIndex == 0 || FinishReason is null ? finish.Reason : FinishReason;
                break;
            case UsageEvent reported:
                _reported = reported.Usage;
                break;
            case AnswerStartEvent start:
                Start = start;
                break;
        }
    }

    /// <summary>The call completed.</summary>
    public void Complete() => Status = UsageStatus.Completed;

    /// <summary>The client left, or the generation was cancelled.</summary>
    public void Abandon() => Status = UsageStatus.Abandoned;

    /// <summary>The call failed with <paramref name="code"/>.</summary>
    public void Fail(string code)
    {
        Status = UsageStatus.Failed;
        _errorCode = code;
    }

    /// <summary>The call's usage record.</summary>
    public UsageRecord ToRecord(ChatCall call)
    {
        var usage = Usage;
        return new UsageRecord
        {
            RequestId = call.RequestId,
            TeamId = call.Owner?.TeamId,
            KeyId = call.Owner?.KeyId,
            JobId = call.Owner?.JobId,
            Model = call.Request.Model,
            Stream = call.Request.Stream,
            PromptTokens = usage.PromptTokens,
            CompletionTokens = usage.CompletionTokens,
            Estimated = _reported is null,
            Status = Status,
            TimeToFirstToken = _firstTokenTimestamp == 0 ? null : time.GetElapsedTime(startTimestamp, _firstTokenTimestamp),
            Duration = time.GetElapsedTime(startTimestamp),
            ErrorCode = _errorCode,
        };
    }

    private void MarkFirstToken()
    {
        if (_firstTokenTimestamp == 0)
        {
            _firstTokenTimestamp = time.GetTimestamp();
        }
    }
}
