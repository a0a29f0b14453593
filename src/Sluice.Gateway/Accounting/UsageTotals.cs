namespace Sluice.Gateway.Accounting;

/// <summary>
/// The default <see cref="IUsageSink"/>: lock-free running totals, shown by <c>/health</c>. Later work adds a
/// persistent ledger behind the same hook.
/// </summary>
public sealed class UsageTotals : IUsageSink
{
    private long _requests;
    private long _completed;
    private long _failed;
    private long _abandoned;
    private long _promptTokens;
    private long _completionTokens;

    /// <summary>Requests recorded.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Requests that completed.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Requests that failed.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Requests the client abandoned.</summary>
    public long Abandoned => Interlocked.Read(ref _abandoned);

    /// <summary>Prompt tokens recorded.</summary>
    public long PromptTokens => Interlocked.Read(ref _promptTokens);

    /// <summary>Completion tokens recorded.</summary>
    public long CompletionTokens => Interlocked.Read(ref _completionTokens);

    /// <inheritdoc />
    public void Record(UsageRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        Interlocked.Increment(ref _requests);
        switch (record.Status)
        {
            case UsageStatus.Completed:
                Interlocked.Increment(ref _completed);
                break;
            case UsageStatus.Failed:
                Interlocked.Increment(ref _failed);
                break;
            default:
                Interlocked.Increment(ref _abandoned);
                break;
        }

        Interlocked.Add(ref _promptTokens, record.PromptTokens);
        Interlocked.Add(ref _completionTokens, record.CompletionTokens);
    }
}
