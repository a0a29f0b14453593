using System.Collections.Concurrent;
using Microsoft.Extensions.Time.Testing;
using Sluice.Providers.Timing;

namespace Sluice.Providers.Tests.Timing;

/// <summary>The shared timing wheel on a fake clock (and once on the real one, under concurrent use).</summary>
public sealed class DeadlineSweepTests
{
    private static readonly TimeSpan Resolution = TimeSpan.FromMilliseconds(20);

    [Fact]
    public void A_deadline_fires_once_after_it_passes_never_before_and_within_a_tick()
    {
        var time = new CountingTime();
        var sweep = new DeadlineSweep(time, Resolution);
        var entry = new Probe(time);
        var due = time.GetTimestamp() + Ms(time, 100);
        sweep.Schedule(entry, due);

        Step(time, 99, stepMs: 7);
        Assert.Empty(entry.Fired);

        Step(time, 30, stepMs: 7);
        var fired = Assert.Single(entry.Fired);
        Assert.InRange(fired - due, 0, Ms(time, 20 + 7));
        Step(time, 500, stepMs: 7);
        Assert.Single(entry.Fired);
        Assert.Equal(0, sweep.Count);
    }

    [Fact]
    public void An_entry_answering_a_later_deadline_fires_again_then()
    {
        var time = new FakeTimeProvider();
        var sweep = new DeadlineSweep(time, Resolution);
        var start = time.GetTimestamp();
        var entry = new Probe(time) { Answers = [start + Ms(time, 300), start + Ms(time, 1_000)] };
        sweep.Schedule(entry, start + Ms(time, 50));

        Step(time, 1_200, stepMs: 5);
        Assert.Equal(3, entry.Fired.Count);
        Assert.InRange(entry.Fired[0] - start, Ms(time, 50), Ms(time, 75));
        Assert.InRange(entry.Fired[1] - start, Ms(time, 300), Ms(time, 325));
        Assert.InRange(entry.Fired[2] - start, Ms(time, 1_000), Ms(time, 1_025));
    }

    [Fact]
    public void A_cancelled_entry_never_fires_and_leaves_the_wheel_within_a_tick()
    {
        var time = new FakeTimeProvider();
        var sweep = new DeadlineSweep(time, Resolution);
        var kept = new Probe(time);
        var cancelled = new Probe(time);
        var cancelledAtOnce = new Probe(time);
        sweep.Schedule(kept, time.GetTimestamp() + Ms(time, 10_000));
        sweep.Schedule(cancelled, time.GetTimestamp() + Ms(time, 200));
        sweep.Schedule(cancelledAtOnce, time.GetTimestamp() + Ms(time, 100));
        sweep.Cancel(cancelledAtOnce);
        Step(time, 40, stepMs: 20);
        Assert.Equal(2, sweep.Count);

        sweep.Cancel(cancelled);
        sweep.Cancel(cancelled);
        Step(time, 20, stepMs: 20);
        Assert.Equal(1, sweep.Count);
        Step(time, 1_000, stepMs: 20);
        Assert.Empty(cancelled.Fired);
        Assert.Empty(cancelledAtOnce.Fired);
        Assert.Empty(kept.Fired);

        // Cancelling an entry never scheduled does nothing; scheduling one twice is refused.
        sweep.Cancel(new Probe(time));
        Assert.Throws<InvalidOperationException>(() => sweep.Schedule(kept, 0));
    }

    [Fact]
    public void Deadlines_beyond_one_revolution_and_already_past_fire_at_their_time()
    {
        var time = new FakeTimeProvider();
        var sweep = new DeadlineSweep(time, Resolution);
        var start = time.GetTimestamp();
        var far = new Probe(time);
        var past = new Probe(time);
        sweep.Schedule(far, start + Ms(time, 300_000));
        sweep.Schedule(past, start - Ms(time, 5_000));

        Step(time, 25, stepMs: 5);
        Assert.Single(past.Fired);

        // The wheel spans 4,096 ticks (~82 s here): the far entry is looked at on the way and placed again.
        Step(time, 299_900, stepMs: 100);
        Assert.Empty(far.Fired);
        Step(time, 200, stepMs: 10);
        var fired = Assert.Single(far.Fired);
        Assert.InRange(fired - start, Ms(time, 300_000), Ms(time, 300_030));
    }

    [Fact]
    public void A_thousand_deadlines_each_fire_in_their_own_tick_and_a_late_timer_catches_up()
    {
        var time = new FakeTimeProvider();
        var sweep = new DeadlineSweep(time, Resolution);
        var random = new Random(7);
        var start = time.GetTimestamp();
        var entries = Enumerable.Range(0, 1_000).Select(_ => (Due: start + Ms(time, random.Next(1, 10_000)), Probe: new Probe(time))).ToList();
        foreach (var (due, probe) in entries)
        {
            sweep.Schedule(probe, due);
        }

        Step(time, 5_000, stepMs: 3);

        // One jump far past a tick: everything due meanwhile fires at once, nothing not yet due.
        time.Advance(TimeSpan.FromMilliseconds(1_000));
        var now = time.GetTimestamp();
        foreach (var (due, probe) in entries)
        {
            if (due > now)
            {
                Assert.Empty(probe.Fired);
                continue;
            }

            var fired = Assert.Single(probe.Fired);
            Assert.True(fired >= due, "fired early");
            if (due <= start + Ms(time, 4_970))
            {
                // Ticks at bucket boundaries: at most one resolution late, plus this test's 3 ms steps.
                Assert.True(fired - due <= Ms(time, 23), $"fired {(fired - due) * 1000.0 / time.TimestampFrequency} ms late");
            }
        }

        Step(time, 5_000, stepMs: 11);
        Assert.All(entries, e => Assert.Single(e.Probe.Fired));
        Assert.Equal(0, sweep.Count);
    }

    [Fact]
    public void An_empty_sweep_stops_its_timer_and_starts_again_for_a_new_entry()
    {
        var time = new CountingTime();
        var sweep = new DeadlineSweep(time, Resolution);
        var first = new Probe(time);
        sweep.Schedule(first, time.GetTimestamp() + Ms(time, 50));
        Step(time, 200, stepMs: 20);
        Assert.Single(first.Fired);

        var changes = time.Changes;
        Step(time, 10_000, stepMs: 20);
        Assert.Equal(changes, time.Changes);

        var second = new Probe(time);
        sweep.Schedule(second, time.GetTimestamp() + Ms(time, 50));
        Step(time, 100, stepMs: 20);
        Assert.Single(second.Fired);
    }

    [Fact]
    public void An_entry_that_throws_is_dropped_and_the_others_still_fire()
    {
        var time = new FakeTimeProvider();
        var sweep = new DeadlineSweep(time, Resolution);
        var thrower = new Probe(time) { Throw = true };
        var other = new Probe(time);
        sweep.Schedule(thrower, time.GetTimestamp() + Ms(time, 40));
        sweep.Schedule(other, time.GetTimestamp() + Ms(time, 40));
        Step(time, 100, stepMs: 20);
        Assert.Single(thrower.Fired);
        Assert.Single(other.Fired);
        Assert.Equal(0, sweep.Count);
    }

    [Fact]
    public async Task Concurrent_schedules_and_cancels_on_the_real_clock_fire_exactly_the_kept_entries_once()
    {
        using var sweep = new DeadlineSweep(TimeProvider.System, TimeSpan.FromMilliseconds(5));
        var time = TimeProvider.System;
        var kept = new ConcurrentBag<Probe>();
        var cancelled = new ConcurrentBag<Probe>();
        await Task.WhenAll(Enumerable.Range(0, 4).Select(worker => Task.Run(() =>
        {
            var random = new Random(worker);
            for (var i = 0; i < 5_000; i++)
            {
                var probe = new Probe(time);
                if (random.Next(2) == 0)
                {
                    sweep.Schedule(probe, time.GetTimestamp() + Ms(time, random.Next(0, 60)));
                    kept.Add(probe);
                }
                else
                {
                    // Far enough ahead that it cannot have fired before the cancel.
                    sweep.Schedule(probe, time.GetTimestamp() + Ms(time, 5_000));
                    sweep.Cancel(probe);
                    cancelled.Add(probe);
                }
            }
        })));

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((kept.Any(p => p.Fired.Count == 0) || sweep.Count != 0) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.All(kept, p => Assert.Single(p.Fired));
        Assert.All(cancelled, p => Assert.Empty(p.Fired));
        Assert.Equal(0, sweep.Count);
    }

    private static long Ms(TimeProvider time, long ms) => ms * time.TimestampFrequency / 1000;

    private static void Step(FakeTimeProvider time, int totalMs, int stepMs)
    {
        for (var elapsed = 0; elapsed < totalMs; elapsed += stepMs)
        {
            time.Advance(TimeSpan.FromMilliseconds(Math.Min(stepMs, totalMs - elapsed)));
        }
    }

    private sealed class Probe(TimeProvider time) : SweepEntry
    {
        private int _answered;

        public List<long> Fired { get; } = [];

        public long[] Answers { get; init; } = [];

        public bool Throw { get; init; }

        protected internal override long OnDue(long now)
        {
            if (time is FakeTimeProvider)
            {
                // A failed assertion here throws into the sweep, which drops the entry: the test sees it unfired.
                Assert.Equal(time.GetTimestamp(), now);
            }

            lock (Fired)
            {
                Fired.Add(now);
            }

            if (Throw)
            {
                throw new InvalidOperationException("a faulty entry");
            }

            return _answered < Answers.Length ? Answers[_answered++] : long.MaxValue;
        }
    }

    /// <summary>A fake clock that counts how often a timer is re-armed.</summary>
    private sealed class CountingTime : FakeTimeProvider
    {
        private int _changes;

        public int Changes => Volatile.Read(ref _changes);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
            new Counted(base.CreateTimer(callback, state, dueTime, period), this);

        private sealed class Counted(ITimer inner, CountingTime owner) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                Interlocked.Increment(ref owner._changes);
                return inner.Change(dueTime, period);
            }

            public void Dispose() => inner.Dispose();

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }
}
