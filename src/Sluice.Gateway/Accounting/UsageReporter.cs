using Microsoft.Extensions.Logging;

namespace Sluice.Gateway.Accounting;

/// <summary>Fans a usage record out to every registered <see cref="IUsageSink"/>; a failing sink never fails a request.</summary>
internal sealed partial class UsageReporter(IEnumerable<IUsageSink> sinks, ILogger<UsageReporter> logger)
{
    private readonly IUsageSink[] _sinks = [.. sinks];

    public void Report(UsageRecord record)
    {
        foreach (var sink in _sinks)
        {
            try
            {
                sink.Record(record);
            }
#pragma warning disable CA1031 // Accounting must not break the response path; the failure is logged.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogSinkFailed(logger, ex, sink.GetType().Name, record.RequestId);
            }
        }

        LogUsage(logger, record.RequestId, record.Model, record.Status, record.PromptTokens, record.CompletionTokens, record.Duration.TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Usage sink {Sink} failed for request {RequestId}")]
    private static partial void LogSinkFailed(ILogger logger, Exception ex, string sink, string requestId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Usage {RequestId} {Model} {Status}: {PromptTokens}+{CompletionTokens} tokens in {DurationMs:F1} ms")]
    private static partial void LogUsage(ILogger logger, string requestId, string model, UsageStatus status, int promptTokens, int completionTokens, double durationMs);
}
