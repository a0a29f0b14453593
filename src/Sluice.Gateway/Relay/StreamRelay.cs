using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Observability;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Relay;

/// <summary>
/// Moves one backend's answer to one <see cref="IAnswerSink"/> — the last, fixed stage of every chat call, whatever its
/// transport and dialect.
/// </summary>
/// <remarks>
/// The steps of <see cref="RunAsync"/> (marked <c>// :: Step N</c> in the code):
/// <list type="number">
/// <item>Open the backend's stream with per-call options (chunk batches only for a sink that writes them as they are).</item>
/// <item>Take the next event. If none is ready, first send what is written (no event ever waits in a buffer while the
/// relay waits for the model), then let the sink's keep-alive frames fill the silence until it comes.</item>
/// <item>Meter every event; an <see cref="ErrorEvent"/> ends the stream as a failure; usage events are not written.</item>
/// <item>Write the event and apply the <see cref="FlushPolicy"/> (first frame and first token at once, then when the
/// backend pauses or too much is pending).</item>
/// <item>At the end: settle the call (the stage's state, e.g. the job call or the session reply, is stored before the
/// terminal frame so a client reading right after sees it), free the call's concurrency slots (so its next call is not
/// refused by this one), then the format's closing frames.</item>
/// <item>On failure: classify it (<see cref="StreamOutcome"/>), settle, free the slots, then an error response before the first byte or
/// an error frame after it — never a silent cut. A cancelled generation is abandoned; a sink with a reader left (a
/// resumable stream) writes why.</item>
/// <item>Always: stop the sink (no keep-alive after the handler returns), dispose the backend's stream (which aborts an
/// upstream request still running) and report the usage once.</item>
/// </list>
/// </remarks>
internal sealed partial class StreamRelay(UsageReporter usage, CallTelemetry telemetry, TimeProvider time, ILogger<StreamRelay> logger, GatewayDrain drain)
{
    private static readonly ChatException ShuttingDown = new(503, GatewayDrain.ShuttingDown);

    /// <param name="call">The admitted call (request, model, owner set).</param>
    /// <param name="backend">What answers.</param>
    /// <param name="sink">Where the answer goes.</param>
    /// <param name="stage">The call's stage, settled once before the terminal frame.</param>
    /// <param name="maxPendingBytes">Flush early above this many unflushed bytes.</param>
    public async Task RunAsync(ChatCall call, IChatBackend backend, IAnswerSink sink, CallStage? stage, long maxPendingBytes)
    {
        // The generation also stops when a draining instance's grace is over (one linked source per call).
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(sink.Generation, drain.Deadline);
        var generation = stopping.Token;
        var meter = new UsageMeter(time, call.StartTimestamp, call.Request);
        var flush = new FlushPolicy(maxPendingBytes);
        var settled = false;
        ChatException? failure = null;
        Exception? backendFailure = null;
        long lastDelivery = 0;
        telemetry.RelayStarted(call);
        sink.Open(meter);

        IAsyncEnumerator<ChatStreamEvent>? events = null;
        drain.Enter();
        try
        {
            // :: Step 1
            var options = sink.AcceptsChunkBatches ? ChatCallOptions.ChunkBatches : ChatCallOptions.Default;
            if (call.AcceptsResponsesEvents)
            {
                options = options with { AcceptsResponsesEvents = true };
            }

            if (call.AcceptsAnthropicBlocks)
            {
                options = options with { AcceptsAnthropicBlocks = true };
            }

            events = backend.StreamAsync(call.Request, options, generation).GetAsyncEnumerator(generation);
            while (true)
            {
                // :: Step 2
                var moveNext = events.MoveNextAsync();
                bool hasEvent;
                if (moveNext.IsCompleted)
                {
                    hasEvent = await moveNext;
                }
                else
                {
                    if (FlushPolicy.BeforeWait(sink.Started, sink.PendingBytes))
                    {
                        await sink.FlushAsync();
                        lastDelivery = Delivered(call, meter, lastDelivery);
                    }

                    sink.Idle();
                    try
                    {
                        hasEvent = await moveNext;
                    }
                    finally
                    {
                        await sink.BusyAsync();
                    }
                }

                if (!hasEvent)
                {
                    break;
                }

                // :: Step 3
                var streamEvent = events.Current;
                if (streamEvent is ErrorEvent error)
                {
                    throw new ChatException(502, error.Error);
                }

                meter.Observe(streamEvent);
                if (streamEvent is UsageEvent)
                {
                    continue;
                }

                // :: Step 4
                bool wrote;
                if (streamEvent is OpenAIChunkBatch batch)
                {
                    using (batch)
                    {
                        wrote = await sink.WriteAsync(batch);
                    }
                }
                else
                {
                    wrote = await sink.WriteAsync(streamEvent);
                }

                if (flush.AfterWrite(wrote, meter.HasFirstToken, sink.PendingBytes))
                {
                    await sink.FlushAsync();
                    lastDelivery = Delivered(call, meter, lastDelivery);
                }
            }

            // :: Step 5
            meter.Complete();
            settled = true;
            await SettleAsync(call, stage, meter);

            // The generation is over: its concurrency slots are free before the client reads the end, so a client that
            // starts its next call on seeing it is not refused by its own finished one.
            await call.Lease.DisposeAsync();
            await sink.CompleteAsync(meter.Usage, meter.FinishReason);
        }
#pragma warning disable CA1031 // Any failure must reach the client as an error, never as a silent cut.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            // :: Step 6
            // Cut by a shutdown: a failure that says so, not "the client left".
            var reason = drain.Deadline.IsCancellationRequested ? ShuttingDown : sink.CancellationReason;
            var cancelled = generation.IsCancellationRequested || call.Aborted.IsCancellationRequested || reason is not null;
            (var end, failure) = StreamOutcome.Classify(ex, cancelled, call.RequestId, reason);
            if (end == StreamEnd.Abandoned)
            {
                meter.Abandon();
            }
            else
            {
                var unexpected = ex is not ChatException && failure != reason;
                backendFailure = failure != reason ? ex : null;
                if (unexpected)
                {
                    LogBackendFailed(logger, ex, call.RequestId, call.Request.Model);
                }

                meter.Fail(StreamOutcome.CodeOf(failure!, unexpected));
                if (failure?.OperatorNote is { } note)
                {
                    // The client was told it is the gateway's configuration; the operator learns what to fix.
                    LogOperatorNote(logger, call.RequestId, call.Request.Model, note);
                }
            }

            if (!settled)
            {
                settled = true;
                await SettleAsync(call, stage, meter);
            }

            await call.Lease.DisposeAsync();
            await EndQuietlyAsync(sink, failure);
        }
        finally
        {
            // :: Step 7
            await DisposeQuietlyAsync(sink);
            if (events is not null)
            {
                await DisposeQuietlyAsync(events);
            }
            if (generation.IsCancellationRequested && meter.Status == UsageStatus.Completed && !meter.Finished)
            {
                // Cancelled between the last event and the end: not a complete answer.
                meter.Abandon();
            }

            var record = meter.ToRecord(call);
            usage.Report(record);

            // What the client got: 200 once the answer started; before that the error's status, or 499 for a client
            // that left.
            var status = sink.Started || record.Status == UsageStatus.Completed ? 200 : failure?.StatusCode ?? 499;
            telemetry.RelayEnded(call, record, status, record.Status == UsageStatus.Failed ? backendFailure : null);
            drain.Exit();
        }
    }

    /// <summary>Tokens just reached the client: the gap since the previous delivery is the client's inter-token gap.</summary>
    private long Delivered(ChatCall call, UsageMeter meter, long lastDelivery)
    {
        if (!meter.HasFirstToken)
        {
            return 0;
        }

        var now = time.GetTimestamp();
        if (lastDelivery != 0)
        {
            telemetry.Delivered(call, time.GetElapsedTime(lastDelivery, now));
        }

        return now;
    }

    private async ValueTask SettleAsync(ChatCall call, CallStage? stage, UsageMeter meter)
    {
        if (stage is null)
        {
            return;
        }

        try
        {
            await stage.SettleAsync(call, meter.Status, meter.Usage);
        }
#pragma warning disable CA1031 // The client must still get its terminal frame; the failure is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogSettleFailed(logger, ex, call.RequestId);
        }
    }

    private static async ValueTask EndQuietlyAsync(IAnswerSink sink, ChatException? failure)
    {
        try
        {
            if (failure is null)
            {
                await sink.AbandonAsync();
            }
            else
            {
                await sink.FailAsync(failure);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client is gone: nobody is left to tell.
        }
    }

    private static async ValueTask DisposeQuietlyAsync(IAsyncDisposable disposable)
    {
        try
        {
            await disposable.DisposeAsync();
        }
#pragma warning disable CA1031 // Disposal failures after the answer is over must not mask its outcome.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Backend for {Model} failed on request {RequestId}")]
    private static partial void LogBackendFailed(ILogger logger, Exception ex, string requestId, string model);

    [LoggerMessage(Level = LogLevel.Error, Message = "Request {RequestId} for {Model} failed because of the gateway's configuration: {Note}")]
    private static partial void LogOperatorNote(ILogger logger, string requestId, string model, string note);

    [LoggerMessage(Level = LogLevel.Error, Message = "Recording the outcome of request {RequestId} failed")]
    private static partial void LogSettleFailed(ILogger logger, Exception ex, string requestId);
}
