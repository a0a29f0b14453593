namespace Sluice.Storage;

/// <summary>Where a job is in its life.</summary>
public enum JobStatus
{
    /// <summary>Created; calls may be recorded.</summary>
    Created,

    /// <summary>Finished successfully.</summary>
    Completed,

    /// <summary>Finished unsuccessfully; never charged.</summary>
    Failed,
}

/// <summary>What happened to a job's credit.</summary>
public enum JobCharge
{
    /// <summary>The job is still open.</summary>
    Pending,

    /// <summary>One credit was deducted (exactly one ledger row references the job).</summary>
    Charged,

    /// <summary>Not billable: the job failed or one of its calls failed.</summary>
    NotBillable,

    /// <summary>
    /// Billable, but the team's balance had reached zero by the time the job completed (other jobs used the last
    /// credits meanwhile). Balances never go negative, so the job stays uncharged.
    /// </summary>
    InsufficientCredits,
}

/// <summary>How a call within a job, or a gateway request, ended.</summary>
public enum CallStatus
{
    /// <summary>The answer was delivered completely.</summary>
    Completed,

    /// <summary>The backend or gateway failed.</summary>
    Failed,

    /// <summary>The client went away before the end.</summary>
    Abandoned,
}

/// <summary>A job: a unit of billable work made of one or more model calls.</summary>
public sealed record Job
{
    /// <summary>Stable id, <c>job_…</c> (time-ordered).</summary>
    public required string Id { get; init; }

    /// <summary>The owning team.</summary>
    public required string TeamId { get; init; }

    /// <summary>The key that created it, if known.</summary>
    public string? KeyId { get; init; }

    /// <summary>Where the job is.</summary>
    public required JobStatus Status { get; init; }

    /// <summary>What happened to its credit.</summary>
    public required JobCharge Charge { get; init; }

    /// <summary>Calls recorded.</summary>
    public required long CallCount { get; init; }

    /// <summary>Calls recorded with <see cref="CallStatus.Failed"/>.</summary>
    public required long FailedCalls { get; init; }

    /// <summary>Why it failed, for failed jobs.</summary>
    public string? Error { get; init; }

    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>When it was completed or failed.</summary>
    public DateTimeOffset? CompletedAt { get; init; }

    /// <summary>The calls, in order; filled by <see cref="IJobStore.GetJobAsync"/>, empty in listings.</summary>
    public IReadOnlyList<JobCall> Calls { get; init; } = [];
}

/// <summary>One model call recorded within a job.</summary>
/// <param name="Id">Increasing id.</param>
/// <param name="JobId">The job.</param>
/// <param name="Model">The model called.</param>
/// <param name="PromptTokens">Prompt tokens.</param>
/// <param name="CompletionTokens">Completion tokens.</param>
/// <param name="Status">How it ended.</param>
/// <param name="Latency">How long it took.</param>
/// <param name="CreatedAt">When it was recorded.</param>
public sealed record JobCall(
    long Id,
    string JobId,
    string Model,
    long PromptTokens,
    long CompletionTokens,
    CallStatus Status,
    TimeSpan Latency,
    DateTimeOffset CreatedAt);

/// <summary>A call to record in a job.</summary>
/// <param name="Model">The model called.</param>
/// <param name="PromptTokens">Prompt tokens.</param>
/// <param name="CompletionTokens">Completion tokens.</param>
/// <param name="Status">How it ended; a failed call makes the job not billable.</param>
/// <param name="Latency">How long it took.</param>
public sealed record NewJobCall(string Model, long PromptTokens, long CompletionTokens, CallStatus Status, TimeSpan Latency);

/// <summary>What <see cref="IJobStore.CompleteJobAsync"/> did.</summary>
/// <param name="Job">The job as stored afterwards.</param>
/// <param name="AlreadyFinished">
/// True when the job had already been completed or failed: nothing changed (completing is idempotent) and
/// <see cref="Job"/> shows the first outcome.
/// </param>
/// <param name="BalanceAfter">The team's balance after this call.</param>
public sealed record JobCompletion(Job Job, bool AlreadyFinished, long BalanceAfter)
{
    /// <summary>True when this very call deducted the job's credit.</summary>
    public bool ChargedNow => !AlreadyFinished && Job.Charge == JobCharge.Charged;
}
