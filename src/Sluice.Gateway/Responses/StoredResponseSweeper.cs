using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Tenancy;

namespace Sluice.Gateway.Responses;

/// <summary>
/// Deletes stored responses older than <c>Responses:StoreDays</c>, every team's, a minute after start and then every
/// <see cref="Interval"/>. The count bound is kept at stores (<see cref="StoredResponseRetention"/>); age needs a sweep
/// because a team that stops storing never reaches another store. Several gateway processes on one database each
/// sweep: the deletes are idempotent.
/// </summary>
internal sealed partial class StoredResponseSweeper(
    StoredResponseRetention retention, TenancyRuntime tenancy, TimeProvider time, ILogger<StoredResponseSweeper> logger) : BackgroundService
{
    /// <summary>Time between two sweeps: a response outlives its retention by at most this.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromHours(1);

    // Not at once: the store opens and the first calls arrive at start; nothing expires in a minute's difference.
    private static readonly TimeSpan FirstAfter = TimeSpan.FromMinutes(1);

    private readonly DateTimeOffset _created = time.GetUtcNow();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (retention.KeepFor is not { } keepFor)
        {
            return;
        }

        try
        {
            // Each sweep is due at a time, not after a delay: the schedule does not drift by the sweeps' own length,
            // and a clock that moved on before the wait began (a test's clock) still finds the sweep due.
            var due = _created + FirstAfter;
            while (true)
            {
                if (due - time.GetUtcNow() is { Ticks: > 0 } wait)
                {
                    await Task.Delay(wait, time, stoppingToken);
                }

                await SweepAsync(keepFor, stoppingToken);
                // After a long pause (a suspended machine) the next sweep is an interval away, not one per missed hour.
                var now = time.GetUtcNow();
                due = now - due >= Interval ? now + Interval : due + Interval;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    private async Task SweepAsync(TimeSpan keepFor, CancellationToken cancellationToken)
    {
        try
        {
            var deleted = await tenancy.Store.DeleteExpiredResponsesAsync(time.GetUtcNow() - keepFor, cancellationToken);
            if (deleted > 0)
            {
                LogSwept(logger, deleted, keepFor.TotalDays);
            }
        }
#pragma warning disable CA1031 // A failed sweep (the database unreachable a while) is retried at the next; the gateway goes on.
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
#pragma warning restore CA1031
        {
            LogSweepFailed(logger, ex, Interval.TotalMinutes);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted {Count} stored response(s) older than {Days} days (Responses:StoreDays)")]
    private static partial void LogSwept(ILogger logger, int count, double days);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Deleting expired stored responses failed; retrying in {Minutes} minutes. Check that the store is reachable")]
    private static partial void LogSweepFailed(ILogger logger, Exception ex, double minutes);
}
