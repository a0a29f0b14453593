using Sluice.Gateway.Accounting;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Calls;

/// <summary>
/// The customisable middle of the <see cref="CallPipeline"/>: what a kind of call adds to the fixed steps
/// (a session turn loads its history and stores its reply; a job call checks its job and records the call).
/// </summary>
/// <remarks>
/// The pipeline calls, in order: <see cref="PrepareAsync"/> after parsing and before the model is resolved;
/// <see cref="CommitAsync"/> once admitted, before the model runs; <see cref="SettleAsync"/> exactly once when
/// the outcome is known — before the stream's terminal frame, so a client that reads right after the stream sees
/// it, and also for calls refused after <see cref="CommitAsync"/> or abandoned. A stage holds per-call state: one
/// instance per call.
/// </remarks>
internal abstract class CallStage
{
    /// <summary>Reads what the call needs and changes the request (a copy made with <c>with</c>).</summary>
    public virtual ValueTask PrepareAsync(ChatCall call, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Writes what must exist before the model runs (a new session, the user's message).</summary>
    public virtual ValueTask CommitAsync(ChatCall call, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Records the outcome (never throws into the relay: failures are the stage's to log).</summary>
    public virtual ValueTask SettleAsync(ChatCall call, UsageStatus status, ChatUsage usage) => ValueTask.CompletedTask;
}
