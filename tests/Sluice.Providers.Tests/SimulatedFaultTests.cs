using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Providers.Simulation;
using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

public sealed class SimulatedFaultTests
{
    private static Dictionary<string, string> Meta(params (string Key, string Value)[] pairs) =>
        pairs.ToDictionary(p => p.Key, p => p.Value);

    [Fact]
    public async Task Fail_status_429_from_metadata_throws_before_any_event_with_retry_after()
    {
        var (events, error) = await CollectUntilErrorAsync(Backend(), Request("Hi", 10, metadata: Meta((SimulatedChatBackend.FailStatusKey, "429"))));

        var ex = Assert.IsType<ChatException>(error);
        Assert.Empty(events);
        Assert.Equal(429, ex.StatusCode);
        Assert.Equal(ErrorTypes.RateLimit, ex.Error.Type);
        Assert.Equal("rate_limit_exceeded", ex.Error.Code);
        Assert.Equal(TimeSpan.FromSeconds(1), ex.RetryAfter);
        Assert.Contains(SimulatedChatBackend.FailStatusKey, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Retry_after_from_metadata_is_used()
    {
        var metadata = Meta((SimulatedChatBackend.FailStatusKey, "429"), (SimulatedChatBackend.RetryAfterKey, "7"));

        var (_, error) = await CollectUntilErrorAsync(Backend(), Request("Hi", 10, metadata: metadata));

        Assert.Equal(TimeSpan.FromSeconds(7), Assert.IsType<ChatException>(error).RetryAfter);
    }

    [Theory]
    [InlineData(500, ErrorTypes.Server, false)]
    [InlineData(502, ErrorTypes.Server, false)]
    [InlineData(503, ErrorTypes.Server, true)]
    [InlineData(401, ErrorTypes.Authentication, false)]
    [InlineData(403, ErrorTypes.Permission, false)]
    [InlineData(400, ErrorTypes.InvalidRequest, false)]
    public async Task Fail_status_from_metadata_maps_to_error_type(int status, string type, bool hasRetryAfter)
    {
        var (events, error) = await CollectUntilErrorAsync(Backend(), Request("Hi", 10, metadata: Meta((SimulatedChatBackend.FailStatusKey, status.ToString(System.Globalization.CultureInfo.InvariantCulture)))));

        var ex = Assert.IsType<ChatException>(error);
        Assert.Empty(events);
        Assert.Equal(status, ex.StatusCode);
        Assert.Equal(type, ex.Error.Type);
        Assert.Equal(hasRetryAfter, ex.RetryAfter is not null);
    }

    [Fact]
    public async Task Fail_status_from_model_options_applies_to_every_request()
    {
        var backend = Backend(o => { o.FailStatus = 503; o.RetryAfterSeconds = 30; });

        for (var i = 0; i < 2; i++)
        {
            var (events, error) = await CollectUntilErrorAsync(backend, Request("Hi", 10));
            var ex = Assert.IsType<ChatException>(error);
            Assert.Empty(events);
            Assert.Equal(503, ex.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(30), ex.RetryAfter);
        }
    }

    [Fact]
    public async Task Metadata_overrides_model_options()
    {
        var backend = Backend(o => o.FailStatus = 503);

        var (_, error) = await CollectUntilErrorAsync(backend, Request("Hi", 10, metadata: Meta((SimulatedChatBackend.FailStatusKey, "429"))));

        Assert.Equal(429, Assert.IsType<ChatException>(error).StatusCode);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(49)]
    public async Task Fail_after_tokens_from_metadata_streams_exactly_N_deltas_then_fails(int n)
    {
        var request = Request("Tell me about comets", 50, seed: 1, metadata: Meta((SimulatedChatBackend.FailAfterTokensKey, n.ToString(System.Globalization.CultureInfo.InvariantCulture))));

        var (events, error) = await CollectUntilErrorAsync(Backend(), request);

        var ex = Assert.IsType<ChatException>(error);
        Assert.Equal(n, events.Count);
        Assert.All(events, e => Assert.IsType<TextDeltaEvent>(e));
        Assert.Equal(500, ex.StatusCode);
        Assert.Equal("simulated_failure", ex.Error.Code);
        Assert.Contains(SimulatedChatBackend.FailAfterTokensKey, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Fail_after_tokens_from_model_options()
    {
        var (events, error) = await CollectUntilErrorAsync(Backend(o => o.FailAfterTokens = 3), Request("Tell me about comets", 50));

        Assert.IsType<ChatException>(error);
        Assert.Equal(3, Deltas(events).Count);
    }

    [Fact]
    public async Task Fail_after_more_tokens_than_the_answer_has_completes_normally()
    {
        var events = await CollectAsync(Backend(o => o.FailAfterTokens = 100), Request("Tell me about comets", 10));

        Assert.Equal(10, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, Finish(events));
    }

    [Fact]
    public async Task Fail_after_tokens_applies_to_tool_call_fragments()
    {
        var request = Parse("""
            {"messages":[{"role":"user","content":"weather in Lisbon?"}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],
             "metadata":{"sim_fail_after_tokens":"2"},"seed":1}
            """);

        var (events, error) = await CollectUntilErrorAsync(Backend(), request);

        Assert.IsType<ChatException>(error);
        Assert.Equal(2, events.OfType<ToolCallDeltaEvent>().Count());
        Assert.Empty(events.OfType<FinishEvent>());
    }

    [Fact]
    public async Task Stall_before_first_token_observes_cancellation_promptly()
    {
        using var cts = new CancellationTokenSource();
        var request = Request("Hi", 10, metadata: Meta((SimulatedChatBackend.StallMsKey, "600000")));
        await using var enumerator = Backend().StreamAsync(request, cts.Token).GetAsyncEnumerator(cts.Token);

        var moveNext = enumerator.MoveNextAsync().AsTask();
        Assert.False(moveNext.IsCompleted, "a 10-minute stall completed at once");
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => moveNext.WaitAsync(Bound));
    }

    [Fact]
    public async Task Stall_after_N_tokens_stalls_there_and_observes_cancellation()
    {
        using var cts = new CancellationTokenSource();
        var request = Request("Hi", 10, metadata: Meta((SimulatedChatBackend.StallMsKey, "600000"), (SimulatedChatBackend.StallAfterTokensKey, "3")));
        await using var enumerator = Backend().StreamAsync(request, cts.Token).GetAsyncEnumerator(cts.Token);

        for (var i = 0; i < 3; i++)
        {
            var ready = enumerator.MoveNextAsync();
            Assert.True(ready.IsCompleted, $"token {i} was delayed although the stall comes after 3");
            Assert.True(await ready);
            Assert.IsType<TextDeltaEvent>(enumerator.Current);
        }

        var stalled = enumerator.MoveNextAsync().AsTask();
        Assert.False(stalled.IsCompleted, "token 4 arrived without the stall");
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stalled.WaitAsync(Bound));
    }

    [Fact]
    public async Task Stall_from_model_options_applies()
    {
        using var cts = new CancellationTokenSource();
        var backend = Backend(o => o.StallMs = 600_000);
        await using var enumerator = backend.StreamAsync(Request("Hi", 10), cts.Token).GetAsyncEnumerator(cts.Token);

        var moveNext = enumerator.MoveNextAsync().AsTask();
        Assert.False(moveNext.IsCompleted);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => moveNext.WaitAsync(Bound));
    }

    [Fact]
    public async Task Short_stall_then_full_answer()
    {
        var events = await CollectAsync(Backend(), Request("Hi", 5, metadata: Meta((SimulatedChatBackend.StallMsKey, "1"), (SimulatedChatBackend.StallAfterTokensKey, "2"))));

        Assert.Equal(5, Deltas(events).Count);
    }

    [Theory]
    [InlineData(SimulatedChatBackend.FailStatusKey, "abc")]
    [InlineData(SimulatedChatBackend.FailStatusKey, "99")]
    [InlineData(SimulatedChatBackend.FailStatusKey, "200")]
    [InlineData(SimulatedChatBackend.FailStatusKey, "600")]
    [InlineData(SimulatedChatBackend.FailStatusKey, "")]
    [InlineData(SimulatedChatBackend.RetryAfterKey, "-1")]
    [InlineData(SimulatedChatBackend.FailAfterTokensKey, "1.5")]
    [InlineData(SimulatedChatBackend.FailAfterTokensKey, "-2")]
    [InlineData(SimulatedChatBackend.StallMsKey, "600001")]
    [InlineData(SimulatedChatBackend.StallMsKey, "soon")]
    [InlineData(SimulatedChatBackend.StallAfterTokensKey, "-1")]
    public async Task Invalid_fault_metadata_is_a_400_naming_the_key(string key, string value)
    {
        var (events, error) = await CollectUntilErrorAsync(Backend(), Request("Hi", 10, metadata: Meta((key, value))));

        var ex = Assert.IsType<ChatException>(error);
        Assert.Empty(events);
        Assert.Equal(400, ex.StatusCode);
        Assert.Equal(ErrorTypes.InvalidRequest, ex.Error.Type);
        Assert.Equal("metadata." + key, ex.Error.Param);
        Assert.Contains("metadata." + key, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unrelated_metadata_is_ignored()
    {
        var events = await CollectAsync(Backend(), Request("Hi", 4, metadata: Meta(("trace_id", "abc"), ("sim_unknown", "x"))));

        Assert.Equal(4, Deltas(events).Count);
    }

    [Fact]
    public async Task Metadata_numbers_from_a_parsed_body_work_as_fault_switches()
    {
        var request = Parse("""{"prompt":"Hi","metadata":{"sim_fail_status":429,"sim_retry_after":3}}""");

        var (_, error) = await CollectUntilErrorAsync(Backend(), request);

        var ex = Assert.IsType<ChatException>(error);
        Assert.Equal(429, ex.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(3), ex.RetryAfter);
    }
}
