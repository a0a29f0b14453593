using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

public sealed class GeminiReplayTests
{
    public static TheoryData<string, string, int?, int?> SuccessfulRecordings() => new()
    {
        // fixture, finish_reason, prompt tokens, completion tokens (null: the recording reports no usage)
        { "gemini/googleai/streaming-failure-recitation-no-content.sse", "content_filter", 9, 261 },
        { "gemini/googleai/streaming-success-basic-reply-long.sse", "stop", 10, 1996 },
        { "gemini/googleai/streaming-success-basic-reply-short.sse", "stop", 7, 10 },
        { "gemini/googleai/streaming-success-citations.sse", "stop", 15, 1381 },
        { "gemini/googleai/streaming-success-code-execution.sse", "stop", 21 + 243, 126 + 95 },
        { "gemini/googleai/streaming-success-empty-parts.sse", "stop", 16, 1307 },
        { "gemini/googleai/streaming-success-finish-message.sse", "stop", null, null },
        { "gemini/googleai/streaming-success-no-content-parts.sse", "stop", 34, 1370 },
        { "gemini/googleai/streaming-success-thinking-function-call-thought-summary-signature.sse", "tool_calls", 38, 6 + 168 },
        { "gemini/googleai/streaming-success-thinking-reply-thought-summary.sse", "stop", 10, 48 + 540 },
        { "gemini/googleai/streaming-success-url-context.sse", "stop", 438 + 619, 81 + 39 },
        { "gemini/vertexai/streaming-failure-finish-reason-safety.sse", "content_filter", 10, 66 },
        { "gemini/vertexai/streaming-failure-recitation-no-content.sse", "content_filter", null, null },
        { "gemini/vertexai/streaming-failure-unknown-finish-enum.sse", "stop", null, null },
        { "gemini/vertexai/streaming-success-basic-reply-long.sse", "stop", 12, 1706 },
        { "gemini/vertexai/streaming-success-basic-reply-parts.sse", "stop", 6, 326 },
        { "gemini/vertexai/streaming-success-basic-reply-short.sse", "stop", 6, 4 },
        { "gemini/vertexai/streaming-success-citations.sse", "stop", null, null },
        { "gemini/vertexai/streaming-success-code-execution.sse", "stop", 210 + 371, 192 + 192 },
        { "gemini/vertexai/streaming-success-empty-text-part.sse", "stop", 8, 1 },
        { "gemini/vertexai/streaming-success-function-call-short.sse", "tool_calls", null, null },
        { "gemini/vertexai/streaming-success-image-invalid-safety-ratings.sse", "stop", 15, 258 },
        { "gemini/vertexai/streaming-success-quotes-escaped.sse", "stop", null, null },
        { "gemini/vertexai/streaming-success-thinking-reply-thought-summary.sse", "stop", 9, 134 + 1067 },
        { "gemini/vertexai/streaming-success-unknown-safety-enum.sse", "stop", null, null },
        { "gemini/vertexai/streaming-success-url-context.sse", "stop", 57, 48 },
        { "gemini/vertexai/streaming-success-utf8.sse", "stop", null, null },
    };

    [Theory]
    [MemberData(nameof(SuccessfulRecordings))]
    public async Task Recording_assembles_to_its_visible_text_finish_reason_and_usage(string fixture, string finishReason, int? prompt, int? completion)
    {
        foreach (var chunking in new[] { ReplayChunking.PerEvent, ReplayChunking.SmallSlices })
        {
            await using var rig = await UpstreamRig.ReplayAsync("gemini", fixture, chunking);
            var events = await rig.CollectAsync();
            var answer = UpstreamKit.Assemble(events);

            var choice = Assert.Single(answer.Choices);
            Assert.Equal(ReferenceText(fixture), choice.Content ?? string.Empty);
            Assert.Equal(finishReason, choice.FinishReason);
            Assert.Equal(prompt, answer.Usage?.PromptTokens);
            Assert.Equal(completion, answer.Usage?.CompletionTokens);
            Assert.Null(answer.Error);
        }
    }

    [Fact]
    public async Task Thoughts_are_reported_as_reasoning_tokens_and_cached_content_as_cached_prompt_tokens()
    {
        await using (var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/googleai/streaming-success-thinking-reply-thought-summary.sse"))
        {
            var usage = UpstreamKit.Assemble(await rig.CollectAsync()).Usage!;
            Assert.Equal(48 + 540, usage.CompletionTokens);
            Assert.Equal(540, usage.Details!.ReasoningTokens);
            Assert.Equal(0, usage.Details.CachedPromptTokens);
        }

        var body = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],"
            + "\"usageMetadata\": {\"promptTokenCount\": 1200,\"candidatesTokenCount\": 1,\"cachedContentTokenCount\": 1024,\"totalTokenCount\": 1201}}\r\n\r\n";
        await using var cached = await UpstreamRig.StartAsync("gemini", await ReplayUpstream.StartAsync(System.Text.Encoding.UTF8.GetBytes(body)));
        var cachedUsage = UpstreamKit.Assemble(await cached.CollectAsync()).Usage!;
        Assert.Equal(1200, cachedUsage.PromptTokens);
        Assert.Equal(1024, cachedUsage.Details!.CachedPromptTokens);
        Assert.Equal(0, cachedUsage.Details.ReasoningTokens);
    }

    [Theory]
    [InlineData("gemini/googleai/streaming-success-basic-reply-short.sse", "The capital of Wyoming is **Cheyenne**.\n")]
    [InlineData("gemini/googleai/streaming-success-finish-message.sse", "Hello world!")]
    [InlineData("gemini/googleai/streaming-failure-recitation-no-content.sse", "text1text2text3text4text5text6text7text8")]
    [InlineData("gemini/vertexai/streaming-success-basic-reply-parts.sse", "1 2 3 4 5 6 7 8")]
    [InlineData("gemini/vertexai/streaming-success-empty-text-part.sse", "1")]
    [InlineData("gemini/vertexai/streaming-failure-recitation-no-content.sse", "Copyrighted text goes hereMore copyrighted text")]
    public async Task Short_recordings_give_exactly_this_text(string fixture, string text)
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", fixture);
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        Assert.Equal(text, Assert.Single(answer.Choices).Content);
    }

    [Fact]
    public async Task Thought_parts_are_not_part_of_the_answer()
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/googleai/streaming-success-thinking-reply-thought-summary.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        Assert.Equal(
            "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered in all directions, making the sky appear blue to our eyes.",
            Assert.Single(answer.Choices).Content);
    }

    [Fact]
    public async Task Function_call_becomes_a_whole_tool_call_with_a_synthesized_id()
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/vertexai/streaming-success-function-call-short.sse");
        var events = await rig.CollectAsync();
        var answer = UpstreamKit.Assemble(events);

        var call = Assert.Single(Assert.Single(answer.Choices).ToolCalls);
        Assert.Equal("getTemperature", call.Name);
        Assert.Matches("^call_[A-Za-z0-9]{24}$", call.Id);
        using var arguments = JsonDocument.Parse(call.Arguments);
        Assert.Equal("San Jose", arguments.RootElement.GetProperty("city").GetString());
        Assert.Single(events.OfType<ToolCallDeltaEvent>());
    }

    [Fact]
    public async Task Function_call_after_thoughts_has_empty_object_arguments()
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/googleai/streaming-success-thinking-function-call-thought-summary-signature.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Null(choice.Content);
        var call = Assert.Single(choice.ToolCalls);
        Assert.Equal("now", call.Name);
        Assert.Equal("{}", call.Arguments);
    }

    [Fact]
    public async Task Synthesized_ids_differ_between_calls()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("gemini/vertexai/streaming-success-function-call-short.sse"));
        await using var rig = await UpstreamRig.StartAsync("gemini", upstream);
        var first = UpstreamKit.Assemble(await rig.CollectAsync()).Choices.Single().ToolCalls.Single().Id;
        var second = UpstreamKit.Assemble(await rig.CollectAsync()).Choices.Single().ToolCalls.Single().Id;

        Assert.NotEqual(first, second);
    }

    [Theory]
    [InlineData("gemini/googleai/streaming-failure-prompt-blocked-safety.sse")]
    [InlineData("gemini/vertexai/streaming-failure-prompt-blocked-safety.sse")]
    [InlineData("gemini/vertexai/streaming-failure-prompt-blocked-safety-with-message.sse")]
    public async Task Blocked_prompt_ends_with_content_filter(string fixture)
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", fixture);
        var events = await rig.CollectAsync();

        var finish = Assert.IsType<FinishEvent>(Assert.Single(events));
        Assert.Equal("content_filter", finish.Reason);
    }

    [Theory]
    [InlineData("gemini/vertexai/streaming-failure-empty-content.sse")]
    [InlineData("gemini/vertexai/streaming-failure-malformed-content.sse")]
    [InlineData("gemini/vertexai/streaming-failure-invalid-json.sse")]
    public async Task Stream_with_no_content_and_no_finish_reason_is_an_error(string fixture)
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", fixture);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_truncated", ex.Error.Code);
    }

    [Fact]
    public async Task Error_written_into_the_stream_after_content_is_an_error_event_not_a_finish()
    {
        foreach (var chunking in new[] { ReplayChunking.PerEvent, ReplayChunking.SmallSlices })
        {
            await using var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/vertexai/streaming-failure-error-mid-stream.sse", chunking);
            var events = await rig.CollectAsync();

            Assert.Equal(["First ", "Second "], events.OfType<TextDeltaEvent>().Select(e => e.Text));
            Assert.DoesNotContain(events, e => e is FinishEvent);
            var error = Assert.IsType<ErrorEvent>(events[^1]);
            Assert.Contains("The operation was cancelled.", error.Error.Message, StringComparison.Ordinal);
            Assert.Equal("CANCELLED", error.Error.Code);
        }
    }

    [Fact]
    public async Task Error_as_data_mid_stream_is_an_error_event()
    {
        const string Stream = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\r\n\r\n"
            + "data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(Stream));
        await using var rig = await UpstreamRig.StartAsync("gemini", upstream);
        var events = await rig.CollectAsync();

        Assert.Equal("Hi", Assert.IsType<TextDeltaEvent>(events[0]).Text);
        var error = Assert.IsType<ErrorEvent>(events[^1]);
        Assert.Contains("The model is overloaded.", error.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gemini/googleai/streaming-failure-image-rejected.sse", 400, "Request contains an invalid argument.", "INVALID_ARGUMENT")]
    [InlineData("gemini/vertexai/streaming-failure-image-rejected.sse", 400, "Request contains an invalid argument.", "INVALID_ARGUMENT")]
    [InlineData("gemini/vertexai/streaming-failure-api-key.sse", 400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")]
    [InlineData("gemini/vertexai/streaming-failure-http-error.sse", 400, "$grpcMessage", "FAILED_PRECONDITION")]
    [InlineData("gemini/vertexai/streaming-failure-unknown-model.sse", 404, "models/unknown is not found for API version v1", "NOT_FOUND")]
    public async Task Http_error_bodies_become_chat_exceptions_with_the_same_status(string fixture, int status, string message, string code)
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", fixture, ReplayChunking.Whole, status);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(status, ex.StatusCode);
        Assert.Contains(message, ex.Error.Message, StringComparison.Ordinal);
        Assert.Equal(code, ex.Error.Code);
        Assert.Equal(ErrorTypes.InvalidRequest, ex.Error.Type);
    }

    [Fact]
    public async Task Error_body_sent_with_status_200_is_still_an_error()
    {
        await using var rig = await UpstreamRig.ReplayAsync("gemini", "gemini/vertexai/streaming-failure-unknown-model.sse", ReplayChunking.Whole);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(404, ex.StatusCode);
        Assert.Contains("models/unknown is not found", ex.Error.Message, StringComparison.Ordinal);
    }

    /// <summary>The answer text by an independent reading: every non-thought text part of every chunk, in order.</summary>
    private static string ReferenceText(string fixture)
    {
        var text = new System.Text.StringBuilder();
        foreach (var payload in UpstreamKit.DataPayloads(Fixtures.Read(fixture), includeUnterminated: true))
        {
            using var document = JsonDocument.Parse(payload);
            if (!document.RootElement.TryGetProperty("candidates", out var candidates))
            {
                continue;
            }

            foreach (var candidate in candidates.EnumerateArray())
            {
                if (!candidate.TryGetProperty("content", out var content) || !content.TryGetProperty("parts", out var parts))
                {
                    continue;
                }

                foreach (var part in parts.EnumerateArray())
                {
                    var thought = part.TryGetProperty("thought", out var flag) && flag.ValueKind == JsonValueKind.True;
                    if (!thought && part.TryGetProperty("text", out var piece))
                    {
                        text.Append(piece.GetString());
                    }
                }
            }
        }

        return text.ToString();
    }
}
