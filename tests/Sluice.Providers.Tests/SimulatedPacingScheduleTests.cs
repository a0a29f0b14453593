using Microsoft.Extensions.Time.Testing;
using Sluice.Protocol.Events;
using Sluice.Providers.Simulation;
using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

/// <summary>
/// A simulated model's tokens are due on a schedule (each an interval after the previous one was due), on the clock it
/// is given: a timer that fires late does not delay the tokens after it, and a token far behind restarts the schedule
/// instead of bursting to catch up.
/// </summary>
public sealed class SimulatedPacingScheduleTests
{
    [Fact]
    public async Task A_late_timer_does_not_delay_the_next_token_and_a_long_delay_restarts_the_schedule()
    {
        var time = new FakeTimeProvider();
        var options = BuiltInModels.Fast;
        options.TimeToFirstTokenMs = 0;
        options.TokensPerSecond = 1;
        options.Jitter = 0;
        var backend = new SimulatedChatBackend(options, time);
        await using var tokens = backend.StreamAsync(Request("Explain how lighthouses guided sailors", 6, seed: 2), CancellationToken.None)
            .GetAsyncEnumerator();

        // The first token at once; the second due at 1.0 s, its timer late: it fires at 1.3 s.
        Assert.IsType<TextDeltaEvent>(await NextAsync(tokens));
        await DueAfterAsync(tokens.MoveNextAsync().AsTask(), time, TimeSpan.FromMilliseconds(999), late: TimeSpan.FromMilliseconds(301));

        // The third is due at 2.0 s (1.0 + 1.0), not at 2.3 s (an interval after the second was sent).
        await DueAfterAsync(tokens.MoveNextAsync().AsTask(), time, TimeSpan.FromMilliseconds(699), late: TimeSpan.FromMilliseconds(1));

        // The fourth, due at 3.0 s, comes out at 4.5 s — more than an interval behind: the fifth is due a full interval
        // later (5.5 s), not at once to catch up with 4.0 s.
        var fourth = tokens.MoveNextAsync().AsTask();
        time.Advance(TimeSpan.FromMilliseconds(2_500));
        Assert.True(await fourth.WaitAsync(Bound));
        var fifth = tokens.MoveNextAsync().AsTask();
        await Task.Delay(50);
        Assert.False(fifth.IsCompleted, "a token more than an interval behind must not burst to catch up");
        time.Advance(TimeSpan.FromMilliseconds(1_000));
        Assert.True(await fifth.WaitAsync(Bound));
    }

    /// <summary>Not there after <paramref name="before"/> on the fake clock, there once <paramref name="late"/> more passes.</summary>
    private static async Task DueAfterAsync(Task<bool> next, FakeTimeProvider time, TimeSpan before, TimeSpan late)
    {
        time.Advance(before);
        await Task.Delay(50);
        Assert.False(next.IsCompleted, $"the token came before it was due (the clock moved {before.TotalMilliseconds} ms)");
        time.Advance(late);
        Assert.True(await next.WaitAsync(Bound));
    }

    private static async Task<ChatStreamEvent> NextAsync(IAsyncEnumerator<ChatStreamEvent> tokens)
    {
        Assert.True(await tokens.MoveNextAsync().AsTask().WaitAsync(Bound));
        return tokens.Current;
    }
}
