using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.Tests;

public sealed class AccumulatorAndTokenCounterTests
{
    [Fact]
    public void Accumulator_joins_text_per_choice_in_index_order()
    {
        var accumulator = new ChatCompletionAccumulator();
        accumulator.Add(new TextDeltaEvent("b1", 1));
        accumulator.Add(new TextDeltaEvent("a1", 0));
        accumulator.Add(new TextDeltaEvent("b2", 1));
        accumulator.Add(new TextDeltaEvent(string.Empty, 0));
        accumulator.Add(new TextDeltaEvent("a2", 0));
        accumulator.Add(new FinishEvent(FinishReasons.Stop, 0));
        accumulator.Add(new FinishEvent(FinishReasons.Length, 1));

        var choices = accumulator.Choices.ToList();

        Assert.Equal(2, choices.Count);
        Assert.Equal(new AssembledChoice(0, "a1a2", choices[0].ToolCalls, "stop"), choices[0]);
        Assert.Equal("b1b2", choices[1].Content);
        Assert.Equal("length", choices[1].FinishReason);
        Assert.Empty(choices[0].ToolCalls);
    }

    [Fact]
    public void Accumulator_joins_tool_fragments_by_index_keeping_first_id_and_name()
    {
        var accumulator = new ChatCompletionAccumulator();
        accumulator.Add(new ToolCallDeltaEvent(1, "call_b", "g", string.Empty));
        accumulator.Add(new ToolCallDeltaEvent(0, "call_a", "f", "{\"x\""));
        accumulator.Add(new ToolCallDeltaEvent(1, null, null, "{}"));
        accumulator.Add(new ToolCallDeltaEvent(0, null, null, ":1}"));
        accumulator.Add(new ToolCallDeltaEvent(0, null, null, null));
        accumulator.Add(new FinishEvent(FinishReasons.ToolCalls));

        var choice = Assert.Single(accumulator.Choices);

        Assert.Null(choice.Content);
        Assert.Equal([new ToolCall("call_a", "f", "{\"x\":1}"), new ToolCall("call_b", "g", "{}")], choice.ToolCalls);
        Assert.Equal("tool_calls", choice.FinishReason);
    }

    [Fact]
    public void Accumulator_keeps_text_next_to_tool_calls()
    {
        var accumulator = new ChatCompletionAccumulator();
        accumulator.Add(new TextDeltaEvent("Let me check."));
        accumulator.Add(new ToolCallDeltaEvent(0, "c", "f", "{}"));

        var choice = Assert.Single(accumulator.Choices);

        Assert.Equal("Let me check.", choice.Content);
        Assert.Single(choice.ToolCalls);
    }

    [Fact]
    public void Accumulator_records_usage_and_error()
    {
        var accumulator = new ChatCompletionAccumulator();
        Assert.Null(accumulator.Usage);
        Assert.Null(accumulator.Error);
        Assert.Empty(accumulator.Choices);

        accumulator.Add(new UsageEvent(new ChatUsage(7, 3)));
        accumulator.Add(new ErrorEvent(new ErrorInfo("boom", ErrorTypes.Server)));

        Assert.Equal(10, accumulator.Usage!.TotalTokens);
        Assert.Equal("boom", accumulator.Error!.Message);
        Assert.Empty(accumulator.Choices);
    }

    [Fact]
    public void Accumulator_without_finish_has_null_reason_and_empty_text()
    {
        var accumulator = new ChatCompletionAccumulator();
        accumulator.Add(new TextDeltaEvent(string.Empty));

        var choice = Assert.Single(accumulator.Choices);

        Assert.Equal(string.Empty, choice.Content);
        Assert.Null(choice.FinishReason);
    }

    [Theory]
    [InlineData("", 0)]
    [InlineData("Hello", 1)]
    [InlineData("Hello world", 2)]
    [InlineData(" Hello world.", 3)]
    [InlineData("Hello, world!", 4)]
    [InlineData("it's", 1)]
    [InlineData("1234567", 3)]
    [InlineData("abc123", 2)]
    [InlineData("trade-off", 3)]
    [InlineData("internationalization", 2)]
    [InlineData("abcdefghijkl", 1)]
    [InlineData("abcdefghijklm", 2)]
    [InlineData("Zürich", 1)]
    [InlineData("🚀🚀", 2)]
    [InlineData("a\nb\tc", 3)]
    public void Token_counter_counts_words_digit_runs_and_punctuation(string text, int expected)
    {
        Assert.Equal(expected, TokenCounter.Count(text));
    }

    [Fact]
    public void Token_ends_walk_the_text_without_gaps()
    {
        const string text = "  Hello, wörld! 12345 internationalization 🚀x";
        var pieces = new List<string>();
        var start = 0;
        while (start < text.Length)
        {
            var end = TokenCounter.NextTokenEnd(text, start);
            Assert.True(end > start);
            pieces.Add(text[start..end]);
            start = end;
        }

        Assert.Equal(text, string.Concat(pieces));
        Assert.Equal(TokenCounter.Count(text), pieces.Count);
        Assert.Equal("  Hello", pieces[0]);
        Assert.Equal("🚀", pieces[^2].Trim());
    }

    [Fact]
    public void Counting_pieces_separately_equals_counting_the_whole()
    {
        const string text = "The quick brown fox, aged 12, jumps over internationalization.";
        var total = 0;
        var start = 0;
        while (start < text.Length)
        {
            var end = TokenCounter.NextTokenEnd(text, start);
            total += TokenCounter.Count(text.AsSpan(start, end - start));
            start = end;
        }

        Assert.Equal(TokenCounter.Count(text), total);
    }

    [Fact]
    public void Prompt_count_adds_framing_per_message_and_tool_calls()
    {
        var messages = new List<ChatMessage>
        {
            new(ChatRoles.System, "Be brief."),
            new(ChatRoles.User, "Weather in Paris?"),
            new(ChatRoles.Assistant, null) { ToolCalls = [new ToolCall("c1", "get_weather", "{\"location\":\"Paris\"}")] },
        };

        var expected = 3
            + (TokenCounter.PerMessageOverhead + TokenCounter.Count("Be brief."))
            + (TokenCounter.PerMessageOverhead + TokenCounter.Count("Weather in Paris?"))
            + (TokenCounter.PerMessageOverhead + TokenCounter.Count("get_weather") + TokenCounter.Count("{\"location\":\"Paris\"}"));

        Assert.Equal(expected, TokenCounter.CountPrompt(messages));
        Assert.Equal(3 + TokenCounter.PerMessageOverhead, TokenCounter.CountPrompt([new ChatMessage(ChatRoles.User, string.Empty)]));
    }
}
