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
/// appending a frame) is an array store, a volatile write and one interlocked add; locks are taken only to evict.
/// </remarks>
internal sealed class StreamRegistry
{
    private readonly ConcurrentDictionary<string, ResumableStream> _streams = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<ResumableStream> _finished = new();
    private readonly Lock _evicting = new();
    private readonly TimeProvider _time;
    private readonly ClusterNode _node;
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
    }

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
        Sweep();
        var stream = new ResumableStream(this, "strm_" + Guid.CreateVersion7().ToString("N") + _node.StreamIdSuffix, format, ownerId)
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
    private static readonly Frame[] NoFrames = [];

    private const int ReserveBlockBytes = 16 * 1024;
    private long _reserved;

    /// <summary>Whether the generation continues (for the grace period) after the last reader left.</summary>
    public bool KeepsGeneratingWithoutReaders { get; set; }

    private readonly StreamRegistry _registry;
    private readonly CancellationTokenSource _generation;
    private readonly Lock _readersLock = new();
    private Frame[] _frames = new Frame[64];
    private int _count;
    private long _bytes;
    private volatile bool _finished;
    private volatile bool _overflowed;
    private volatile bool _released;
    private volatile bool _announced;
    private TaskCompletionSource? _signal;
    private int _readers = 1;
    private ITimer? _graceTimer;

    internal ResumableStream(StreamRegistry registry, string id, IStreamFormat format, string ownerId)
    {
        _registry = registry;
        Id = id;
        Format = format;
        OwnerId = ownerId;
        var ping = new System.Buffers.ArrayBufferWriter<byte>(16);
        format.WritePing(ping);
        PingFrame = ping.WrittenMemory;
        StartTimestamp = Stopwatch.GetTimestamp();
        _generation = new CancellationTokenSource();
    }

    public string Id { get; }

    /// <summary>The stream's wire format (its error frame ends a replay that cannot go on).</summary>
    public IStreamFormat Format { get; }

    public string ContentType => Format.ContentType;

    /// <summary>Who may resume, replay or cancel it: a team id, or the operator.</summary>
    public string OwnerId { get; }

    public ReadOnlyMemory<byte> PingFrame { get; }

    /// <summary>The id of the last frame written (0 before the first).</summary>
    public long LastSequence
    {
        get
        {
            var count = Count;
            return count == 0 ? 0 : Volatile.Read(ref _frames)[count - 1].Sequence;
        }
    }

    public long StartTimestamp { get; }

    /// <summary>Cancelled when nobody is reading any more (after the grace period) or on DELETE (the relay adds the shutdown deadline).</summary>
    public CancellationToken Generation => _generation.Token;

    public bool Finished => _finished;

    /// <summary>The stream outgrew its buffer: it runs on for its original client but cannot be resumed.</summary>
    public bool Overflowed => _overflowed;

    public bool Released => _released;

    public bool Resumable => !_overflowed && !_released;

    internal long FinishedTimestamp { get; private set; }

    /// <summary>Frames written so far (safe to read from any thread together with <see cref="TryGetFrame"/>).</summary>
    public int Count => Volatile.Read(ref _count);

    public bool TryGetFrame(int index, out Frame frame)
    {
        var frames = Volatile.Read(ref _frames);
        if ((uint)index < (uint)frames.Length && !_overflowed && !_released)
        {
            frame = frames[index];
            return !frame.Bytes.IsEmpty;
        }

        frame = default;
        return false;
    }

    /// <summary>The index of the first frame whose id is above <paramref name="after"/>.</summary>
    public int IndexAfter(long after)
    {
        var count = Count;
        var frames = Volatile.Read(ref _frames);
        int lo = 0, hi = count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (frames[mid].Sequence <= after)
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
    public void Append(ReadOnlySpan<byte> bytes, long lastSequence, int frameCount)
    {
        if (_overflowed || _released || bytes.IsEmpty)
        {
            return;
        }

        if (_bytes + bytes.Length > _registry.Options.MaxStreamBufferBytes)
        {
            Overflow();
            return;
        }

        // The shared budget is taken in blocks: one interlocked update per 16 KiB, not one per frame from every stream.
        if (_bytes + bytes.Length > Volatile.Read(ref _reserved))
        {
            var block = Math.Max(bytes.Length, (int)Math.Min(ReserveBlockBytes, _registry.Options.ReplayBudgetBytes / 16));
            if (!_registry.TryReserve(block))
            {
                Overflow();
                return;
            }

            Interlocked.Add(ref _reserved, block);
        }

        _bytes += bytes.Length;
        var now = Stopwatch.GetTimestamp();
        var sequence = lastSequence - frameCount + 1;

        // One copy per call (a whole upstream read's frames), which the frames share as slices.
        ReadOnlyMemory<byte> copy = bytes.ToArray();
        while (frameCount > 1)
        {
            var end = copy.Span.IndexOf("\n\n"u8);
            if (end < 0 || end + 2 >= copy.Length)
            {
                break;
            }

            Add(new Frame(sequence++, copy[..(end + 2)], now));
            copy = copy[(end + 2)..];
            frameCount--;
        }

        Add(new Frame(lastSequence, copy, now));
        Signal();
    }

    /// <summary>Marks the end of the stream: followers finish, the replay time to live starts.</summary>
    public void Complete()
    {
        if (_finished)
        {
            return;
        }

        lock (_readersLock)
        {
            _graceTimer?.Dispose();
            _graceTimer = null;
        }

        FinishedTimestamp = _registry.Now;
        _finished = true;
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

    /// <summary>A reader (a resuming client) attaches: a pending grace cancellation is called off.</summary>
    public bool TryAttachReader()
    {
        lock (_readersLock)
        {
            if (!Resumable || _generation.IsCancellationRequested && !_finished)
            {
                return false;
            }

            _readers++;
            _graceTimer?.Dispose();
            _graceTimer = null;
            return true;
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
        lock (_readersLock)
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
            _generation.Cancel();
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
        DropFrames();
        Signal();
    }

    private void Overflow()
    {
        _overflowed = true;
        DropFrames();
        Signal();
    }

    private void DropFrames()
    {
        Interlocked.Exchange(ref _bytes, 0);
        var reserved = Interlocked.Exchange(ref _reserved, 0);
        Volatile.Write(ref _frames, NoFrames);
        Volatile.Write(ref _count, 0);
        _registry.Unreserve(reserved);
    }

    private void Add(Frame frame)
    {
        var frames = _frames;
        var count = _count;
        if (count == frames.Length)
        {
            // Readers may hold the old array: it stays valid for the frames it has; the new one is published first.
            var grown = new Frame[frames.Length * 2];
            Array.Copy(frames, grown, count);
            Volatile.Write(ref _frames, grown);
            frames = grown;
        }

        frames[count] = frame;
        Volatile.Write(ref _count, count + 1);
    }

    private void Signal() => Interlocked.Exchange(ref _signal, null)?.TrySetResult();
}

/// <summary>One stored frame: its bytes, the highest event id in it, and when it was written.</summary>
internal readonly record struct Frame(long Sequence, ReadOnlyMemory<byte> Bytes, long Timestamp);
