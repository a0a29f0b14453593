using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Hosting;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// Keeps the frames of streamed answers in memory so a client whose connection dropped can resume
/// (<c>GET /v1/streams/{id}</c>) and a finished stream can be replayed for a while.
/// </summary>
/// <remarks>
/// Memory is bounded twice: each stream holds at most <see cref="StreamingOptions.MaxStreamBufferBytes"/> (a live
/// stream that grows past it is marked non-resumable and its frames are dropped, rather than growing), and all
/// streams together at most <see cref="StreamingOptions.ReplayBudgetBytes"/> (oldest finished streams are evicted
/// first). Finished streams expire after <see cref="StreamingOptions.ReplayTtlSeconds"/>. The hot path (the relay
/// appending a frame) is a copy into the stream's current segment, an array store and a volatile write; locks are
/// taken only to evict.
/// <para>
/// Frame bytes live in fixed-size segments (<see cref="SegmentBytes"/>, the unit the budget is reserved in) that are
/// reused: a finished stream lives seconds to minutes, long enough for its bytes to reach the oldest GC generation, so
/// fresh arrays per stream made every stream's replay bytes gen-2 garbage (measured: a full collection every ~1,000
/// streams under load, ~50 µs of GC pause per stream). A released stream gives its segments back to a pool holding at
/// most the budget's worth. Because a reused segment then carries another stream's bytes, readers never send a
/// segment's bytes directly: <see cref="ResumableStream.TryCopyFrame"/> copies a frame out and only then checks, after a
/// full fence, that the stream was not released meanwhile. Frame index blocks are pooled the same way, and a finished
/// stream drops what only its writer needed (its format and generation source, see <see cref="ReplayFrames"/>): a kept
/// stream is then five small objects, so collections copy little of it (measured: 2.5 → 1.2 ms per collection, p99 of
/// a whole stream at one client 3–10 → 1.7–2.3 ms).
/// </para>
/// </remarks>
internal sealed class StreamRegistry
{
    private readonly ConcurrentDictionary<string, ResumableStream> _streams = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<ResumableStream> _finished = new();
    private readonly Lock _evicting = new();
    private readonly TimeProvider _time;
    private readonly ClusterNode _node;
    private readonly ConcurrentQueue<byte[]> _segmentPool = new();
    private readonly ConcurrentQueue<Frame[]> _frameBlockPool = new();
    private readonly int _poolLimit;
    private int _pooled;
    private int _pooledFrameBlocks;
    private long _totalBytes;

    /// <param name="options">The streaming options.</param>
    /// <param name="time">The clock of expiry and grace.</param>
    /// <param name="node">This instance: in a cluster every stream id ends with its id, so any instance can find the owner.</param>
    public StreamRegistry(GatewayOptions options, TimeProvider time, ClusterNode node)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(node);
        Options = options.Streaming;
        _time = time;
        _node = node;
        SegmentBytes = (int)Math.Clamp(Options.ReplayBudgetBytes / 16, 1, MaxSegmentBytes);
        _poolLimit = (int)Math.Min(int.MaxValue, Options.ReplayBudgetBytes / SegmentBytes);
    }

    /// <summary>The largest segment: the budget is reserved in blocks of this size (one interlocked add per block).</summary>
    internal const int MaxSegmentBytes = 16 * 1024;

    /// <summary>Bytes per pooled segment: <see cref="MaxSegmentBytes"/>, or a sixteenth of a smaller budget.</summary>
    internal int SegmentBytes { get; }

    /// <summary>Segments waiting in the pool (for tests and diagnostics).</summary>
    internal int PooledSegments => Volatile.Read(ref _pooled);

    public StreamingOptions Options { get; }

    /// <summary>Bytes held by all streams now.</summary>
    public long TotalBytes => Volatile.Read(ref _totalBytes);

    /// <summary>Streams known now (live and finished, not yet evicted).</summary>
    public int Count => _streams.Count;

    public TimeSpan Grace => TimeSpan.FromSeconds(Options.ResumeGraceSeconds);

    /// <summary>Registers a new live stream of <paramref name="ownerId"/> (a shutdown's deadline stops it through the relay).</summary>
    /// <param name="format">The stream's format: its content type, keep-alive frame and error frame.</param>
    /// <param name="ownerId">Who may resume, replay or cancel it (a team id, or the operator).</param>
    /// <param name="keepsGenerating">Whether the generation outlives a dropped client for the resume grace period.</param>
    public ResumableStream Create(IStreamFormat format, string ownerId, bool keepsGenerating)
    {
        ArgumentNullException.ThrowIfNull(format);
        var frames = format.Replay ?? throw new ArgumentException($"{format.GetType().Name} streams cannot be kept for resume.", nameof(format));
        Sweep();
        var stream = new ResumableStream(this, Calls.RequestIds.Next("strm_", _node.StreamIdSuffix), frames, ownerId)
        {
            KeepsGeneratingWithoutReaders = keepsGenerating,
        };
        _streams[stream.Id] = stream;
        return stream;
    }

    /// <summary>
    /// The request header: <c>on</c> keeps the generation going through a dropped connection (for the grace period) so
    /// the client can resume; <c>off</c> turns buffering off for the request.
    /// </summary>
    public const string ResumeHeader = "x-sluice-resume";

    /// <summary>
    /// Finds a stream that is still held (live, or finished and not expired or evicted) and that
    /// <paramref name="ownerId"/> may see: streams are owner-scoped, and another owner's stream is not found, exactly
    /// like an unknown id. Pass null to look up without an owner check (the operator).
    /// </summary>
    public bool TryGet(string id, string? ownerId, [NotNullWhen(true)] out ResumableStream? stream)
    {
        Sweep();
        if (!_streams.TryGetValue(id, out stream) || (ownerId is not null && !string.Equals(ownerId, stream.OwnerId, StringComparison.Ordinal)))
        {
            // Another owner's stream is reported exactly like an unknown one.
            stream = null;
            return false;
        }

        return !stream.Released;
    }

    /// <summary>Forgets a stream at once (e.g. it failed before its first byte, so there is nothing to resume).</summary>
    public void Remove(ResumableStream stream)
    {
        if (_streams.TryRemove(new KeyValuePair<string, ResumableStream>(stream.Id, stream)))
        {
            stream.Release();
        }
    }

    internal long Now => _time.GetTimestamp();

    internal ITimer CreateTimer(TimerCallback callback, object state, TimeSpan due) =>
        _time.CreateTimer(callback, state, due, Timeout.InfiniteTimeSpan);

    /// <summary>Accounts for bytes a stream took; false when they do not fit even after evicting finished streams.</summary>
    internal bool TryReserve(int bytes)
    {
        if (Interlocked.Add(ref _totalBytes, bytes) <= Options.ReplayBudgetBytes)
        {
            return true;
        }

        EvictFinished();
        if (Volatile.Read(ref _totalBytes) <= Options.ReplayBudgetBytes)
        {
            return true;
        }

        Interlocked.Add(ref _totalBytes, -bytes);
        return false;
    }

    internal void Unreserve(long bytes) => Interlocked.Add(ref _totalBytes, -bytes);

    /// <summary>A segment of <see cref="SegmentBytes"/> bytes, reused when one is free.</summary>
    internal byte[] RentSegment()
    {
        if (_segmentPool.TryDequeue(out var segment))
        {
            Interlocked.Decrement(ref _pooled);
            return segment;
        }

        // On the pinned object heap: the budget's worth of long-lived byte arrays in gen 2 inflated its allocation budget,
        // so finished streams' small objects piled up between full collections (RSS rode a ~50 MB sawtooth in the soak).
        // Pinning costs nothing for arrays without references that are never moved anyway.
        return GC.AllocateUninitializedArray<byte>(SegmentBytes, pinned: true);
    }

    /// <summary>A block of <see cref="ResumableStream.FrameBlockSize"/> frames, reused when one is free.</summary>
    internal Frame[] RentFrameBlock()
    {
        if (_frameBlockPool.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _pooledFrameBlocks);
            return block;
        }

        return new Frame[ResumableStream.FrameBlockSize];
    }

    /// <summary>Frame blocks in the pool (for tests).</summary>
    internal int PooledFrameBlocks => Volatile.Read(ref _pooledFrameBlocks);

    /// <summary>Takes back a frame block nobody writes to any more (readers check the stream, as for segments).</summary>
    internal void ReturnFrameBlock(Frame[] block)
    {
        // As many as segments: a kept stream has about one block per segment.
        if (Interlocked.Increment(ref _pooledFrameBlocks) > _poolLimit)
        {
            Interlocked.Decrement(ref _pooledFrameBlocks);
            return;
        }

        _frameBlockPool.Enqueue(block);
    }

    /// <summary>Takes back a segment nobody writes to any more (readers check the stream before using what they copied).</summary>
    internal void ReturnSegment(byte[] segment)
    {
        // Odd sizes (one append bigger than a segment) and anything past the budget's worth go to the GC.
        if (segment.Length != SegmentBytes || Interlocked.Increment(ref _pooled) > _poolLimit)
        {
            if (segment.Length == SegmentBytes)
            {
                Interlocked.Decrement(ref _pooled);
            }

            return;
        }

        _segmentPool.Enqueue(segment);
    }

    internal void OnFinished(ResumableStream stream) => _finished.Enqueue(stream);

    /// <summary>Drops finished streams past their time to live.</summary>
    private void Sweep()
    {
        if (!_finished.TryPeek(out var oldest) || !Expired(oldest))
        {
            return;
        }

        lock (_evicting)
        {
            while (_finished.TryPeek(out oldest) && Expired(oldest) && _finished.TryDequeue(out oldest))
            {
                Remove(oldest);
            }
        }
    }

    private bool Expired(ResumableStream stream) =>
        _time.GetElapsedTime(stream.FinishedTimestamp, _time.GetTimestamp()) > TimeSpan.FromSeconds(Options.ReplayTtlSeconds);

    private void EvictFinished()
    {
        lock (_evicting)
        {
            // Evict down to 90 % of the budget, so the next frames do not each have to evict again.
            var target = Options.ReplayBudgetBytes - (Options.ReplayBudgetBytes / 10);
            while (Volatile.Read(ref _totalBytes) > target && _finished.TryDequeue(out var oldest))
            {
                Remove(oldest);
            }
        }
    }
}

/// <summary>
/// One stream's frames, written by one relay and read by any number of followers. Whole frames only, each with the
/// highest event id it carries and the moment it was written (for timed replay).
/// </summary>
internal sealed class ResumableStream
{
    private static readonly Frame[][] NoFrames = [];

    // Frames live in blocks of 32 that are never copied: growing a single array copied and discarded every smaller
    // one, and a finished stream keeps its frames for the replay time (gen-2 memory per stream). A frame is 16 bytes
    // without references (see Frame), so the blocks cost the GC neither write barriers nor tracing.
    private const int FrameBlockShift = 5;

    /// <summary>Frames per block.</summary>
    internal const int FrameBlockSize = 1 << FrameBlockShift;

    private long _reserved;

    /// <summary>Whether the generation continues (for the grace period) after the last reader left.</summary>
    public bool KeepsGeneratingWithoutReaders { get; set; }

    private readonly StreamRegistry _registry;

    // Dropped when the stream finishes (nothing generates any more): a kept stream would otherwise keep it, and the
    // registration objects the relay's linked source left in it, for the replay time.
    private CancellationTokenSource? _generation;

    // Reader bookkeeping (grace timer, reader count) locks on the stream itself, which nothing else locks: a lock
    // object would be one more object every kept stream holds.
    private Frame[][] _frames = NoFrames;
    private int _count;

    // The segments holding this stream's bytes (writer only until release; then handed back exactly once).
    private byte[][]? _segments;
    private int _segmentCount;
    private byte[]? _current;
    private int _currentUsed;
    private long _bytes;
    private volatile bool _finished;
    private volatile bool _overflowed;
    private volatile bool _released;
    private volatile bool _announced;
    private TaskCompletionSource? _signal;
    private int _readers = 1;
    private ITimer? _graceTimer;

    internal ResumableStream(StreamRegistry registry, string id, ReplayFrames frames, string ownerId)
    {
        _registry = registry;
        Id = id;
        Frames = frames;
        OwnerId = ownerId;
        StartTimestamp = Stopwatch.GetTimestamp();
        _generation = new CancellationTokenSource();
    }

    public string Id { get; }

    /// <summary>The frames readers write in the stream's format (its error frame ends a replay that cannot go on).</summary>
    public ReplayFrames Frames { get; }

    public string ContentType => Frames.ContentType;

    /// <summary>Who may resume, replay or cancel it: a team id, or the operator.</summary>
    public string OwnerId { get; }

    /// <summary>Writes the format's keep-alive frame (made when a reader waits, not kept with every stream for its replay time).</summary>
    public void WritePing(System.Buffers.IBufferWriter<byte> output) => Frames.WritePing(output);

    /// <summary>The id of the last frame written (0 before the first).</summary>
    public long LastSequence
    {
        get
        {
            var count = Count;
            return count > 0 && TryGetFrame(count - 1, out var last) ? last.Sequence : 0L;
        }
    }

    public long StartTimestamp { get; }

    /// <summary>Cancelled when nobody is reading any more (after the grace period) or on DELETE (the relay adds the shutdown deadline).</summary>
    public CancellationToken Generation => Volatile.Read(ref _generation)?.Token ?? CancellationToken.None;

    public bool Finished => _finished;

    /// <summary>The stream outgrew its buffer: it runs on for its original client but cannot be resumed.</summary>
    public bool Overflowed => _overflowed;

    public bool Released => _released;

    public bool Resumable => !_overflowed && !_released;

    internal long FinishedTimestamp { get; private set; }

    /// <summary>Frames written so far (safe to read from any thread together with <see cref="TryCopyFrame"/>).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Copies frame <paramref name="index"/> into <paramref name="into"/> (replacing what it held); false (and nothing written) when there
    /// is no such frame or the stream was released or outgrew its buffer meanwhile. Send only what this copied: a
    /// released stream's segments carry other streams' bytes.
    /// </summary>
    public bool TryCopyFrame(int index, System.Buffers.ArrayBufferWriter<byte> into, out long timestamp)
    {
        ArgumentNullException.ThrowIfNull(into);
        timestamp = 0;
        // Blocks are handed back after the segment list is cleared, so a reader that sees another stream's frame
        // normally finds no segments; but the frame is a plain read that a weaker memory model may order after the
        // list's, so its bounds are checked before the copy too (what it copied is discarded below either way).
        if (!Resumable || !TryGetFrame(index, out var frame) || frame.Length == 0
            || Volatile.Read(ref _segments) is not { } segments || (uint)frame.Segment >= (uint)segments.Length || segments[frame.Segment] is not { } segment
            || (long)frame.Offset + frame.Length > segment.Length)
        {
            return false;
        }

        into.ResetWrittenCount();
        segment.AsSpan(frame.Offset, frame.Length).CopyTo(into.GetSpan(frame.Length));
        into.Advance(frame.Length);

        // The release that hands the segments back sets the flags first; reading them after a full fence means a copy
        // that could have seen another stream's bytes is never used.
        Interlocked.MemoryBarrier();
        if (!Resumable)
        {
            into.ResetWrittenCount();
            return false;
        }

        timestamp = StartTimestamp + (long)(frame.Micros * (Stopwatch.Frequency / 1e6));
        return true;
    }

    /// <summary>The index of the first frame whose id is above <paramref name="after"/>.</summary>
    public int IndexAfter(long after)
    {
        var count = Count;
        int lo = 0, hi = count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (!TryGetFrame(mid, out var frame))
            {
                // Dropped meanwhile (released or outgrown): readers learn it from Resumable.
                return count;
            }

            if (frame.Sequence <= after)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    /// <summary>
    /// Appends what one format call wrote: <paramref name="frameCount"/> SSE frames whose last carries id
    /// <paramref name="lastSequence"/>. Several frames are split at their blank lines so each keeps its own id.
    /// Called by the relay only (single writer).
    /// </summary>
    public void Append(ReadOnlySpan<byte> bytes, long lastSequence, int frameCount) =>
        Append(bytes, lastSequence, frameCount, default);

    /// <summary>
    /// Appends frames whose ends the writer noted (<paramref name="frameEnds"/>: offsets into <paramref name="bytes"/>,
    /// ascending; the last frame runs to the end of <paramref name="bytes"/>), the last carrying id
    /// <paramref name="lastSequence"/>. Nothing is searched: a batch of 64 chunks split at its blank lines cost 64
    /// searches, a few percent of a fast stream's CPU. Called by the relay only (single writer).
    /// </summary>
    public void Append(ReadOnlySpan<byte> bytes, long lastSequence, ReadOnlySpan<int> frameEnds) =>
        Append(bytes, lastSequence, frameEnds.Length, frameEnds);

    private void Append(ReadOnlySpan<byte> bytes, long lastSequence, int frameCount, ReadOnlySpan<int> frameEnds)
    {
        if (_overflowed || _released || _finished || bytes.IsEmpty)
        {
            return;
        }

        if (_bytes + bytes.Length > _registry.Options.MaxStreamBufferBytes || lastSequence > int.MaxValue)
        {
            Overflow();
            return;
        }

        _bytes += bytes.Length;
        var micros = Frame.MicrosSince(StartTimestamp, Stopwatch.GetTimestamp());
        var sequence = (int)(lastSequence - frameCount + 1);

        // Frame by frame: a frame is one slice of one segment (what readers copy out), but a call's frames may spread
        // over several pooled segments. Copying the whole call into one segment instead gave every call bigger than a
        // segment (a fast upstream's whole answer in one read) an odd-sized array the pool cannot take back.
        var rest = bytes;
        var consumed = 0;
        for (var i = 0; !rest.IsEmpty; i++)
        {
            var length = rest.Length;
            if (i < frameCount - 1)
            {
                if (frameEnds.IsEmpty)
                {
                    if (rest.IndexOf("\n\n"u8) is var blank and >= 0 && blank + 2 < rest.Length)
                    {
                        length = blank + 2;
                    }
                }
                else if (frameEnds[i] - consumed is var end && end < rest.Length)
                {
                    if (end <= 0)
                    {
                        // A call that wrote no frame still used its id.
                        sequence++;
                        continue;
                    }

                    length = end;
                }
            }

            if ((_current is null || _current.Length - _currentUsed < length) && !TakeSegment(length))
            {
                return;
            }

            rest[..length].CopyTo(_current.AsSpan(_currentUsed));
            Add(new Frame(length == rest.Length ? (int)lastSequence : sequence++, _segmentCount - 1, _currentUsed, length, micros));
            _currentUsed += length;
            rest = rest[length..];
            consumed += length;
        }

        Signal();
    }

    // A new current segment with room for `length` bytes; false (and the stream overflowed) when the budget is spent.
    [MemberNotNullWhen(true, nameof(_current))]
    private bool TakeSegment(int length)
    {
        // The budget is taken a segment at a time (one interlocked add per segment, not per frame). Only a single
        // frame bigger than a segment gets an array of its own size, which goes to the GC afterwards.
        var size = Math.Max(length, _registry.SegmentBytes);
        if (_segmentCount == Frame.MaxSegments || !_registry.TryReserve(size))
        {
            Overflow();
            return false;
        }

        Interlocked.Add(ref _reserved, size);
        var segment = size == _registry.SegmentBytes ? _registry.RentSegment() : GC.AllocateUninitializedArray<byte>(size);
        if (_segments is null || _segmentCount == _segments.Length)
        {
            Array.Resize(ref _segments, Math.Max(2, _segmentCount * 2));
        }

        _segments[_segmentCount++] = segment;
        _current = segment;
        _currentUsed = 0;
        return true;
    }

    /// <summary>Marks the end of the stream: followers finish, the replay time to live starts.</summary>
    public void Complete()
    {
        if (_finished)
        {
            return;
        }

        lock (this)
        {
            _graceTimer?.Dispose();
            _graceTimer = null;
        }

        FinishedTimestamp = _registry.Now;
        _finished = true;
        Volatile.Write(ref _generation, null);
        Signal();
        if (!_released)
        {
            _registry.OnFinished(this);
        }
    }

    /// <summary>Waits until there are more than <paramref name="known"/> frames or the stream ends; false on timeout.</summary>
    public async ValueTask<bool> WaitAsync(int known, TimeSpan timeout, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (Count > known || _finished || _released || _overflowed)
            {
                return true;
            }

            var signal = Volatile.Read(ref _signal);
            if (signal is null)
            {
                var created = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                signal = Interlocked.CompareExchange(ref _signal, created, null) ?? created;
            }

            // Re-check after publishing the signal: a frame appended before it would not complete it.
            if (Count > known || _finished || _released || _overflowed)
            {
                return true;
            }

            try
            {
                await signal.Task.WaitAsync(timeout, cancellationToken);
            }
            catch (TimeoutException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// A reader (a resuming client) attaches: a pending grace cancellation is called off. <see cref="ReaderAttach.Full"/>
    /// when <paramref name="maxReaders"/> clients (the first request included) read it already.
    /// </summary>
    public ReaderAttach TryAttachReader(int maxReaders = int.MaxValue)
    {
        lock (this)
        {
            if (!Resumable || Volatile.Read(ref _generation) is { IsCancellationRequested: true } && !_finished)
            {
                return ReaderAttach.Gone;
            }

            if (_readers >= maxReaders)
            {
                return ReaderAttach.Full;
            }

            _readers++;
            _graceTimer?.Dispose();
            _graceTimer = null;
            return ReaderAttach.Attached;
        }
    }

    /// <summary>The stream's id has gone out to its client (headers written): from now on it could come back.</summary>
    public void MarkAnnounced() => _announced = true;

    /// <summary>
    /// A reader left. When it was the last one and the stream is still generating, the generation is cancelled after
    /// the grace period (at once if the grace is zero, the stream cannot be resumed, or its id was never sent).
    /// </summary>
    public void DetachReader()
    {
        var cancelNow = false;
        lock (this)
        {
            if (--_readers > 0 || _finished)
            {
                return;
            }

            var grace = _registry.Grace;
            // A client that left before the headers never learnt the stream id, so it cannot resume: no grace then.
            if (!Resumable || !KeepsGeneratingWithoutReaders || grace <= TimeSpan.Zero || !_announced)
            {
                cancelNow = true;
            }
            else
            {
                _graceTimer?.Dispose();
                _graceTimer = _registry.CreateTimer(static s => ((ResumableStream)s!).CancelGeneration(), this, grace);
            }
        }

        if (cancelNow)
        {
            CancelGeneration();
        }
    }

    /// <summary>Stops the generation now (DELETE, or nobody came back in time).</summary>
    public void CancelGeneration()
    {
        try
        {
            // Null once finished: nothing to stop.
            Volatile.Read(ref _generation)?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already over.
        }
    }

    /// <summary>Drops the frames and gives their bytes back to the budget (expiry, eviction).</summary>
    internal void Release()
    {
        _released = true;
        // Only a finished stream's writer is done with its segments; a live one's go to the GC instead of the pool.
        DropFrames(reuseSegments: _finished);
        Signal();
    }

    // Called by the writer (from Append).
    private void Overflow()
    {
        _overflowed = true;
        DropFrames(reuseSegments: true);
        Signal();
    }

    private void DropFrames(bool reuseSegments)
    {
        Interlocked.Exchange(ref _bytes, 0);
        var reserved = Interlocked.Exchange(ref _reserved, 0);
        var blocks = Interlocked.Exchange(ref _frames, NoFrames);
        Volatile.Write(ref _count, 0);
        _registry.Unreserve(reserved);

        // Exactly once (release after an overflow finds nothing), and only after the flags readers check are set.
        var segments = Interlocked.Exchange(ref _segments, null);
        var count = _segmentCount;
        if (segments is null || !reuseSegments)
        {
            return;
        }

        for (var i = 0; i < count; i++)
        {
            _registry.ReturnSegment(segments[i]);
        }

        // Frame blocks like segments: a reader may still look at one, and checks the stream before using what it read.
        foreach (var block in blocks)
        {
            if (block is not null)
            {
                _registry.ReturnFrameBlock(block);
            }
        }
    }

    // Frame `index` if it is below a count read before (the count is published after the frame is written).
    private bool TryGetFrame(int index, out Frame frame)
    {
        var blocks = Volatile.Read(ref _frames);
        var b = index >> FrameBlockShift;
        if (index >= 0 && (uint)b < (uint)blocks.Length && blocks[b] is { } block)
        {
            frame = block[index & (FrameBlockSize - 1)];
            return true;
        }

        frame = default;
        return false;
    }

    private void Add(Frame frame)
    {
        var blocks = _frames;
        var count = _count;
        var b = count >> FrameBlockShift;
        if (b == blocks.Length)
        {
            // Only the directory grows; readers holding the old one still find every frame it had.
            var grown = new Frame[]?[Math.Max(4, blocks.Length * 2)];
            Array.Copy(blocks, grown, blocks.Length);
            blocks = grown!;
            Volatile.Write(ref _frames, blocks);
        }

        var block = blocks[b] ??= _registry.RentFrameBlock();
        block[count & (FrameBlockSize - 1)] = frame;
        Volatile.Write(ref _count, count + 1);
    }

    private void Signal() => Interlocked.Exchange(ref _signal, null)?.TrySetResult();
}

/// <summary>
/// One stored frame in 16 bytes and no references: the highest event id in it, where its bytes are (segment index and
/// offset, packed), their length, and when it was written (microseconds after the stream started).
/// </summary>
/// <remarks>
/// Offsets fit in 14 bits because segments are at most <see cref="StreamRegistry.MaxSegmentBytes"/> (a frame bigger
/// than a segment gets an array of its own, at offset 0), leaving 18 bits for the segment index (a stream that would
/// need more overflows, like one past its byte limit). The time saturates after ~71 minutes: frames written later
/// replay unpaced.
/// </remarks>
internal readonly struct Frame
{
    /// <summary>Segments one stream may use (the index's 18 bits).</summary>
    public const int MaxSegments = 1 << 18;

    private const int OffsetBits = 14;
    private readonly int _location;

    public Frame(int sequence, int segment, int offset, int length, uint micros)
    {
        Debug.Assert(offset < 1 << OffsetBits && (uint)segment < MaxSegments, "offset within a segment, segment within a stream");
        Sequence = sequence;
        _location = (segment << OffsetBits) | offset;
        Length = length;
        Micros = micros;
    }

    /// <summary>The highest event id in the frame.</summary>
    public int Sequence { get; }

    /// <summary>The frame's bytes.</summary>
    public int Length { get; }

    /// <summary>When it was written: microseconds after the stream started (saturating).</summary>
    public uint Micros { get; }

    public int Segment => _location >>> OffsetBits;

    public int Offset => _location & ((1 << OffsetBits) - 1);

    public static uint MicrosSince(long start, long now)
    {
        var micros = (now - start) * 1e6 / Stopwatch.Frequency;
        return micros <= 0 ? 0 : micros >= uint.MaxValue ? uint.MaxValue : (uint)micros;
    }
}

/// <summary>What <see cref="ResumableStream.TryAttachReader"/> found.</summary>
internal enum ReaderAttach
{
    /// <summary>The reader is attached (and must detach).</summary>
    Attached,

    /// <summary>The stream cannot be read any more (cancelled before it finished, or dropped from the replay buffer).</summary>
    Gone,

    /// <summary>As many clients as allowed read it already.</summary>
    Full,
}
