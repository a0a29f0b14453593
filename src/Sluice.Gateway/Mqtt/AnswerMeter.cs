using System.Diagnostics;
using Sluice.Gateway.Accounting;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Mqtt;

/// <summary>
/// Counts what one MQTT answer used, the way the HTTP relay does: the backend's usage when it reports one, otherwise
/// the prompt and the delivered text, counted with <see cref="TokenCounter"/>.
/// </summary>
internal sealed class AnswerMeter(long startTimestamp, ChatRequest request)
{
    private ChatUsage? _reported;
    private int _estimatedCompletion;
    private long _firstTokenTimestamp;
    private string? _errorCode;

    public UsageStatus Status { get; set; } = UsageStatus.Completed;

    public string? FinishReason { get; private set; }

    public ChatUsage Usage => _reported ?? new ChatUsage(TokenCounter.CountPrompt(request.Messages), _estimatedCompletion);

    public void Observe(ChatStreamEvent streamEvent)
    {
        switch (streamEvent)
        {
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
                FinishReason = finish.Reason;
                break;
            case UsageEvent reported:
                _reported = reported.Usage;
                break;
        }
    }

    public void Fail(string code)
    {
        Status = UsageStatus.Failed;
        _errorCode = code;
    }

    public UsageRecord ToRecord(string requestId, ChatRequest chatRequest, bool stream)
    {
        var usage = Usage;
        return new UsageRecord
        {
            RequestId = requestId,
            Model = chatRequest.Model,
            Stream = stream,
            PromptTokens = usage.PromptTokens,
            CompletionTokens = usage.CompletionTokens,
            Estimated = _reported is null,
            Status = Status,
            TimeToFirstToken = _firstTokenTimestamp == 0 ? null : Stopwatch.GetElapsedTime(startTimestamp, _firstTokenTimestamp),
            Duration = Stopwatch.GetElapsedTime(startTimestamp),
            ErrorCode = _errorCode,
        };
    }

    private void MarkFirstToken()
    {
        if (_firstTokenTimestamp == 0)
        {
            _firstTokenTimestamp = Stopwatch.GetTimestamp();
        }
    }
}
