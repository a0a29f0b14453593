namespace Sluice.Providers.Timing;

/// <summary>
/// Something with a deadline that a <see cref="DeadlineSweep"/> checks: an upstream call's time limits, a stream's
/// keep-alive. Subclass it; the links the sweep needs live in the object itself, so scheduling allocates nothing.
/// </summary>
public abstract class SweepEntry
{
    internal const int New = 0;
    internal const int Queued = 1;
    internal const int InWheel = 2;
    internal const int Cancelled = 3;
    internal const int Done = 4;

    // Written by any thread through Interlocked: New → Queued (scheduled) → InWheel (placed by the sweep) → Done (it
    // said so), or → Cancelled from Queued or InWheel.
    internal int State;

    // Lock-free inboxes, one link each: an entry may sit in both at once (scheduled and cancelled within one tick).
    internal SweepEntry? NextAdded;
    internal SweepEntry? NextCancelled;

    // The wheel's doubly linked buckets: touched by the sweep's tick only.
    internal SweepEntry? Prev;
    internal SweepEntry? Next;
    internal long Due;
    internal long Bucket = -1;

    /// <summary>
    /// The deadline passed. Runs on the sweep's tick, one entry after another, so it must be short and must not block
    /// (queue anything longer to the thread pool). May run once more concurrently with or just after
    /// <see cref="DeadlineSweep.Cancel"/>: check your own state.
    /// </summary>
    /// <param name="now">The sweep clock's timestamp (<see cref="TimeProvider.GetTimestamp"/>).</param>
    /// <returns>The next deadline as a timestamp of the same clock, or <see cref="long.MaxValue"/> to leave the sweep.</returns>
    protected internal abstract long OnDue(long now);
}

/// <summary>
/// One timer for many deadlines: a hashed timing wheel whose buckets are owned by a single tick, fed through two
/// lock-free inboxes. Scheduling and cancelling an entry are one compare-and-swap each — no lock, no allocation —
/// where a <see cref="Timer"/> per entry takes the timer queue's lock on create, change and dispose and allocates
/// three objects (one of them finalizable). Deadlines fire at most one <see cref="Resolution"/> (plus the timer's own
/// lateness) after they pass, never before.
/// </summary>
/// <remarks>
/// <para>
/// Entries whose deadline moves later (an idle limit reset by every event, a ping interval reset by every write) do
/// not reschedule themselves: they keep a timestamp, and when the old deadline comes <see cref="SweepEntry.OnDue"/>
/// answers the new one. A deadline never moves earlier than the one the entry last gave, so nothing fires late.
/// </para>
/// <para>Each tick, in order:</para>
/// <list type="number">
/// <item>Take the whole add inbox (one exchange) and place each still-queued entry in the bucket of its deadline —
/// at the earliest the next tick's, at the latest one revolution ahead (an entry due later is looked at once per
/// revolution and placed again).</item>
/// <item>Take the whole cancel inbox and unlink those entries from their buckets, so a cancelled entry is held at
/// most one tick.</item>
/// <item>For every tick number from the last processed one up to now (a late timer catches up), detach that bucket
/// and, for each entry still in the wheel: place it again if its deadline is still ahead, else call
/// <see cref="SweepEntry.OnDue"/> and place it at the deadline it answers, or drop it.</item>
/// <item>Re-arm the one-shot timer for the next bucket boundary while the wheel holds entries; when it is empty, stop — and
/// re-check the add inbox after stopping, because a concurrent schedule saw the sweep running and did not arm it.</item>
/// </list>
/// </remarks>
public sealed class DeadlineSweep : IDisposable
{
    private const int WheelSize = 4096;
    private const int Mask = WheelSize - 1;

    private readonly TimeProvider _time;
    private readonly long _resolutionTicks;
    private readonly SweepEntry?[] _buckets = new SweepEntry?[WheelSize];
    private readonly ITimer _timer;
    private readonly TimeSpan _resolution;
    private SweepEntry? _added;
    private SweepEntry? _cancelled;
    private int _armed;
    private long _lastTick = -1;
    private int _count;
    private bool _disposed;

    /// <summary>A sweep on <paramref name="time"/> whose ticks are <paramref name="resolution"/> apart.</summary>
    public DeadlineSweep(TimeProvider time, TimeSpan resolution)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThan(resolution, TimeSpan.FromMilliseconds(1));
        _time = time;
        _resolution = resolution;
        _resolutionTicks = Math.Max(1, (long)(resolution.TotalSeconds * time.TimestampFrequency));
        _timer = time.CreateTimer(static s => ((DeadlineSweep)s!).Tick(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The process-wide sweep on the system clock, ticking every 20 ms.</summary>
    public static DeadlineSweep System { get; } = new(TimeProvider.System, TimeSpan.FromMilliseconds(20));

    /// <summary>The clock deadlines are timestamps of.</summary>
    public TimeProvider Time => _time;

    /// <summary>How far apart the ticks are: the most a deadline fires late, besides the timer's own lateness.</summary>
    public TimeSpan Resolution => _resolution;

    /// <summary>Entries in the wheel as of the last tick (for tests and diagnostics).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary><see cref="System"/> for the system clock, otherwise a new sweep on <paramref name="time"/>.</summary>
    public static DeadlineSweep For(TimeProvider time) =>
        ReferenceEquals(time, TimeProvider.System) ? System : new DeadlineSweep(time, TimeSpan.FromMilliseconds(20));

    /// <summary>Starts watching <paramref name="entry"/>: its <see cref="SweepEntry.OnDue"/> runs once <paramref name="due"/> (a timestamp of <see cref="Time"/>) has passed.</summary>
    /// <exception cref="InvalidOperationException">The entry was scheduled before (an entry is scheduled once).</exception>
    public void Schedule(SweepEntry entry, long due)
    {
        ArgumentNullException.ThrowIfNull(entry);
        entry.Due = due;
        if (Interlocked.CompareExchange(ref entry.State, SweepEntry.Queued, SweepEntry.New) != SweepEntry.New)
        {
            throw new InvalidOperationException("This entry was scheduled before; a sweep entry is scheduled once and answers later deadlines from OnDue.");
        }

        Push(ref _added, entry, ref entry.NextAdded);
        if (Volatile.Read(ref _armed) == 0 && Interlocked.CompareExchange(ref _armed, 1, 0) == 0)
        {
            Arm(_time.GetTimestamp());
        }
    }

    /// <summary>Stops watching <paramref name="entry"/> (idempotent; nothing happens for an entry never scheduled).</summary>
    public void Cancel(SweepEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var state = Volatile.Read(ref entry.State);
        while (state is SweepEntry.Queued or SweepEntry.InWheel)
        {
            var seen = Interlocked.CompareExchange(ref entry.State, SweepEntry.Cancelled, state);
            if (seen == state)
            {
                // Unlinked by the next tick; an entry that never reached the wheel is simply skipped there.
                Push(ref _cancelled, entry, ref entry.NextCancelled);
                return;
            }

            state = seen;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _disposed = true;
        _timer.Dispose();
    }

    /// <summary>Pushes <paramref name="entry"/> onto an inbox through its own <paramref name="link"/> field.</summary>
    private static void Push(ref SweepEntry? head, SweepEntry entry, ref SweepEntry? link)
    {
        var current = Volatile.Read(ref head);
        while (true)
        {
            link = current;
            var seen = Interlocked.CompareExchange(ref head, entry, current);
            if (ReferenceEquals(seen, current))
            {
                return;
            }

            current = seen;
        }
    }

    private void Arm(long now)
    {
        if (_disposed)
        {
            return;
        }

        // To the next bucket boundary, rounded up: ticks aligned with buckets make a deadline at most one resolution
        // late, where a plain period would drift and let it be nearly two.
        var wait = (((now / _resolutionTicks) + 1) * _resolutionTicks) - now;
        var frequency = _time.TimestampFrequency;
        _timer.Change(TimeSpan.FromTicks(((wait * TimeSpan.TicksPerSecond) + frequency - 1) / frequency), Timeout.InfiniteTimeSpan);
    }

    private void Tick()
    {
        var now = _time.GetTimestamp();
        var nowTick = now / _resolutionTicks;
        if (_count == 0 || _lastTick < 0)
        {
            // Started from empty: nothing is owed to earlier ticks.
            _lastTick = nowTick - 1;
        }
        else if (nowTick - _lastTick > WheelSize)
        {
            // The timer stalled for a whole revolution: every bucket once.
            _lastTick = nowTick - WheelSize;
        }

        // 1. New entries into their buckets.
        for (var entry = Interlocked.Exchange(ref _added, null); entry is not null;)
        {
            var next = entry.NextAdded;
            entry.NextAdded = null;
            if (Interlocked.CompareExchange(ref entry.State, SweepEntry.InWheel, SweepEntry.Queued) == SweepEntry.Queued)
            {
                Place(entry);
                _count++;
            }

            entry = next;
        }

        // 2. Cancelled entries out of theirs.
        for (var entry = Interlocked.Exchange(ref _cancelled, null); entry is not null;)
        {
            var next = entry.NextCancelled;
            entry.NextCancelled = null;
            if (entry.Bucket >= 0)
            {
                Unlink(entry);
                _count--;
            }

            entry = next;
        }

        // 3. Every tick up to now: due entries answer their next deadline or leave.
        for (var tick = _lastTick + 1; tick <= nowTick; tick++)
        {
            _lastTick = tick;
            var entry = _buckets[tick & Mask];
            _buckets[tick & Mask] = null;
            while (entry is not null)
            {
                var next = entry.Next;
                entry.Prev = entry.Next = null;
                entry.Bucket = -1;
                Fire(entry, now);
                entry = next;
            }
        }

        Volatile.Write(ref _count, _count);

        // 4. Next tick while anything is watched; otherwise stop, unless a schedule raced with stopping.
        if (_count > 0)
        {
            Arm(_time.GetTimestamp());
            return;
        }

        Interlocked.Exchange(ref _armed, 0);
        if (Volatile.Read(ref _added) is not null && Interlocked.CompareExchange(ref _armed, 1, 0) == 0)
        {
            Arm(_time.GetTimestamp());
        }
    }

    private void Fire(SweepEntry entry, long now)
    {
        if (Volatile.Read(ref entry.State) != SweepEntry.InWheel)
        {
            // Cancelled after its tick began: step 2 of the next tick finds it out of the wheel.
            _count--;
            return;
        }

        if (entry.Due > now)
        {
            // Placed a revolution ahead of a far deadline: look again later.
            Place(entry);
            return;
        }

        long next;
        try
        {
            next = entry.OnDue(now);
        }
#pragma warning disable CA1031 // One entry's failure must not stop every other deadline in the process.
        catch (Exception)
#pragma warning restore CA1031
        {
            next = long.MaxValue;
        }

        if (next == long.MaxValue)
        {
            Interlocked.CompareExchange(ref entry.State, SweepEntry.Done, SweepEntry.InWheel);
            _count--;
            return;
        }

        entry.Due = next;
        Place(entry);
    }

    private void Place(SweepEntry entry)
    {
        // Ceiling: a bucket is processed once its whole interval has passed, so nothing fires early.
        var tick = entry.Due <= 0 ? 0 : ((entry.Due - 1) / _resolutionTicks) + 1;
        tick = Math.Clamp(tick, _lastTick + 1, _lastTick + WheelSize);
        var index = tick & Mask;
        var head = _buckets[index];
        entry.Prev = null;
        entry.Next = head;
        if (head is not null)
        {
            head.Prev = entry;
        }

        _buckets[index] = entry;
        entry.Bucket = index;
    }

    private void Unlink(SweepEntry entry)
    {
        if (entry.Prev is { } prev)
        {
            prev.Next = entry.Next;
        }
        else
        {
            _buckets[entry.Bucket] = entry.Next;
        }

        if (entry.Next is { } next)
        {
            next.Prev = entry.Prev;
        }

        entry.Prev = entry.Next = null;
        entry.Bucket = -1;
    }
}
