using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

/// <summary>Runs alone: it reads the process's allocation counter, which tests running beside it would move.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation (runs alone)";
}

/// <summary>
/// A paced simulated token allocates next to nothing: each wait reuses the stream's one timer and value-task source.
/// With <c>Task.Delay</c> every token allocated a timer, a promise and the awaiting method's box (~400 B, alive for the
/// whole gap), which at 10,000 slow streams kept the gateway in generation-1 collections.
/// </summary>
[Collection(AllocationCollection.Name)]
public sealed class SimulatedPacingAllocationTests
{
    private const int Tokens = 100;

    [Fact]
    public async Task A_paced_token_allocates_far_less_than_a_timer_and_a_promise()
    {
        var request = Request("Explain how lighthouses guided sailors along rocky coastlines", Tokens, seed: 11);
        var unpaced = Backend(o => { o.TimeToFirstTokenMs = 0; o.TokensPerSecond = 0; o.Jitter = 0; });
        var paced = Backend(o => { o.TimeToFirstTokenMs = 0; o.TokensPerSecond = 1_000; o.Jitter = 0; });
        Assert.Equal(Tokens, Deltas(await CollectAsync(paced, request)).Count); // warm: JIT and first-use allocations

        // The least of three runs each: another thread's allocation can only add.
        var withoutPacing = long.MaxValue;
        var withPacing = long.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            withoutPacing = Math.Min(withoutPacing, await AllocatedAsync(unpaced, request));
            withPacing = Math.Min(withPacing, await AllocatedAsync(paced, request));
        }

        var perToken = (withPacing - withoutPacing) / (double)Tokens;
        Assert.True(perToken < 100, $"pacing allocated {perToken:F0} B per token ({withPacing} B paced, {withoutPacing} B not)");
    }

    [Fact]
    public async Task Paced_tokens_are_at_least_their_interval_apart()
    {
        var paced = Backend(o => { o.TimeToFirstTokenMs = 0; o.TokensPerSecond = 100; o.Jitter = 0; });
        var started = TimeProvider.System.GetTimestamp();
        var events = await CollectAsync(paced, Request("Hi there", 11, seed: 3));
        Assert.Equal(11, Deltas(events).Count);
        Assert.True(TimeProvider.System.GetElapsedTime(started).TotalMilliseconds >= 100, "ten gaps of 10 ms");
    }

    private static async Task<long> AllocatedAsync(Sluice.Providers.Simulation.SimulatedChatBackend backend, Sluice.Protocol.Chat.ChatRequest request)
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        Assert.Equal(Tokens, Deltas(await CollectAsync(backend, request)).Count);
        return GC.GetTotalAllocatedBytes(precise: true) - before;
    }
}
