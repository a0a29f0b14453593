using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers.Simulation;
using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

public sealed class SimulatedAnswerTests
{
    [Fact]
    public async Task Same_seed_gives_the_same_token_sequence()
    {
        var backend = Backend();

        var first = Deltas(await CollectAsync(backend, Request("Explain tidal forces near neutron stars", 80, seed: 42)));
        var second = Deltas(await CollectAsync(Backend(), Request("Explain tidal forces near neutron stars", 80, seed: 42)));

        Assert.Equal(80, first.Count);
        Assert.Equal(first, second);
    }

    [Fact]
    public async Task Seed_does_not_depend_on_pacing()
    {
        var fast = Deltas(await CollectAsync(Backend(), Request("Compare glaciers and rivers", 40, seed: 7)));
        var jittery = Deltas(await CollectAsync(Backend(o => { o.TokensPerSecond = 100_000; o.Jitter = 0.9; }), Request("Compare glaciers and rivers", 40, seed: 7)));

        Assert.Equal(fast, jittery);
    }

    [Fact]
    public async Task Different_seeds_give_different_answers()
    {
        var backend = Backend();
        var answers = new HashSet<string>();
        for (var seed = 1; seed <= 5; seed++)
        {
            answers.Add(Text(await CollectAsync(backend, Request("Describe medieval castle architecture", 60, seed: seed))));
        }

        // Five seeds could collide by chance only if the seed were ignored.
        Assert.True(answers.Count >= 4, $"only {answers.Count} distinct answers from 5 seeds");
    }

    [Fact]
    public async Task No_seed_varies_between_requests()
    {
        var backend = Backend();
        var answers = new HashSet<string>();
        for (var i = 0; i < 8; i++)
        {
            answers.Add(Text(await CollectAsync(backend, Request("Describe medieval castle architecture", 60))));
        }

        Assert.True(answers.Count > 1);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(17)]
    [InlineData(110)]
    public async Task Answer_below_its_natural_length_has_exactly_max_tokens_deltas_and_ends_with_length(int maxTokens)
    {
        var events = await CollectAsync(Backend(), Request("How do bees navigate?", maxTokens, seed: maxTokens));

        Assert.Equal(maxTokens, Deltas(events).Count);
        Assert.Equal(maxTokens, Usage(events).CompletionTokens);
        Assert.Equal(FinishReasons.Length, Finish(events));
    }

    [Fact]
    public async Task Events_come_in_order_text_then_finish_then_usage()
    {
        var events = await CollectAsync(Backend(), Request("Hello there", 10, seed: 1));

        Assert.All(events.Take(10), e => Assert.IsType<TextDeltaEvent>(e));
        Assert.IsType<FinishEvent>(events[10]);
        Assert.IsType<UsageEvent>(events[11]);
        Assert.Equal(12, events.Count);
        Assert.All(events, e => Assert.Equal(0, e.ChoiceIndex));
    }

    [Fact]
    public async Task Long_answer_is_long_text()
    {
        var text = Text(await CollectAsync(Backend(o => o.DefaultAnswerTokens = 400), Request("Write about the history of printing presses", 400, seed: 3)));

        Assert.True(text.Length > 1_375, $"400 tokens gave only {text.Length} characters");
    }

    [Fact]
    public async Task Default_answer_length_is_used_without_max_tokens()
    {
        var configured = await CollectAsync(Backend(o => o.DefaultAnswerTokens = 33), Request("Tell me about owls"));
        var builtIn = await CollectAsync(Backend(), Request("Tell me about owls"));

        // The natural length: the default or up to 1.6 times it, per prompt, ending where a sentence ends.
        Assert.InRange(Deltas(configured).Count, 33, (33 * 1.6) + 40);
        Assert.InRange(Deltas(builtIn).Count, new ModelOptions().DefaultAnswerTokens, (new ModelOptions().DefaultAnswerTokens * 1.6) + 40);
        Assert.Equal(FinishReasons.Stop, Finish(configured));
    }

    [Fact]
    public async Task Default_answer_length_is_capped_by_max_output_tokens()
    {
        var events = await CollectAsync(Backend(o => { o.DefaultAnswerTokens = 500; o.MaxOutputTokens = 20; }), Request("Tell me about owls"));

        Assert.Equal(20, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, Finish(events));
    }

    [Fact]
    public async Task An_answer_cut_by_the_model_limit_always_says_length_even_when_its_last_sentence_ends_there()
    {
        // Sentences are composed up to the limit and now and then end exactly on it; the answer still wanted more
        // (the default length is far above the limit), so its finish reason is "length" every time, never "stop".
        for (var limit = 4; limit <= 40; limit++)
        {
            var backend = Backend(o => { o.DefaultAnswerTokens = 500; o.MaxOutputTokens = limit; o.TokensPerSecond = 100_000; });
            for (var seed = 0; seed < 40; seed++)
            {
                var events = await CollectAsync(backend, Request("Tell me about owls", seed: seed));
                Assert.Equal(limit, Deltas(events).Count);
                Assert.True(Finish(events) == FinishReasons.Length, $"limit {limit}, seed {seed}: finish {Finish(events)}");
            }
        }
    }

    [Fact]
    public async Task Max_tokens_above_model_limit_is_a_400_before_any_event()
    {
        var (events, error) = await CollectUntilErrorAsync(Backend(o => o.MaxOutputTokens = 100), Request("Hi", 101));

        var ex = Assert.IsType<ChatException>(error);
        Assert.Empty(events);
        Assert.Equal(400, ex.StatusCode);
        Assert.Equal("max_tokens", ex.Error.Param);
        Assert.Contains("100", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Max_tokens_at_model_limit_is_accepted()
    {
        var events = await CollectAsync(Backend(o => o.MaxOutputTokens = 100), Request("Hi", 100, seed: 1));

        Assert.Equal(100, Deltas(events).Count);
    }

    [Fact]
    public async Task Context_window_exceeded_is_a_400_context_length_exceeded()
    {
        var prompt = string.Join(' ', Enumerable.Repeat("word", 60));
        var backend = Backend(o => o.ContextWindow = 100);

        var (events, error) = await CollectUntilErrorAsync(backend, Request(prompt, 50));
        var fits = await CollectAsync(backend, Request(prompt, 10, seed: 1));

        var ex = Assert.IsType<ChatException>(error);
        Assert.Empty(events);
        Assert.Equal(400, ex.StatusCode);
        Assert.Equal("context_length_exceeded", ex.Error.Code);
        Assert.Equal("messages", ex.Error.Param);
        Assert.Equal(10, Deltas(fits).Count);
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(2L)]
    [InlineData(3L)]
    [InlineData(4L)]
    public async Task Answer_refers_to_a_distinctive_prompt_word(long seed)
    {
        var text = Text(await CollectAsync(Backend(), Request("Quokkas?", 60, seed: seed)));

        Assert.Contains("quokkas", text, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Answer_refers_to_words_of_a_longer_prompt_but_not_stop_words()
    {
        var text = Text(await CollectAsync(Backend(), Request("Please explain photosynthesis inside tropical rainforests", 200, seed: 11)));

        Assert.Contains(["photosynthesis", "tropical", "rainforests"], w => text.Contains(w, StringComparison.Ordinal));
        Assert.DoesNotContain("explain", text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("please", text, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Answer_to_a_prompt_without_topic_words_still_reads_well()
    {
        var text = Text(await CollectAsync(Backend(), Request("?!", 30, seed: 5)));

        Assert.Equal(30, TokenCounter.Count(text));
        Assert.Contains(["your question", "the topic", "the details", "the context"], t => text.Contains(t, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("Tell me about Zürich and its lakes", 1L)]
    [InlineData("What is the capital of 日本語の国?", 2L)]
    [InlineData("internationalization of extraordinarily-long-hyphenated words", 3L)]
    [InlineData("don't won't can't shouldn't O'Brien", 4L)]
    [InlineData("1234 5678 numbers only 42", 5L)]
    public async Task Usage_matches_streamed_deltas_and_token_counter(string prompt, long seed)
    {
        var request = Request(prompt, 150, seed: seed);

        var events = await CollectAsync(Backend(), request);

        var usage = Usage(events);
        Assert.Equal(Deltas(events).Count, usage.CompletionTokens);
        Assert.Equal(usage.CompletionTokens, TokenCounter.Count(Text(events)));
        Assert.Equal(TokenCounter.CountPrompt(request.Messages), usage.PromptTokens);
        Assert.Equal(usage.PromptTokens + usage.CompletionTokens, usage.TotalTokens);
    }

    [Fact]
    public async Task Prompt_tokens_count_the_whole_conversation()
    {
        var request = Parse("""
            {"messages":[
              {"role":"system","content":"You are terse."},
              {"role":"user","content":"Name a river."},
              {"role":"assistant","content":"The Danube."},
              {"role":"user","content":"Another one, please."}
            ],"max_tokens":5,"seed":1}
            """);

        var usage = Usage(await CollectAsync(Backend(), request));

        Assert.Equal(TokenCounter.CountPrompt(request.Messages), usage.PromptTokens);
        Assert.True(usage.PromptTokens > TokenCounter.CountPrompt([request.Messages[^1]]));
    }

    [Fact]
    public async Task Each_delta_is_one_token()
    {
        var events = await CollectAsync(Backend(), Request("Discuss volcanic islands", 120, seed: 9));

        Assert.All(Deltas(events), d => Assert.Equal(1, TokenCounter.Count(d)));
    }

    [Fact]
    public void Backend_requires_options()
    {
        Assert.Throws<ArgumentNullException>(() => new SimulatedChatBackend(null!));
    }

    [Fact]
    public async Task Already_cancelled_token_stops_before_the_first_token()
    {
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        var events = new List<ChatStreamEvent>();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var e in Backend().StreamAsync(Request("Hi", 50), cts.Token))
            {
                events.Add(e);
            }
        });

        Assert.Empty(events);
    }

    [Fact]
    public async Task Cancelling_mid_stream_stops_generation()
    {
        using var cts = new CancellationTokenSource();
        var events = new List<ChatStreamEvent>();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var e in Backend().StreamAsync(Request("Hi", 1_000), cts.Token))
            {
                events.Add(e);
                if (events.Count == 3)
                {
                    await cts.CancelAsync();
                }
            }
        });

        Assert.Equal(3, events.Count);
    }
}
