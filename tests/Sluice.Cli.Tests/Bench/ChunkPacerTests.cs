using Microsoft.Extensions.Time.Testing;
using Sluice.Cli.Bench;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// The mock upstream's pacer: one thread wakes every waiter once its due time has come on the injected clock, earliest
/// first, never before; a cancelled wait ends, and disposing fails whatever is still queued.
/// </summary>
public sealed class ChunkPacerTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Wakes_each_waiter_once_its_time_has_come_and_not_before()
    {
        var time = new FakeTimeProvider();
        using var pacer = new ChunkPacer(time);
        var start = pacer.Now;
        var later = pacer.WaitUntilAsync(pacer.After(start, 200), CancellationToken.None);
        var sooner = pacer.WaitUntilAsync(pacer.After(start, 100), CancellationToken.None);

        // The pacing thread looks every millisecond of real time: give it many looks with the fake clock standing still.
        await Task.Delay(50);
        Assert.False(sooner.IsCompleted);
        Assert.False(later.IsCompleted);

        time.Advance(TimeSpan.FromMilliseconds(150));
        await sooner.WaitAsync(Patience);
        await Task.Delay(50);
        Assert.False(later.IsCompleted, "due at 200 ms, the clock at 150 ms");

        time.Advance(TimeSpan.FromMilliseconds(50));
        await later.WaitAsync(Patience);
    }

    [Fact]
    public void A_due_time_already_passed_completes_at_once()
    {
        using var pacer = new ChunkPacer(new FakeTimeProvider());
        Assert.True(pacer.WaitUntilAsync(pacer.Now, CancellationToken.None).IsCompletedSuccessfully);
        Assert.True(pacer.WaitUntilAsync(pacer.After(pacer.Now, -5), CancellationToken.None).IsCompletedSuccessfully);
    }

    [Fact]
    public async Task A_cancelled_wait_ends_and_the_others_still_wake()
    {
        var time = new FakeTimeProvider();
        using var pacer = new ChunkPacer(time);
        using var cancel = new CancellationTokenSource();
        var cancelled = pacer.WaitUntilAsync(pacer.After(pacer.Now, 100), cancel.Token);
        var kept = pacer.WaitUntilAsync(pacer.After(pacer.Now, 100), CancellationToken.None);

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Patience));
        Assert.False(kept.IsCompleted);

        time.Advance(TimeSpan.FromMilliseconds(100));
        await kept.WaitAsync(Patience);
    }

    [Fact]
    public async Task Disposing_fails_queued_waiters_and_refuses_new_ones()
    {
        var pacer = new ChunkPacer(new FakeTimeProvider());
        var queued = pacer.WaitUntilAsync(pacer.After(pacer.Now, 1_000), CancellationToken.None);

        pacer.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queued.WaitAsync(Patience));
        Assert.Throws<ObjectDisposedException>(() => { _ = pacer.WaitUntilAsync(pacer.Now + 1, CancellationToken.None); }); // thrown at the call
        pacer.Dispose(); // twice is fine
    }

    [Fact]
    public async Task On_the_system_clock_a_wait_ends_after_its_due_time()
    {
        using var pacer = new ChunkPacer();
        var start = pacer.Now;
        await pacer.WaitUntilAsync(pacer.After(start, 30), CancellationToken.None).WaitAsync(Patience);
        Assert.True(TimeProvider.System.GetElapsedTime(start).TotalMilliseconds >= 30);
    }
}
