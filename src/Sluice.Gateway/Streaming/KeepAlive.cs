using Sluice.Providers.Timing;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// Owns a stream's response writer: the relay and the keep-alive ping take turns through a lock-free gate, and the
/// shared <see cref="DeadlineSweep"/> sends a ping when the stream has been silent for the ping interval.
/// </summary>
/// <remarks>
/// Why not a timeout on each wait: a timed wait allocates a task and registers a timer for every chunk the relay
/// waits for, which costs more than forwarding the chunk. Why not a timer per stream: creating and disposing one takes
/// the timer queue's lock and allocates three objects per stream. Here the per-chunk cost is two interlocked
/// operations and a timestamp; the stream is scheduled once, and when its deadline comes it either answers a later one
/// (it wrote meanwhile) or queues a ping to the thread pool. Frames stay whole: a ping is written only while the relay
/// does not hold the gate, i.e. between events.
/// </remarks>
internal sealed class KeepAlive : SweepEntry, IAsyncDisposable, IThreadPoolWorkItem
{
    private const int Idle = 0;
    private const int Relaying = 1;
    private const int Pinging = 2;

    // The stream itself, not three delegates to its methods: those were three objects per stream.
    private readonly IPingTarget _target;
    private readonly long _intervalTicks;
    private readonly DeadlineSweep _sweep;
    private readonly TimeProvider _time;
    private Task _ping = Task.CompletedTask;
    private long _lastWrite;
    private int _state = Relaying;
    private bool _scheduled;
    private volatile bool _stopped;

    public KeepAlive(IPingTarget target, TimeSpan interval, DeadlineSweep sweep)
    {
        _sweep = sweep;
        _time = sweep.Time;
        _lastWrite = _time.GetTimestamp();
        _target = target;
        _intervalTicks = Math.Max(1, (long)(interval.TotalSeconds * _time.TimestampFrequency));
    }

    public bool Started { get; private set; }

    /// <summary>Starts the response if nobody has yet. Call while holding the gate.</summary>
    public void EnsureStarted()
    {
        if (!Started)
        {
            Started = true;
            _target.StartResponse();
        }
    }

    /// <summary>Lets pings go out while the relay waits for the backend. Call while holding the gate.</summary>
    public void Release()
    {
        var now = _time.GetTimestamp();
        Volatile.Write(ref _lastWrite, now);
        if (!_scheduled && !_stopped)
        {
            _scheduled = true;
            _sweep.Schedule(this, now + _intervalTicks);
        }

        Volatile.Write(ref _state, Idle);
    }

    /// <summary>Takes the gate back for the relay, waiting for a ping being written.</summary>
    public ValueTask AcquireAsync() =>
        Interlocked.CompareExchange(ref _state, Relaying, Idle) == Idle ? ValueTask.CompletedTask : AcquireSlowAsync();

    /// <summary>Stops pinging and takes the gate for good (for the final frames).</summary>
    public async ValueTask StopAsync()
    {
        _stopped = true;
        _sweep.Cancel(this);
        if (Volatile.Read(ref _state) != Relaying)
        {
            await AcquireAsync();
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => StopAsync();

    /// <summary>Runs a ping the sweep queued (the gate is already taken for it).</summary>
    void IThreadPoolWorkItem.Execute() => Volatile.Write(ref _ping, PingAsync());

    private async ValueTask AcquireSlowAsync()
    {
        while (Interlocked.CompareExchange(ref _state, Relaying, Idle) != Idle)
        {
            var ping = Volatile.Read(ref _ping);
            if (ping.IsCompleted)
            {
                // The timer owns the gate but has not published its task yet: a moment's wait.
                await Task.Yield();
            }
            else
            {
                await ping.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <inheritdoc />
    protected override long OnDue(long now)
    {
        if (_stopped)
        {
            return long.MaxValue;
        }

        var lastWrite = Volatile.Read(ref _lastWrite);
        if (now - lastWrite < _intervalTicks)
        {
            // Written meanwhile: the silence starts over from that write.
            return lastWrite + _intervalTicks;
        }

        if (Interlocked.CompareExchange(ref _state, Pinging, Idle) == Idle)
        {
            // Not on the sweep's tick: a flush to a slow client may take a while, and the tick serves every stream.
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }

        return now + _intervalTicks;
    }

    private async Task PingAsync()
    {
        try
        {
            EnsureStarted();
            _target.WritePing();
            await _target.FlushForPingAsync();
        }
#pragma warning disable CA1031 // A failed ping means the client left; the relay sees that through its own cancellation.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
        finally
        {
            Volatile.Write(ref _lastWrite, _time.GetTimestamp());
            Volatile.Write(ref _state, Idle);
        }
    }
}

/// <summary>What a <see cref="KeepAlive"/> pings: the stream's response.</summary>
internal interface IPingTarget
{
    /// <summary>Writes the response's start (headers, opening frame) if nothing was written yet; called once.</summary>
    void StartResponse();

    /// <summary>Writes one keep-alive frame.</summary>
    void WritePing();

    /// <summary>Sends what was written.</summary>
    ValueTask FlushForPingAsync();
}
