using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

public sealed class AnthropicReplayTests
{
    [Theory]
    [InlineData("anthropic/basic_response.sse", "Hello there!", 11, 6)]
    [InlineData("anthropic/compaction_response.sse", "Hello there!", 30, 8)]
    [InlineData("anthropic/fallback_credit_response.sse", "Hello there!", 25, 8)]
    [InlineData("anthropic/fallback_response.sse", "Hello there!", 25, 8)]
    public async Task Text_answers_skip_other_blocks_and_report_usage(string fixture, string text, int prompt, int completion)
    {
        foreach (var chunking in new[] { ReplayChunking.PerEvent, ReplayChunking.SmallSlices })
        {
            await using var rig = await UpstreamRig.ReplayAsync("anthropic", fixture, chunking);
            var events = await rig.CollectAsync();
            var answer = UpstreamKit.Assemble(events);

            var choice = Assert.Single(answer.Choices);
            Assert.Equal(text, choice.Content);
            Assert.Empty(choice.ToolCalls);
            Assert.Equal("stop", choice.FinishReason);
            Assert.Equal(new ChatUsage(prompt, completion), answer.Usage);
            Assert.IsType<FinishEvent>(events[^2]);
            Assert.IsType<UsageEvent>(events[^1]);
        }
    }

    [Fact]
    public async Task Basic_response_streams_each_text_delta_as_it_came()
    {
        await using var rig = await UpstreamRig.ReplayAsync("anthropic", "anthropic/basic_response.sse");
        var events = await rig.CollectAsync();

        Assert.Equal(["Hello", " there", "!"], events.OfType<TextDeltaEvent>().Select(e => e.Text));
    }

    [Fact]
    public async Task Tool_use_becomes_an_openai_tool_call_with_argument_fragments()
    {
        await using var rig = await UpstreamRig.ReplayAsync("anthropic", "anthropic/tool_use_response.sse");
        var events = await rig.CollectAsync();
        var answer = UpstreamKit.Assemble(events);

        var choice = Assert.Single(answer.Choices);
        Assert.Equal("I'll check the current weather in Paris for you.", choice.Content);
        var call = Assert.Single(choice.ToolCalls);
        Assert.Equal(new ToolCall("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", """{"location": "Paris"}"""), call);
        Assert.Equal("tool_calls", choice.FinishReason);
        Assert.Equal(new ChatUsage(377, 65), answer.Usage);

        var tools = events.OfType<ToolCallDeltaEvent>().ToList();
        Assert.Equal("toolu_01NRLabsLyVHZPKxbKvkfSMn", tools[0].Id);
        Assert.Equal(["{\"locati", "on\": \"P", "ar", "is\"}"], tools.Skip(1).Select(t => t.ArgumentsFragment));
        Assert.All(tools.Skip(1), t => Assert.Null(t.Id));
    }

    [Fact]
    public async Task Max_tokens_mid_tool_call_ends_with_length_and_the_partial_arguments()
    {
        await using var rig = await UpstreamRig.ReplayAsync("anthropic", "anthropic/incomplete_partial_json_response.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Equal("I'll create a comprehensive tax guide for someone with multiple W2s and save it in a file called taxes.txt. Let me do that for you now.", choice.Content);
        var call = Assert.Single(choice.ToolCalls);
        Assert.Equal("toolu_01EKqbqmZrGRXy18eN7m9kvY", call.Id);
        Assert.Equal("make_file", call.Name);
        Assert.Equal(
            "{\"filename\": \"taxes.txt\", \"lines_of_text\": [\n\"# COMPREHENSIVE TAX GUIDE FOR INDIVIDUALS WITH MULTIPLE W-2s\",\n\"\",\n\"## INTRODUCTION\",\n\"\",\n\"Filing taxes",
            call.Arguments);
        Assert.Equal("length", choice.FinishReason);
        Assert.Equal(new ChatUsage(450, 124), answer.Usage);
    }

    [Fact]
    public async Task Refusal_stop_reason_is_content_filter_with_the_stop_details_kept()
    {
        await using var rig = await UpstreamRig.ReplayAsync("anthropic", "anthropic/refusal_response.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Equal("content_filter", choice.FinishReason);
        Assert.Equal(new ChatUsage(20, 0), answer.Usage);
        using var details = JsonDocument.Parse(choice.StopDetailsJson!);
        Assert.Equal("cyber", details.RootElement.GetProperty("category").GetString());
        Assert.Equal("msg_01RefusalTestMessage123456789", answer.Start!.MessageId);
    }

    [Fact]
    public async Task Message_start_facts_come_first_with_the_first_content_event_id_prompt_count_and_service_tier()
    {
        await using var rig = await UpstreamRig.ReplayAsync("anthropic", "anthropic/tool_use_response.sse");
        var events = await rig.CollectAsync();

        var start = Assert.IsType<AnswerStartEvent>(events[0]);
        Assert.IsType<TextDeltaEvent>(events[1]);
        Assert.Single(events.OfType<AnswerStartEvent>());
        Assert.Equal("msg_019Q1hrJbZG26Fb9BQhrkHEr", start.MessageId);
        Assert.Equal(377, start.Usage!.PromptTokens);
        Assert.Equal("standard", start.ServiceTier);
    }

    [Fact]
    public async Task Cache_reads_and_writes_are_prompt_tokens_with_their_details()
    {
        const string Stream = """
            event: message_start
            data: {"type":"message_start","message":{"id":"msg_cache","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1,"service_tier":"priority"}}}

            event: content_block_start
            data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

            event: content_block_stop
            data: {"type":"content_block_stop","index":0}

            event: message_delta
            data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}

            event: message_stop
            data: {"type":"message_stop"}


            """;
        await using var rig = await UpstreamRig.StartAsync("anthropic", await ReplayUpstream.StartAsync(System.Text.Encoding.UTF8.GetBytes(Stream)));
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        Assert.Equal(2112, answer.Usage!.PromptTokens);
        Assert.Equal(3, answer.Usage.CompletionTokens);
        Assert.Equal(2000, answer.Usage.Details!.CachedPromptTokens);
        Assert.Equal(100, answer.Usage.Details.CacheCreationPromptTokens);
        Assert.Equal("priority", answer.Start!.ServiceTier);
    }

    [Fact]
    public async Task An_error_right_after_message_start_still_fails_before_the_first_event()
    {
        const string Stream = """
            event: message_start
            data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}

            event: error
            data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}


            """;
        await using var rig = await UpstreamRig.StartAsync("anthropic", await ReplayUpstream.StartAsync(System.Text.Encoding.UTF8.GetBytes(Stream)));
        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));

        Assert.Empty(events);
        Assert.IsType<ChatException>(failure);
    }

    [Fact]
    public async Task Error_event_mid_stream_becomes_an_error_event_and_ends_the_stream()
    {
        const string Stream = """
            event: message_start
            data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}

            event: content_block_start
            data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial"}}

            event: error
            data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}


            """;
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(Stream));
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream);
        var events = await rig.CollectAsync();

        Assert.Equal("msg_1", Assert.IsType<AnswerStartEvent>(events[0]).MessageId);
        Assert.Equal("Partial", Assert.IsType<TextDeltaEvent>(events[1]).Text);
        var error = Assert.IsType<ErrorEvent>(events[^1]);
        Assert.Contains("Overloaded", error.Error.Message, StringComparison.Ordinal);
        Assert.Equal("overloaded_error", error.Error.Code);
        Assert.Equal(3, events.Count);
    }

    [Fact]
    public async Task Error_event_before_any_content_is_a_chat_exception()
    {
        const string Stream = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of requests exceeded\"}}\n\n";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(Stream));
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(429, ex.StatusCode);
        Assert.Equal(ErrorTypes.RateLimit, ex.Error.Type);
        Assert.Contains("Number of requests exceeded", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stream_cut_before_message_stop_is_an_error_not_a_clean_end()
    {
        var recording = Fixtures.Read("anthropic/tool_use_response.sse");
        var events = ReplayUpstream.SplitEvents(recording);
        var truncated = events.Take(events.Count - 2).SelectMany(e => e).ToArray();
        await using var upstream = await ReplayUpstream.StartAsync(truncated);
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream);

        var (received, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_truncated", ex.Error.Code);
        Assert.Contains("message_stop", ex.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(received, e => e is FinishEvent);
    }

    [Fact]
    public async Task Tool_without_parameters_gets_empty_object_arguments()
    {
        const string Stream = """
            event: message_start
            data: {"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}

            event: content_block_start
            data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}

            event: content_block_stop
            data: {"type":"content_block_stop","index":0}

            event: message_delta
            data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}

            event: message_stop
            data: {"type":"message_stop"}


            """;
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(Stream));
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream);
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var call = Assert.Single(Assert.Single(answer.Choices).ToolCalls);
        Assert.Equal(new ToolCall("toolu_1", "now", "{}"), call);
        JsonDocument.Parse(call.Arguments).Dispose();
    }
}
