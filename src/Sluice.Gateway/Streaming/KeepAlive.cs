namespace Sluice.Gateway.Streaming;

/// <summary>
/// Owns a stream's response writer: the relay and the keep-alive ping take turns through a lock-free gate, and one
/// timer per stream sends a ping when the stream has been silent for the ping interval.
/// </summary>
/// <remarks>
/// Why not a timeout on each wait: a timed wait allocates a task and registers a timer for every chunk the relay
/// waits for, which costs more than forwarding the chunk. Here the per-chunk cost is two interlocked operations;
/// the timer is created once per stream and re-armed only when it fires. Frames stay whole: a ping is written only
/// while the relay does not hold the gate, i.e. between events.
/// </remarks>
internal sealed class KeepAlive : IAsyncDisposable
{
    private const int Idle = 0;
    private const int Relaying = 1;
    private const int Pinging = 2;

    // The stream itself, not three delegates to its methods: those were three objects per stream.
    private readonly IPingTarget _target;
    private readonly TimeSpan _interval;
    private readonly TimeProvider _time;
    private ITimer? _timer;
    private Task _ping = Task.CompletedTask;
    private long _lastWrite;
    private int _state = Relaying;
    private volatile bool _stopped;

    public KeepAlive(IPingTarget target, TimeSpan interval, TimeProvider time)
    {
        _time = time;
        _lastWrite = time.GetTimestamp();
        _target = target;
        _interval = interval;
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
        Volatile.Write(ref _lastWrite, _time.GetTimestamp());
        if (_timer is null && !_stopped)
        {
            _timer = _time.CreateTimer(static state => ((KeepAlive)state!).OnTimer(), this, _interval, Timeout.InfiniteTimeSpan);
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
        if (_timer is { } timer)
        {
            await timer.DisposeAsync();
        }

        if (Volatile.Read(ref _state) != Relaying)
        {
            await AcquireAsync();
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => StopAsync();

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

    private void OnTimer()
    {
        if (_stopped)
        {
            return;
        }

        var silence = _time.GetElapsedTime(Volatile.Read(ref _lastWrite));
        var next = _interval;
        if (silence < _interval)
        {
            next = _interval - silence;
        }
        else if (Interlocked.CompareExchange(ref _state, Pinging, Idle) == Idle)
        {
            Volatile.Write(ref _ping, PingAsync());
        }

        try
        {
            _timer?.Change(next, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // Stopped meanwhile.
        }
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
