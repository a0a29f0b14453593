using System.Globalization;
using Microsoft.Extensions.AI;
using Sluice.Client;
using Sluice.Client.Jobs;

namespace Sluice.Samples;

/// <summary>
/// Where an example's calls go. With a team's virtual key (<c>sk-sluice-…</c>, printed by <c>init</c>) it follows the
/// SaaS flow: a job is created, every call streams within it, and <see cref="CompleteAsync"/> completes it and prints
/// the team's credits remaining. Without one (open local mode) the calls go straight to <c>/v1</c>.
/// </summary>
public sealed class SampleSession : IAsyncDisposable
{
    private readonly SampleContext _context;
    private readonly SluiceJobsClient? _jobs;
    private readonly IChatClient _chat;
    private bool _completed;

    private SampleSession(SampleContext context, IChatClient chat, SluiceJobsClient? jobs, string? jobId)
    {
        _context = context;
        _chat = chat;
        _jobs = jobs;
        JobId = jobId;
    }

    /// <summary>The client to call.</summary>
    public IChatClient Chat => _chat;

    /// <summary>The job the calls belong to; null outside the SaaS flow.</summary>
    public string? JobId { get; }

    /// <summary>The team's credits after <see cref="CompleteAsync"/>; null outside the SaaS flow.</summary>
    public long? CreditsRemaining { get; private set; }

    /// <summary>Opens a session: creates a job of <paramref name="jobType"/> when the context's key is a team's virtual key.</summary>
    public static async Task<SampleSession> StartAsync(
        SampleContext context, string jobType, Action<SluiceClientOptions>? configure = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!context.UsesJobs)
        {
            return new SampleSession(context, context.CreateClient(configure), jobs: null, jobId: null);
        }

        var jobs = new SluiceJobsClient(context.ClientOptions(configure));
        try
        {
            var job = await jobs.CreateJobAsync(new CreateJobRequest { JobType = jobType }, cancellationToken);
            await context.Output.WriteLineAsync($"[job {job.JobId}] created ({jobType})");
            return new SampleSession(context, jobs.AsChatClient(job.JobId), jobs, job.JobId);
        }
        catch
        {
            jobs.Dispose();
            throw;
        }
    }

    /// <summary>Completes the job (one credit is charged for a job whose calls all succeeded) and prints the credits left.</summary>
    public async Task CompleteAsync(CancellationToken cancellationToken = default)
    {
        _completed = true;
        if (_jobs is null || JobId is null)
        {
            return;
        }

        var completion = await _jobs.CompleteJobAsync(JobId, JobOutcome.Completed, cancellationToken: cancellationToken);
        CreditsRemaining = completion.CreditsRemaining;
        await _context.Output.WriteLineAsync(string.Create(
            CultureInfo.InvariantCulture,
            $"[job {JobId}] completed — credits remaining: {completion.CreditsRemaining?.ToString(CultureInfo.InvariantCulture) ?? "?"}"));
    }

    /// <summary>A job left without <see cref="CompleteAsync"/> (an exception) is completed as failed: recorded, not charged.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_completed && _jobs is not null && JobId is not null)
            {
                try
                {
                    await _jobs.CompleteJobAsync(JobId, JobOutcome.Failed, "the example stopped before the end");
                    await _context.Output.WriteLineAsync($"[job {JobId}] marked failed (not charged)");
                }
                catch (SluiceException)
                {
                    // The original failure matters more than the bookkeeping.
                }
            }
        }
        finally
        {
            _chat.Dispose();
            _jobs?.Dispose();
        }
    }
}
