using Microsoft.Extensions.Time.Testing;
using Sluice.Gateway.Http;

namespace Sluice.Gateway.Tests.Http;

/// <summary>The per-key counters behind the connection and request-byte limits, and the log throttle.</summary>
public sealed class CountsByKeyTests
{
    [Fact]
    public void A_count_goes_up_to_its_limit_per_key_and_back_to_nothing()
    {
        var counts = new CountsByKey<string>();
        Assert.True(counts.TryAdd("a", 3, limit: 5));
        Assert.True(counts.TryAdd("a", 2, limit: 5));
        Assert.False(counts.TryAdd("a", 1, limit: 5));
        Assert.True(counts.TryAdd("b", 5, limit: 5));
        Assert.Equal(5, counts["a"]);

        counts.Subtract("a", 3);
        counts.Subtract("a", 2);
        Assert.Equal(0, counts["a"]);
        Assert.True(counts.TryAdd("a", 5, limit: 5));
    }

    [Fact]
    public async Task Racing_adds_and_subtracts_never_pass_the_limit_nor_lose_a_count()
    {
        // Keys reach zero and are removed all the time while others add to them: an add that lands on an entry being
        // removed must start again, or counts would be lost (or split over two entries, letting the limit be passed).
        var counts = new CountsByKey<int>();
        var held = new int[2];
        var over = 0;
        var workers = Enumerable.Range(0, 6).Select(w => Task.Run(() =>
        {
            var random = new Random(w);
            for (var i = 0; i < 1_000_000; i++)
            {
                var key = random.Next(2);
                if (counts.TryAdd(key, 1, limit: 1))
                {
                    if (Interlocked.Increment(ref held[key]) > 1)
                    {
                        Interlocked.Increment(ref over);
                    }

                    Interlocked.Decrement(ref held[key]);
                    counts.Subtract(key, 1);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);

        Assert.Equal(0, over);
        Assert.All(Enumerable.Range(0, 2), key => Assert.Equal(0, counts[key]));
        Assert.All(Enumerable.Range(0, 2), key => Assert.True(counts.TryAdd(key, 1, limit: 1)));
    }

    [Fact]
    public void The_log_throttle_lets_one_line_through_per_interval()
    {
        var time = new FakeTimeProvider();
        var throttle = new LogThrottle(time, TimeSpan.FromMinutes(1));
        Assert.True(throttle.ShouldLog());
        Assert.False(throttle.ShouldLog());
        time.Advance(TimeSpan.FromSeconds(59));
        Assert.False(throttle.ShouldLog());
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(throttle.ShouldLog());
        Assert.False(throttle.ShouldLog());
    }
}
