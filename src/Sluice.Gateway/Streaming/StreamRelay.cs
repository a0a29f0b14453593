using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;
using Sluice.Providers;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// Moves one backend stream to one HTTP response, for any <see cref="IStreamFormat"/> (SSE or NDJSON).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Headers are sent with the first event, so failures before it still get a real HTTP status.</item>
/// <item>Events the backend has ready are written together; the response is flushed whenever the backend
/// has nothing more ready, so no event ever waits in a buffer while the relay waits for the model.</item>
/// <item>The format's opening frame (if any) follows the headers, with the usage known so far.</item>
/// <item>While the backend is silent, the format's keep-alive frame (<c>: ping</c> for OpenAI) goes out every
/// ping interval — always between whole frames (see <see cref="KeepAlive"/>).</item>
/// <item>A failure after the first byte becomes one error frame and the stream ends without its success marker.</item>
/// <item>The client's disconnect (RequestAborted) cancels the backend — unless the stream is resumable: then the
/// answer goes on into the stream's buffer for the grace period (see <see cref="ResumableStream"/>). Usage is
/// reported once, in every case.</item>
/// </list>
/// </remarks>
internal sealed partial class StreamRelay(UsageReporter usage, StreamRegistry registry, ILogger<StreamRelay> logger)
{
    /// <summary>The SSE comment that names a resumable stream, right after the headers: <c>: sluice-stream-id strm_…</c>.</summary>
    public const string StreamIdComment = "sluice-stream-id ";

    /// <summary>The response header that names a resumable stream.</summary>
    public const string StreamIdHeader = "x-sluice-stream-id";

    /// <param name="context">The HTTP exchange.</param>
    /// <param name="backend">The model.</param>
    /// <param name="request">The parsed request.</param>
    /// <param name="format">The wire format.</param>
    /// <param name="settings">Per-request settings.</param>
    /// <param name="resumable">
    /// When given, every frame is also kept in this buffer (for <c>GET /v1/streams/{id}</c>), and the generation
    /// follows its token instead of the client's: a client that leaves stops receiving, but the answer goes on
    /// for the grace period so it can come back.
    /// </param>
    public async Task RelayAsync(
        HttpContext context,
        IChatBackend backend,
        ChatRequest request,
        IStreamFormat format,
        RelaySettings settings,
        ResumableStream? resumable = null)
    {
        var response = context.Response;
        var output = response.BodyWriter;
        var aborted = context.RequestAborted;
        var generation = resumable?.Generation ?? aborted;
        var meter = new StreamMeter(settings.StartTimestamp, request);
        var sequence = 0L;
        var firstTokenFlushed = false;
        var detached = false;
        var batchFormat = format as IChunkBatchFormat;

        // One event per upstream read instead of one per chunk, where the format can write it (see OpenAIChunkBatch).
        request.AcceptsChunkBatches = batchFormat is not null;
        var enumerator = backend.StreamAsync(request, generation).GetAsyncEnumerator(generation);

        // Resumable streams write each format call into a scratch buffer first, so whole frames can be kept as well
        // as sent; plain streams write straight into the response.
        using var scratch = resumable is null ? null : new ScratchBuffer();
        IBufferWriter<byte> frames = scratch ?? (IBufferWriter<byte>)output;
        using var leaving = resumable is null ? default : aborted.Register(static s => ((ResumableStream)s!).DetachReader(), resumable);

        bool Attached() => !detached && !aborted.IsCancellationRequested;

        // Keeps and sends what the last format call wrote (resumable streams only).
        void Commit(long lastSequence, int frameCount)
        {
            if (scratch is null || scratch.WrittenCount == 0)
            {
                return;
            }

            resumable!.Append(scratch.WrittenSpan, lastSequence, frameCount);
            if (Attached())
            {
                output.Write(scratch.WrittenSpan);
            }

            scratch.ResetWrittenCount();
        }

        async ValueTask FlushAsync()
        {
            if (resumable is null)
            {
                await output.FlushAsync(aborted);
                return;
            }

            if (!Attached())
            {
                return;
            }

            try
            {
                await output.FlushAsync(aborted);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionAbortedException)
            {
                // The client left: the answer goes on into the buffer, for a client that resumes.
                detached = true;
            }
        }

        // Headers, then the format's opening frame: sent with the first event, ping or end, whichever comes first.
        // Called only by the holder of the keep-alive gate, so the relay and a ping never race on it.
        void Start()
        {
            StartStream(context, format.ContentType);
            if (resumable is not null)
            {
                // A comment: SSE clients (OpenAI SDKs, EventSource) ignore it; the header carries the same id.
                SseWriter.WriteComment(output, Encoding.ASCII.GetBytes(StreamIdComment + resumable.Id));
                resumable.MarkAnnounced();
            }

            var used = format.WriteStart(frames, sequence + 1, meter.Usage);
            sequence += used;
            Commit(sequence, used);
        }

        var keepAlive = new KeepAlive(output, settings.PingInterval, () =>
        {
            if (Attached())
            {
                format.WritePing(output);
            }
        }, Start, aborted);
        try
        {
            while (true)
            {
                var moveNext = enumerator.MoveNextAsync();
                bool hasEvent;
                if (moveNext.IsCompleted)
                {
                    hasEvent = await moveNext;
                }
                else
                {
                    // Nothing more is ready: everything written so far goes out now, then pings may fill the silence.
                    if (keepAlive.Started && output.CanGetUnflushedBytes && output.UnflushedBytes > 0)
                    {
                        await FlushAsync();
                    }

                    keepAlive.Release();
                    try
                    {
                        hasEvent = await moveNext;
                    }
                    finally
                    {
                        await keepAlive.AcquireAsync();
                    }
                }

                if (!hasEvent)
                {
                    break;
                }

                var streamEvent = enumerator.Current;
                if (streamEvent is ErrorEvent error)
                {
                    throw new ChatException(502, error.Error);
                }

                if (streamEvent is OpenAIChunkBatch batch)
                {
                    bool wroteFirstFrame;
                    using (batch)
                    {
                        meter.Observe(batch);
                        keepAlive.EnsureStarted();
                        var before = sequence;
                        WriteBatch(batch);
                        wroteFirstFrame = before < 1 && sequence >= 1;
                    }

                    // The same flush rules as for single events below, applied once per batch.
                    if (wroteFirstFrame || (!firstTokenFlushed && meter.HasFirstToken)
                        || (output.CanGetUnflushedBytes && output.UnflushedBytes >= settings.MaxPendingBytes))
                    {
                        firstTokenFlushed |= meter.HasFirstToken;
                        await FlushAsync();
                    }

                    continue;
                }

                meter.Observe(streamEvent);
                if (streamEvent is UsageEvent)
                {
                    continue;
                }

                keepAlive.EnsureStarted();
                if (format.WriteEvent(frames, sequence + 1, streamEvent))
                {
                    sequence++;
                    Commit(sequence, 1);

                    // The first event and the first token go out at once, whatever else is ready: time to first token
                    // is what users feel. Later events that arrived together are written together.
                    if (sequence == 1 || (!firstTokenFlushed && meter.HasFirstToken)
                        || (output.CanGetUnflushedBytes && output.UnflushedBytes >= settings.MaxPendingBytes))
                    {
                        firstTokenFlushed |= meter.HasFirstToken;
                        await FlushAsync();
                    }
                }
            }

            await keepAlive.StopAsync();
            await BeforeEndAsync(settings, UsageStatus.Completed, meter.Usage);
            keepAlive.EnsureStarted();
            var ending = format.WriteEnd(frames, sequence + 1, meter.Usage);
            sequence += ending;
            Commit(sequence, ending);
            await FlushAsync();
            meter.Status = UsageStatus.Completed;
        }
        catch (Exception ex) when ((aborted.IsCancellationRequested || generation.IsCancellationRequested)
            && ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            meter.Status = UsageStatus.Abandoned;
            if (resumable is not null && keepAlive.Started)
            {
                // Nobody is listening now, but a client resuming later learns why the answer stops here — after the
                // outcome is recorded, as for any terminal frame.
                await keepAlive.StopAsync();
                await BeforeEndAsync(settings, UsageStatus.Abandoned, meter.Usage);
                format.WriteError(frames, ++sequence, new ErrorInfo(
                    "The generation was cancelled: its client left and did not resume in time (or it was cancelled with DELETE /v1/streams/{id}). The answer is incomplete; send the request again.",
                    ErrorTypes.Server, null, "stream_cancelled"));
                Commit(sequence, 1);
                await FlushAsync();
            }
        }
        catch (ChatException ex)
        {
            meter.Fail(ex.Error.Code ?? ex.Error.Type);
            await keepAlive.StopAsync();
            await BeforeEndAsync(settings, UsageStatus.Failed, meter.Usage);
            if (!keepAlive.Started)
            {
                await ErrorResponses.WriteAsync(context, ex, format.Errors);
            }
            else
            {
                await WriteErrorFrameAsync(ex.Error);
            }
        }
#pragma warning disable CA1031 // Any backend failure must reach the client as an error, never as a silent cut.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            meter.Fail("internal_error");
            LogBackendFailed(logger, ex, settings.RequestId, request.Model);
            await BeforeEndAsync(settings, UsageStatus.Failed, meter.Usage);
            var error = new ErrorInfo(
                $"The model backend failed unexpectedly ({ex.GetType().Name}). Retry the request; if it keeps failing, report request id {settings.RequestId}.",
                ErrorTypes.Server, null, "backend_error");
            await keepAlive.StopAsync();
            if (!keepAlive.Started)
            {
                await ErrorResponses.WriteAsync(context, StatusCodes.Status502BadGateway, error, dialect: format.Errors);
            }
            else
            {
                await WriteErrorFrameAsync(error);
            }
        }
        finally
        {
            // No ping may touch the response once the handler returns.
            await keepAlive.StopAsync();
            await DisposeQuietlyAsync(enumerator);

            if (generation.IsCancellationRequested && meter.Status == UsageStatus.Completed && !meter.Finished)
            {
                meter.Status = UsageStatus.Abandoned;
            }

            if (resumable is not null)
            {
                resumable.Complete();
                if (!keepAlive.Started)
                {
                    // It failed before its first byte: an HTTP error, nothing to resume.
                    registry.Remove(resumable);
                }
            }

            usage.Report(meter.ToRecord(settings, request, stream: true));
        }

        // All the chunks of one upstream read: one format call and one commit (frames keep their own ids), or one
        // call per chunk for a format that writes chunks one at a time.
        void WriteBatch(OpenAIChunkBatch batch)
        {
            if (batchFormat is not null)
            {
                var used = batchFormat.WriteBatch(frames, sequence + 1, batch);
                sequence += used;
                Commit(sequence, used);
                return;
            }

            for (var i = 0; i < batch.Count; i++)
            {
                if (format.WriteEvent(frames, sequence + 1, batch.ChunkAt(i)))
                {
                    sequence++;
                    Commit(sequence, 1);
                }
            }
        }

        async Task WriteErrorFrameAsync(ErrorInfo error)
        {
            try
            {
                format.WriteError(frames, ++sequence, error);
                Commit(sequence, 1);
                if (resumable is null)
                {
                    await output.FlushAsync(aborted);
                }
                else
                {
                    await FlushAsync();
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionAbortedException)
            {
                // The client is gone; nobody is left to tell.
            }
        }
    }

    /// <summary>Runs a backend stream to its end and returns the assembled answer (non-streaming requests).</summary>
    public async Task<(ChatCompletionAccumulator Answer, ChatUsage Usage)> CollectAsync(
        HttpContext context,
        IChatBackend backend,
        ChatRequest request,
        RelaySettings settings)
    {
        var meter = new StreamMeter(settings.StartTimestamp, request);
        var answer = new ChatCompletionAccumulator();
        try
        {
            await foreach (var streamEvent in backend.StreamAsync(request, context.RequestAborted).WithCancellation(context.RequestAborted))
            {
                if (streamEvent is ErrorEvent error)
                {
                    throw new ChatException(502, error.Error);
                }

                meter.Observe(streamEvent);
                answer.Add(streamEvent);
            }

            meter.Status = UsageStatus.Completed;
            return (answer, meter.Usage);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            meter.Status = UsageStatus.Abandoned;
            throw;
        }
        catch (ChatException ex)
        {
            meter.Fail(ex.Error.Code ?? ex.Error.Type);
            throw;
        }
        catch (Exception ex)
        {
            meter.Fail("internal_error");
            LogBackendFailed(logger, ex, settings.RequestId, request.Model);
            throw new ChatException(StatusCodes.Status502BadGateway, new ErrorInfo(
                $"The model backend failed unexpectedly ({ex.GetType().Name}). Retry the request; if it keeps failing, report request id {settings.RequestId}.",
                ErrorTypes.Server, null, "backend_error"), inner: ex);
        }
        finally
        {
            usage.Report(meter.ToRecord(settings, request, stream: false));
        }
    }

    private async ValueTask BeforeEndAsync(RelaySettings settings, UsageStatus status, ChatUsage usage)
    {
        if (settings.BeforeEnd is not { } beforeEnd)
        {
            return;
        }

        try
        {
            await beforeEnd(status, usage);
        }
#pragma warning disable CA1031 // The client must still get its terminal frame; the failure is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogHookFailed(logger, ex, settings.RequestId);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Recording the outcome of request {RequestId} failed")]
    private static partial void LogHookFailed(ILogger logger, Exception ex, string requestId);

    private static void StartStream(HttpContext context, string contentType)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = contentType;
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    private static async ValueTask DisposeQuietlyAsync(IAsyncEnumerator<ChatStreamEvent> enumerator)
    {
        try
        {
            await enumerator.DisposeAsync();
        }
#pragma warning disable CA1031 // Disposal failures after the response is over must not mask the outcome.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>
    /// The resumable relay's scratch: pooled, so a stream does not allocate (and zero) a buffer that doubles up to the
    /// size of its largest upstream read.
    /// </summary>
    private sealed class ScratchBuffer : IBufferWriter<byte>, IDisposable
    {
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(4096);
        private int _written;

        public int WrittenCount => _written;

        public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _written);

        public void ResetWrittenCount() => _written = 0;

        public void Advance(int count)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(count);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _buffer.Length - _written);
            _written += count;
        }

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _buffer.AsMemory(_written);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return _buffer.AsSpan(_written);
        }

        public void Dispose()
        {
            var buffer = _buffer;
            _buffer = [];
            _written = 0;
            if (buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void Reserve(int sizeHint)
        {
            ObjectDisposedException.ThrowIf(_buffer.Length == 0, this);
            var needed = Math.Max(sizeHint, 1);
            if (_buffer.Length - _written >= needed)
            {
                return;
            }

            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _written + needed));
            _buffer.AsSpan(0, _written).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Backend for {Model} failed on request {RequestId}")]
    private static partial void LogBackendFailed(ILogger logger, Exception ex, string requestId, string model);

    /// <summary>Counts what a stream delivered, for usage when the backend reports none (also used by the WebSocket endpoint and the MQTT bridge).</summary>
    internal sealed class StreamMeter(long startTimestamp, ChatRequest request)
    {
        private ChatUsage? _reported;
        private int _estimatedCompletion;
        private long _firstTokenTimestamp;
        private string? _errorCode;

        public UsageStatus Status { get; set; } = UsageStatus.Completed;

        public bool Finished { get; private set; }

        /// <summary>The last finish reason seen (choice 0 in practice), for formats that report it.</summary>
        public string? FinishReason { get; private set; }

        public bool HasFirstToken => _firstTokenTimestamp != 0;

        public ChatUsage Usage => _reported ?? new ChatUsage(TokenCounter.CountPrompt(request.Messages), _estimatedCompletion);

        public void Observe(ChatStreamEvent streamEvent)
        {
            switch (streamEvent)
            {
                case OpenAIChunkBatch batch:
                    if (batch.HasUndecoded)
                    {
                        // Plain passed-through deltas: counted, not parsed (the upstream's usage arrives at the end).
                        MarkFirstToken();
                        _estimatedCompletion += batch.EstimatedTokens;
                    }

                    for (var i = 0; i < batch.Count; i++)
                    {
                        if (batch.DecodedAt(i) is { } decoded)
                        {
                            Observe(decoded);
                        }
                    }

                    break;
                case OpenAIChunkEvent { IsDecoded: false } plain:
                    // A plain passed-through delta: counted, not parsed (the upstream's usage arrives at the end).
                    MarkFirstToken();
                    _estimatedCompletion += plain.EstimatedTokens;
                    break;
                case OpenAIChunkEvent chunk:
                    foreach (var inner in chunk.Events)
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

        /// <summary>The usage record of a call that has no relay settings (WebSocket, MQTT): not billed to a team here.</summary>
        public UsageRecord ToRecord(string requestId, ChatRequest chatRequest, bool stream) =>
            ToRecord(new RelaySettings(requestId, 0, TimeSpan.Zero, 0), chatRequest, stream);

        public UsageRecord ToRecord(RelaySettings settings, ChatRequest chatRequest, bool stream)
        {
            var now = Stopwatch.GetTimestamp();
            var usage = Usage;
            return new UsageRecord
            {
                RequestId = settings.RequestId,
                TeamId = settings.Owner?.TeamId,
                KeyId = settings.Owner?.KeyId,
                JobId = settings.Owner?.JobId,
                Model = chatRequest.Model,
                Stream = stream,
                PromptTokens = usage.PromptTokens,
                CompletionTokens = usage.CompletionTokens,
                Estimated = _reported is null,
                Status = Status,
                TimeToFirstToken = _firstTokenTimestamp == 0 ? null : Stopwatch.GetElapsedTime(startTimestamp, _firstTokenTimestamp),
                Duration = Stopwatch.GetElapsedTime(startTimestamp, now),
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
}

/// <summary>Per-request relay settings.</summary>
/// <param name="RequestId">The request id.</param>
/// <param name="StartTimestamp">When the request arrived (<see cref="Stopwatch.GetTimestamp"/>).</param>
/// <param name="PingInterval">Silence before a ping comment.</param>
/// <param name="MaxPendingBytes">Flush early above this many unflushed bytes.</param>
/// <param name="Owner">Who is billed for the call (team, key, job); none in open mode.</param>
/// <param name="BeforeEnd">
/// Awaited once the outcome is known and before the stream's terminal frame (<c>[DONE]</c> or the error frame,
/// or the error response when nothing was sent yet) — for state a client may read right after the stream, such
/// as a job's calls. For abandoned streams it is called only when a terminal frame is still written (a resumable
/// stream's cancellation frame), with <see cref="UsageStatus.Abandoned"/>. Delays only the terminal frame, never a token.
/// </param>
internal readonly record struct RelaySettings(
    string RequestId,
    long StartTimestamp,
    TimeSpan PingInterval,
    int MaxPendingBytes,
    UsageOwner? Owner = null,
    Func<UsageStatus, ChatUsage, ValueTask>? BeforeEnd = null);

/// <summary>Who a call is billed to.</summary>
/// <param name="TeamId">The team.</param>
/// <param name="KeyId">The virtual key, if one was used.</param>
/// <param name="JobId">The job, for job calls.</param>
internal sealed record UsageOwner(string TeamId, string? KeyId, string? JobId);
