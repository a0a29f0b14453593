using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;
using Sluice.Providers.Buffers;
using Sluice.Providers.Timing;

namespace Sluice.Gateway.Http;

/// <summary>
/// A streamed HTTP answer in one <see cref="IStreamFormat"/> (OpenAI, Anthropic or portal SSE; Ollama NDJSON): headers
/// with the first frame (so a failure before it still gets a real status), the format's opening frame, keep-alive
/// frames while the backend is silent (always between whole frames, see <see cref="KeepAlive"/>), and — for a
/// resumable stream — every frame also kept in its <see cref="ResumableStream"/>, where the answer goes on for the
/// grace period after the client left.
/// </summary>
/// <remarks>
/// A client that stops reading cannot make the gateway buffer without bound: the sink writes into Kestrel's response
/// pipe, whose flush waits once <c>MaxResponseBufferSize</c> (64 KiB) is unsent, which pauses the relay and so the
/// upstream read. A flush (or ping) that waits longer than <c>Streaming:SlowClientTimeoutSeconds</c> drops the
/// connection with a logged reason: a plain stream fails with <c>client_too_slow</c>; a resumable one goes on into its
/// bounded buffer as if the client had left, for a client that resumes.
/// </remarks>
internal sealed partial class HttpStreamSink : IAnswerSink, IPingTarget
{
    /// <summary>The SSE comment that names a resumable stream, right after the headers: <c>: sluice-stream-id strm_…</c>.</summary>
    public const string StreamIdComment = "sluice-stream-id ";

    /// <summary>The response header that names a resumable stream.</summary>
    public const string StreamIdHeader = "x-sluice-stream-id";

    private readonly HttpContext _context;
    private readonly PipeWriter _output;
    private readonly IStreamFormat _format;
    private readonly IChunkBatchFormat? _batchFormat;
    private readonly ResumableStream? _resumable;
    private readonly StreamRegistry? _registry;
    private readonly TimeSpan _pingInterval;
    private readonly DeadlineSweep _sweep;
    private readonly CancellationToken _aborted;
    private readonly HttpStreamLimits _limits;
    private ChatException? _dropped;

    // Resumable streams write each format call into a scratch buffer first, so whole frames can be kept as well as
    // sent; plain streams write straight into the response.
    private readonly ScratchBuffer? _scratch;
    private readonly IBufferWriter<byte> _frames;
    private CancellationTokenRegistration _leaving;
    private KeepAlive? _keepAlive;
    private UsageMeter? _meter;
    private long _sequence;
    private bool _detached;
    private bool _ended;

    public HttpStreamSink(
        HttpContext context, IStreamFormat format, ResumableStream? resumable, StreamRegistry? registry, TimeSpan pingInterval, DeadlineSweep sweep, HttpStreamLimits? limits = null)
    {
        _limits = limits ?? HttpStreamLimits.None;
        _context = context;
        _output = context.Response.BodyWriter;
        _format = format;
        _batchFormat = format as IChunkBatchFormat;
        _resumable = resumable;
        _registry = registry;
        _pingInterval = pingInterval;
        _sweep = sweep;
        _aborted = context.RequestAborted;
        _scratch = resumable is null ? null : new ScratchBuffer();
        _frames = _scratch ?? (IBufferWriter<byte>)_output;
    }

    public CancellationToken Generation => _resumable?.Generation ?? _aborted;

    public ChatException? CancellationReason => _dropped;

    public bool AcceptsChunkBatches => _batchFormat is not null;

    public bool Started => _keepAlive?.Started ?? false;

    public long PendingBytes => _output.CanGetUnflushedBytes ? _output.UnflushedBytes : 0;

    private bool Attached => !_detached && !_aborted.IsCancellationRequested;

    public void Open(UsageMeter meter)
    {
        _meter = meter;
        if (_resumable is not null)
        {
            _leaving = _aborted.Register(static s => ((ResumableStream)s!).DetachReader(), _resumable);
        }

        _keepAlive = new KeepAlive(this, _pingInterval, _sweep);
    }

    public ValueTask<bool> WriteAsync(ChatStreamEvent streamEvent)
    {
        _keepAlive!.EnsureStarted();
        if (streamEvent is OpenAIChunkBatch batch)
        {
            return ValueTask.FromResult(WriteBatch(batch));
        }

        if (!_format.WriteEvent(_frames, _sequence + 1, streamEvent))
        {
            return ValueTask.FromResult(false);
        }

        _sequence++;
        Commit(_sequence, 1);
        return ValueTask.FromResult(true);
    }

    public ValueTask FlushAsync() => _resumable is null ? FlushPlainAsync() : FlushResumableAsync();

    public void Idle() => _keepAlive!.Release();

    public ValueTask BusyAsync() => _keepAlive!.AcquireAsync();

    public async ValueTask CompleteAsync(ChatUsage usage, string? finishReason)
    {
        await _keepAlive!.StopAsync();
        _keepAlive.EnsureStarted();
        var ending = _format.WriteEnd(_frames, _sequence + 1, usage);
        _sequence += ending;
        Commit(_sequence, ending);
        await EndAsync();
    }

    public async ValueTask FailAsync(ChatException error)
    {
        await _keepAlive!.StopAsync();
        if (_dropped is not null || _ended)
        {
            // The connection is gone, or the answer already ended: nobody to tell.
            return;
        }

        if (!_keepAlive.Started)
        {
            await ErrorResponses.WriteAsync(_context, error, _format.Errors);
            return;
        }

        _format.WriteError(_frames, ++_sequence, error.Error);
        Commit(_sequence, 1);
        await EndAsync();
    }

    public async ValueTask AbandonAsync()
    {
        await _keepAlive!.StopAsync();
        if (_resumable is not null && _keepAlive.Started && !_ended)
        {
            // Nobody is listening now, but a client resuming later learns why the answer stops here.
            _format.WriteError(_frames, ++_sequence, SluiceErrors.StreamCancelled);
            Commit(_sequence, 1);
            await EndAsync();
        }
    }

    // The answer's last frame is written: the stream is finished before the client can see its end (a resume or a cancel
    // sent on reading it finds a finished stream), and the frame leaves with the end of the body (HTTP/1.1's last
    // chunk, HTTP/2's END_STREAM) in one send. Leaving the body's end to the server took a second send once the handler
    // had returned — after the call's accounting — so a client waiting for the end of the response waited for it.
    private ValueTask EndAsync()
    {
        _resumable?.Complete();
        return _resumable is null ? FlushPlainAsync(end: true) : FlushResumableAsync(end: true);
    }

    public async ValueTask DisposeAsync()
    {
        // No keep-alive frame may touch the response once the handler returns.
        if (_keepAlive is not null)
        {
            await _keepAlive.StopAsync();
        }

        await _leaving.DisposeAsync();
        if (_resumable is not null)
        {
            _resumable.Complete();
            if (!Started)
            {
                // It failed before its first byte: an HTTP error, nothing to resume.
                _registry?.Remove(_resumable);
            }
        }

        _scratch?.Dispose();
    }

    // Headers, then the format's opening frame: sent with the first event, keep-alive or end, whichever comes first.
    // Called only by the holder of the keep-alive gate, so the relay and a ping never race on it.
    void IPingTarget.StartResponse() => Start();

    void IPingTarget.WritePing() => WritePing();

    ValueTask IPingTarget.FlushForPingAsync() => FlushForPingAsync();

    private void Start()
    {
        var response = _context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = _format.ContentType;
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        _context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        if (_resumable is not null)
        {
            // A comment: SSE clients (OpenAI SDKs, EventSource) ignore it; the header carries the same id.
            // Ids are short ("strm_", a request id, a node suffix): written through the stack, not two new arrays per stream.
            var id = _resumable.Id;
            Span<byte> comment = id.Length <= 256 ? stackalloc byte[StreamIdComment.Length + id.Length] : new byte[StreamIdComment.Length + id.Length];
            var written = Encoding.ASCII.GetBytes(StreamIdComment, comment);
            written += Encoding.ASCII.GetBytes(id, comment[written..]);
            SseWriter.WriteComment(_output, comment[..written]);
            _resumable.MarkAnnounced();
        }

        if (_meter!.Start is { } start && _format is IAnswerStartFormat startFormat)
        {
            startFormat.OnAnswerStart(start);
        }

        var used = _format.WriteStart(_frames, _sequence + 1, _meter.Usage);
        _sequence += used;
        Commit(_sequence, used);
    }

    private void WritePing()
    {
        if (Attached && _dropped is null && !_ended)
        {
            _format.WritePing(_output);
            _limits.Telemetry?.Pinged();
        }
    }

    // All the chunks of one upstream read: one format call and one commit (frames keep their own ids), or one call
    // per chunk for a format that writes chunks one at a time.
    private bool WriteBatch(OpenAIChunkBatch batch)
    {
        if (_batchFormat is not null)
        {
            if (_scratch is not null)
            {
                return WriteKeptBatch(_batchFormat, _scratch, batch);
            }

            var used = _batchFormat.WriteBatch(_frames, _sequence + 1, batch);
            _sequence += used;
            return used > 0;
        }

        var wrote = false;
        for (var i = 0; i < batch.Count; i++)
        {
            if (_format.WriteEvent(_frames, _sequence + 1, batch.ChunkAt(i)))
            {
                _sequence++;
                Commit(_sequence, 1);
                wrote = true;
            }
        }

        return wrote;
    }

    // A resumable stream's batch: frame by frame into the scratch buffer, noting where each ends, so the stream keeps
    // them apart (each with its own id) without searching the bytes for blank lines again.
    private bool WriteKeptBatch(IChunkBatchFormat format, ScratchBuffer scratch, OpenAIChunkBatch batch)
    {
        var count = batch.Count;
        if (count == 0)
        {
            return false;
        }

        int[]? rented = null;
        var ends = count <= 128 ? stackalloc int[count] : (rented = ArrayPool<int>.Shared.Rent(count)).AsSpan(0, count);
        for (var i = 0; i < count; i++)
        {
            format.WriteBatchChunk(scratch, _sequence + 1 + i, batch, i);
            ends[i] = scratch.WrittenCount;
        }

        _sequence += count;
        _resumable!.Append(scratch.WrittenSpan, _sequence, ends);
        Send(scratch);
        if (rented is not null)
        {
            ArrayPool<int>.Shared.Return(rented);
        }

        return true;
    }

    // Keeps and sends what the last format call wrote (resumable streams only).
    private void Commit(long lastSequence, int frameCount)
    {
        if (_scratch is null || _scratch.WrittenCount == 0)
        {
            return;
        }

        _resumable!.Append(_scratch.WrittenSpan, lastSequence, frameCount);
        Send(_scratch);
    }

    // Sends what the scratch buffer holds (kept already) to a client still attached, and empties it.
    private void Send(ScratchBuffer scratch)
    {
        if (Attached)
        {
            _output.Write(scratch.WrittenSpan);
        }

        scratch.ResetWrittenCount();
    }

    private async ValueTask FlushPlainAsync(bool end = false)
    {
        if (_dropped is not null)
        {
            throw new OperationCanceledException(_dropped.Message);
        }

        var flush = SendAsync(end);
        if (!flush.IsCompleted && !await WaitForClientAsync(flush))
        {
            // The relay ends the answer as failed with CancellationReason (client_too_slow).
            throw new OperationCanceledException(_dropped?.Message);
        }

        await flush;
    }

    private async ValueTask FlushResumableAsync(bool end = false)
    {
        if (!Attached || _dropped is not null)
        {
            return;
        }

        try
        {
            var flush = SendAsync(end);
            if (!flush.IsCompleted && !await WaitForClientAsync(flush))
            {
                // Dropped like a client that left: the answer goes on into the buffer, for a client that resumes.
                _detached = true;
                return;
            }

            await flush;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // The client left: the answer goes on into the buffer, for a client that resumes.
            _detached = true;
        }
    }

    // A flush, or at the end of the answer the response's completion (which flushes what is written with the body's end).
    private ValueTask<FlushResult> SendAsync(bool end)
    {
        if (!end)
        {
            return _output.FlushAsync(_aborted);
        }

        _ended = true;
        var completing = _context.Response.CompleteAsync();
        return completing.IsCompletedSuccessfully ? default : AwaitCompletionAsync(completing);

        static async ValueTask<FlushResult> AwaitCompletionAsync(Task completing)
        {
            await completing;
            return default;
        }
    }

    private async ValueTask FlushForPingAsync()
    {
        if (_dropped is not null || _detached)
        {
            return;
        }

        var flush = _output.FlushAsync(_aborted);
        if (!flush.IsCompleted && !await WaitForClientAsync(flush))
        {
            return;
        }

        await flush;
    }

    /// <summary>
    /// Waits for a flush the client holds up (Kestrel's response buffer is full) for at most the slow-client time;
    /// false when the client was dropped. The timer exists only on this slow path.
    /// </summary>
    private async ValueTask<bool> WaitForClientAsync(ValueTask<FlushResult> flush)
    {
        if (_limits.SlowClientTimeout <= TimeSpan.Zero)
        {
            await flush;
            return true;
        }

        var pending = flush.AsTask();
        try
        {
            await pending.WaitAsync(_limits.SlowClientTimeout, _sweep.Time);
            return true;
        }
        catch (TimeoutException)
        {
            Drop(pending);
            return false;
        }
    }

    private void Drop(Task pendingFlush)
    {
        var seconds = _limits.SlowClientTimeout.TotalSeconds;
        if (_resumable is null)
        {
            _dropped = SluiceErrors.ClientTooSlow(seconds);
        }
        else
        {
            // Like a client that left: the stream's own buffer (bounded by Streaming:MaxStreamBufferBytes) keeps the
            // answer and its end for a client that resumes.
            _detached = true;
        }

        if (_limits.Logger is { } logger)
        {
            LogSlowClient(logger, _context.GetRequestId(), seconds, _resumable is not null);
        }

        _limits.Telemetry?.SlowClientDropped("http");

        // The pending flush ends when the connection is aborted; nothing waits for it.
        _ = pendingFlush.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        _context.Abort();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropped the stream of request {RequestId}: the client read nothing for {Seconds} s (Streaming:SlowClientTimeoutSeconds); resumable: {Resumable}")]
    private static partial void LogSlowClient(ILogger logger, string requestId, double seconds, bool resumable);

    /// <summary>
    /// The resumable sink's scratch: pooled, so a stream does not allocate (and zero) a buffer that doubles up to the
    /// size of its largest upstream read. The first 4 KiB — all a paced stream ever needs, held for its whole life —
    /// come from a pinned pool (see <see cref="PinnedBufferPool"/>); larger ones from the shared array pool.
    /// </summary>
    internal sealed class ScratchBuffer : IBufferWriter<byte>, IDisposable
    {
        private const int InitialBytes = 4096;

        // 1,024 kept: 4 MiB.
        private static readonly PinnedBufferPool SharedInitial = new(InitialBytes, 1024);

        private readonly PinnedBufferPool _initial;
        private byte[] _buffer;
        private int _written;

        /// <param name="initial">Where the first buffer comes from and goes back to (the process's pool by default).</param>
        public ScratchBuffer(PinnedBufferPool? initial = null)
        {
            _initial = initial ?? SharedInitial;
            _buffer = _initial.Rent();
        }

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
                _initial.Release(buffer);
            }
        }

        /// <summary>The current buffer (for tests).</summary>
        internal byte[] Buffer => _buffer;

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
            _initial.Release(_buffer);
            _buffer = larger;
        }
    }
}

/// <summary>What bounds a streamed HTTP answer and who hears about it: the slow-client time, the log, the metrics.</summary>
/// <param name="SlowClientTimeout">How long a flush may wait for a client that does not read (zero: for ever).</param>
/// <param name="Logger">Where a dropped stream is logged.</param>
/// <param name="Telemetry">Counts pings and dropped streams.</param>
internal sealed record HttpStreamLimits(TimeSpan SlowClientTimeout, ILogger? Logger, CallTelemetry? Telemetry)
{
    /// <summary>No limit, no reporting (tests of the sink alone).</summary>
    public static HttpStreamLimits None { get; } = new(TimeSpan.Zero, null, null);
}
