using System.Diagnostics;

namespace Sluice.Cli.Bench;

/// <summary>How the mock upstream times its paced chunks.</summary>
public enum MockPacing
{
    /// <summary>
    /// Every chunk is due at its own time (first chunk + n × the chunk delay), woken by one pacing thread within
    /// about a millisecond: many streams' chunks arrive spread out, as independent upstream streams do.
    /// </summary>
    Precise,

    /// <summary>
    /// <c>Task.Delay</c> between chunks (the mock before the twentieth session). .NET's timers run on the kernel's coarse
    /// clock (4 ms ticks at <c>HZ=250</c>), so with thousands of streams their chunks leave in bursts of hundreds every
    /// few milliseconds: a stress pattern, not the arrival of independent streams.
    /// </summary>
    Timer,
}

/// <summary>
/// Wakes waiters at their due times with ~1 ms precision from one thread. <c>Task.Delay</c> cannot: its timers are
/// checked against <see cref="Environment.TickCount64"/>, which on Linux reads the coarse clock, so every timer due
/// within one kernel tick (and more when the timer thread is late) fires together.
/// </summary>
/// <remarks>
/// The loop, in order: (1) take every entry whose due time has passed from the heap (under its lock — a benchmark
/// tool's lock, not the gateway's hot path); (2) complete them outside the lock (continuations run on the thread
/// pool, never on the pacing thread); (3) sleep 1 ms, or until a new earliest entry or <see cref="Dispose"/> wakes it; with
/// nothing queued, wait without a timeout. A chunk is thus at most ~1 ms late on an idle machine.
/// </remarks>
public sealed class ChunkPacer : IDisposable
{
    private readonly PriorityQueue<TaskCompletionSource, long> _due = new();
    private readonly Lock _lock = new();
    private readonly AutoResetEvent _wake = new(false);
    private readonly Thread _thread;
    private readonly TimeProvider _time;
    private volatile bool _disposed;

    /// <summary>Starts the pacing thread.</summary>
    /// <param name="time">The clock due times are read from (tests inject one); the system clock by default.</param>
    public ChunkPacer(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _thread = new Thread(Run) { IsBackground = true, Name = "Mock pacer" };
        _thread.Start();
    }

    /// <summary>Now, on the pacer's clock (a <see cref="TimeProvider.GetTimestamp"/> value).</summary>
    public long Now => _time.GetTimestamp();

    /// <summary>The timestamp <paramref name="milliseconds"/> after <paramref name="from"/>.</summary>
    public long After(long from, double milliseconds) => from + (long)(milliseconds * _time.TimestampFrequency / 1000.0);

    /// <summary>Completes when the pacer's clock reaches <paramref name="dueTimestamp"/> (at once if it has).</summary>
    /// <exception cref="ObjectDisposedException">The pacer was disposed.</exception>
    public Task WaitUntilAsync(long dueTimestamp, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (dueTimestamp - _time.GetTimestamp() <= 0)
        {
            return Task.CompletedTask;
        }

        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        bool earliest;
        lock (_lock)
        {
            earliest = !_due.TryPeek(out _, out var first) || dueTimestamp < first;
            _due.Enqueue(waiter, dueTimestamp);
        }

        if (earliest)
        {
            _wake.Set();
        }

        return cancellationToken.CanBeCanceled ? waiter.Task.WaitAsync(cancellationToken) : waiter.Task;
    }

    /// <summary>Stops the pacing thread; waiters still queued fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _wake.Set();
        _thread.Join();
        _wake.Dispose();
    }

    private void Run()
    {
        var ready = new List<TaskCompletionSource>();
        while (!_disposed)
        {
            // 1. Everything due now.
            var now = _time.GetTimestamp();
            long next = long.MaxValue;
            lock (_lock)
            {
                while (_due.TryPeek(out var waiter, out var due))
                {
                    if (due - now > 0)
                    {
                        next = due;
                        break;
                    }

                    _due.Dequeue();
                    ready.Add(waiter);
                }
            }

            // 2. Completed outside the lock; their continuations go to the thread pool.
            foreach (var waiter in ready)
            {
                waiter.TrySetResult();
            }

            ready.Clear();

            // 3. Sleep: until woken when nothing is queued, else 1 ms (a kernel sleep of 1 ms is ~1.05 ms; sleeping
            // less would spin, since at thousands of paced streams something is always due within the next ms).
            if (next == long.MaxValue)
            {
                _wake.WaitOne();
            }
            else
            {
                _wake.WaitOne(1);
            }
        }

        lock (_lock)
        {
            while (_due.TryDequeue(out var waiter, out _))
            {
                waiter.TrySetException(new ObjectDisposedException(nameof(ChunkPacer)));
            }
        }
    }
}
