using Sluice.Protocol.Events;
using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

public sealed class SimulatedStopAndPacingTests
{
    private const string Prompt = "Explain how lighthouses guided sailors along rocky coastlines";

    private static async Task<string> FullTextAsync(long seed, int maxTokens = 120) =>
        Text(await CollectAsync(Backend(), Request(Prompt, maxTokens, seed: seed)));

    [Theory]
    [InlineData(1L, 10)]
    [InlineData(2L, 57)]
    [InlineData(3L, 200)]
    public async Task Stop_cuts_the_text_before_a_stop_that_falls_on_a_token_start(long seed, int tokenIndex)
    {
        var fullTokens = Deltas(await CollectAsync(Backend(o => o.DefaultAnswerTokens = 300), Request(Prompt, 300, seed: seed)));
        var full = string.Concat(fullTokens);
        var stop = string.Concat(fullTokens.Skip(tokenIndex).Take(2));
        var firstOccurrence = full.IndexOf(stop, StringComparison.Ordinal);

        var events = await CollectAsync(Backend(o => o.DefaultAnswerTokens = 300), Request(Prompt, 300, seed: seed, stop: [stop]));

        var text = Text(events);
        Assert.Equal(full[..firstOccurrence], text);
        Assert.True(firstOccurrence <= fullTokens.Take(tokenIndex).Sum(t => t.Length));
        Assert.DoesNotContain(stop, text, StringComparison.Ordinal);
        Assert.Equal(FinishReasons.Stop, Finish(events));
        Assert.Equal(Deltas(events).Count, Usage(events).CompletionTokens);
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(4L)]
    [InlineData(9L)]
    public async Task Stop_spanning_two_tokens_never_leaks_its_start(long seed)
    {
        var fullTokens = Deltas(await CollectAsync(Backend(), Request(Prompt, 150, seed: seed)));
        var full = string.Concat(fullTokens);
        // A stop that starts inside one token and ends inside the next: "hthouses g" style.
        var index = Enumerable.Range(20, fullTokens.Count - 40).First(i => fullTokens[i].Trim().Length >= 4 && fullTokens[i + 1].Trim().Length >= 2);
        var tokenStart = fullTokens.Take(index).Sum(t => t.Length);
        var stop = full.Substring(tokenStart + 2, fullTokens[index].Length - 2 + 2);

        var events = await CollectAsync(Backend(), Request(Prompt, 150, seed: seed, stop: [stop]));

        var text = Text(events);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], text);
        Assert.DoesNotContain(stop, text, StringComparison.Ordinal);
        Assert.Equal(FinishReasons.Stop, Finish(events));
    }

    [Fact]
    public async Task Earliest_of_several_stops_wins()
    {
        var full = await FullTextAsync(5, 200);
        var early = full.Substring(40, 6);
        var late = full.Substring(400, 6);

        var events = await CollectAsync(Backend(), Request(Prompt, 200, seed: 5, stop: [late, early]));

        Assert.Equal(full[..full.IndexOf(early, StringComparison.Ordinal)], Text(events));

        // The sequence that matched is reported, for clients whose API names it (Anthropic's stop_sequence).
        Assert.Equal(early, Assert.Single(events.OfType<FinishEvent>()).StopSequence);
    }

    [Fact]
    public async Task Stop_at_the_very_start_gives_an_empty_answer()
    {
        var full = await FullTextAsync(6);

        var events = await CollectAsync(Backend(), Request(Prompt, 120, seed: 6, stop: [full[..3]]));

        Assert.Empty(Deltas(events));
        Assert.Equal(FinishReasons.Stop, Finish(events));
        Assert.Equal(0, Usage(events).CompletionTokens);
    }

    [Fact]
    public async Task Stop_that_never_appears_changes_nothing()
    {
        var full = await FullTextAsync(7);

        var events = await CollectAsync(Backend(), Request(Prompt, 120, seed: 7, stop: ["@@never@@"]));

        Assert.Equal(full, Text(events));
        Assert.Equal(120, Usage(events).CompletionTokens);
        Assert.Null(Assert.Single(events.OfType<FinishEvent>()).StopSequence);
    }

    [Fact]
    public async Task Time_to_first_token_is_honoured()
    {
        using var cts = new CancellationTokenSource();
        var backend = Backend(o => o.TimeToFirstTokenMs = 600_000);
        await using var enumerator = backend.StreamAsync(Request("Hi", 5), cts.Token).GetAsyncEnumerator(cts.Token);

        var first = enumerator.MoveNextAsync().AsTask();
        Assert.False(first.IsCompleted, "the first token did not wait for TimeToFirstTokenMs");
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.WaitAsync(Bound));
    }

    [Fact]
    public async Task Tokens_per_second_delays_every_token_after_the_first()
    {
        using var cts = new CancellationTokenSource();
        // One token every 1,000 seconds: the first comes at once, the second waits.
        var backend = Backend(o => o.TokensPerSecond = 0.001);
        await using var enumerator = backend.StreamAsync(Request("Hi", 5), cts.Token).GetAsyncEnumerator(cts.Token);

        var first = enumerator.MoveNextAsync();
        Assert.True(first.IsCompleted);
        Assert.True(await first);
        var second = enumerator.MoveNextAsync().AsTask();
        Assert.False(second.IsCompleted, "the second token did not wait for the token rate");
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second.WaitAsync(Bound));
    }

    [Fact]
    public async Task Tool_call_fragments_are_paced_too()
    {
        using var cts = new CancellationTokenSource();
        var backend = Backend(o => o.TokensPerSecond = 0.001);
        var request = Parse("""
            {"messages":[{"role":"user","content":"weather in Lisbon?"}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]}
            """);
        await using var enumerator = backend.StreamAsync(request, cts.Token).GetAsyncEnumerator(cts.Token);

        Assert.True(await enumerator.MoveNextAsync());
        Assert.IsType<ToolCallDeltaEvent>(enumerator.Current);
        var second = enumerator.MoveNextAsync().AsTask();
        Assert.False(second.IsCompleted);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second.WaitAsync(Bound));
    }

    [Fact]
    public async Task Fast_model_produces_every_event_synchronously()
    {
        // sim-fast has no delays: nothing should ever have to wait.
        await using var enumerator = Backend().StreamAsync(Request("Hi", 50), CancellationToken.None).GetAsyncEnumerator();
        var count = 0;
        while (true)
        {
            var next = enumerator.MoveNextAsync();
            Assert.True(next.IsCompleted);
            if (!await next)
            {
                break;
            }

            count++;
        }

        Assert.Equal(52, count);
    }

    [Fact]
    public async Task Paced_model_still_streams_the_full_answer()
    {
        var events = await CollectAsync(Backend(o => { o.TimeToFirstTokenMs = 5; o.TokensPerSecond = 2_000; o.Jitter = 0.5; }), Request("Hi", 20, seed: 1));

        Assert.Equal(20, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, Finish(events));
    }
}
