using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

public sealed class OpenAIReplayTests
{
    public static TheoryData<string, ReplayChunking> AllRecordings()
    {
        var data = new TheoryData<string, ReplayChunking>();
        foreach (var file in Directory.GetFiles(Path.Combine(Fixtures.Directory, "openai"), "*.sse").Order(StringComparer.Ordinal))
        {
            data.Add("openai/" + Path.GetFileName(file), ReplayChunking.PerEvent);
            data.Add("openai/" + Path.GetFileName(file), ReplayChunking.SmallSlices);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(AllRecordings))]
    public async Task Every_chunk_is_passed_through_byte_for_byte_and_decodes_like_a_full_parse(string fixture, ReplayChunking chunking)
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", fixture, chunking);
        var events = await rig.CollectAsync();

        var payloads = UpstreamKit.DataPayloads(Fixtures.Read(fixture));
        Assert.Equal("[DONE]", Encoding.UTF8.GetString(payloads[^1]));
        var usagePayload = payloads[^2];
        var chunkPayloads = payloads[..^2];

        var chunks = events.OfType<OpenAIChunkEvent>().ToList();
        Assert.Equal(chunkPayloads.Count, chunks.Count);
        for (var i = 0; i < chunks.Count; i++)
        {
            Assert.Equal(chunkPayloads[i], chunks[i].Json.ToArray());
        }

        // The usage chunk (choices: []) is not passed through: it becomes the last event, a plain UsageEvent.
        var usage = Assert.IsType<UsageEvent>(events[^1]);
        using var usageJson = JsonDocument.Parse(usagePayload);
        Assert.Equal(usageJson.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), usage.Usage.PromptTokens);
        Assert.Equal(usageJson.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), usage.Usage.CompletionTokens);
        Assert.Equal(chunks.Count + 1, events.Count);

        // The Utf8JsonReader decoding agrees with an independent JsonDocument reading of the same chunks.
        var assembled = UpstreamKit.Assemble(events).Choices.ToList();
        var expected = ReferenceAssemble(chunkPayloads);
        Assert.Equal(expected.Count, assembled.Count);
        foreach (var (choice, reference) in assembled.Zip(expected))
        {
            Assert.Equal(reference.Index, choice.Index);
            Assert.Equal(reference.Text, choice.Content ?? string.Empty);
            Assert.Equal(reference.Refusal, choice.Refusal ?? string.Empty);
            Assert.Equal(reference.FinishReason, choice.FinishReason);
            Assert.Equal(reference.Tools, choice.ToolCalls.Select(t => (t.Id, t.Name, t.Arguments)).ToList());
        }

        Assert.NotNull(chunks[0].Identity);
        Assert.All(chunks.Skip(1), c => Assert.Null(c.Identity));
    }

    [Fact]
    public async Task Text_answer_assembles_exactly_with_usage()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/text-a.sse");
        var events = await rig.CollectAsync();
        var answer = UpstreamKit.Assemble(events);

        var choice = Assert.Single(answer.Choices);
        Assert.Equal("""{"city":"San Francisco","temperature":61,"units":"f"}""", choice.Content);
        Assert.Equal("stop", choice.FinishReason);
        Assert.Equal(new ChatUsage(79, 14), answer.Usage);
        var identity = events.OfType<OpenAIChunkEvent>().First().Identity!;
        Assert.StartsWith("chatcmpl-", identity.Id, StringComparison.Ordinal);
        Assert.Equal("gpt-4o-2024-08-06", identity.Model);
    }

    [Fact]
    public async Task Three_choices_keep_their_indexes()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/three-choices.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync(UpstreamKit.Request(
            """{"model":"test-model","messages":[{"role":"user","content":"weather?"}],"n":3,"stream":true}""")));

        var choices = answer.Choices.ToList();
        Assert.Equal([0, 1, 2], choices.Select(c => c.Index));
        Assert.Equal("""{"city":"San Francisco","temperature":65,"units":"f"}""", choices[0].Content);
        Assert.Equal("""{"city":"San Francisco","temperature":61,"units":"f"}""", choices[1].Content);
        Assert.Equal("""{"city":"San Francisco","temperature":59,"units":"f"}""", choices[2].Content);
        Assert.All(choices, c => Assert.Equal("stop", c.FinishReason));
        Assert.Equal(new ChatUsage(79, 42), answer.Usage);
        Assert.Equal(3, rig.Upstream.Requests[0].Json.GetProperty("n").GetInt32());
    }

    [Fact]
    public async Task Tool_call_keeps_id_name_and_full_arguments()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/tool-call-a.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Null(choice.Content);
        var call = Assert.Single(choice.ToolCalls);
        Assert.Equal(new ToolCall("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", """{"city":"New York City"}"""), call);
        Assert.Equal("tool_calls", choice.FinishReason);
        Assert.Equal(new ChatUsage(44, 16), answer.Usage);
    }

    [Fact]
    public async Task Parallel_tool_calls_stay_separate()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/tool-calls-parallel.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Equal(
            [
                new ToolCall("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs", """{"city": "Edinburgh", "country": "GB", "units": "c"}"""),
                new ToolCall("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price", """{"ticker": "AAPL", "exchange": "NASDAQ"}"""),
            ],
            choice.ToolCalls);
        Assert.All(choice.ToolCalls, c => JsonDocument.Parse(c.Arguments).Dispose());
        Assert.Equal("tool_calls", choice.FinishReason);
        Assert.Equal(new ChatUsage(149, 60), answer.Usage);
    }

    [Theory]
    [InlineData("openai/refusal.sse", "I'm sorry, I can't assist with that request.", 11)]
    [InlineData("openai/refusal-logprobs.sse", "I'm very sorry, but I can't assist with that.", 12)]
    public async Task Refusals_are_assembled_as_refusal_not_content(string fixture, string refusal, int completionTokens)
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", fixture);
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Null(choice.Content);
        Assert.Equal(refusal, choice.Refusal);
        Assert.Equal("stop", choice.FinishReason);
        Assert.Equal(completionTokens, answer.Usage!.CompletionTokens);
    }

    [Fact]
    public async Task Length_cutoff_reports_length()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/length-cutoff.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Equal("{\"", choice.Content);
        Assert.Equal("length", choice.FinishReason);
        Assert.Equal(new ChatUsage(79, 1), answer.Usage);
    }

    [Fact]
    public async Task Gateway_writes_upstream_chunks_verbatim_and_its_usage_chunk_with_the_upstream_identity()
    {
        var recording = Fixtures.Read("openai/content-logprobs.sse");
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/content-logprobs.sse");
        var events = await rig.CollectAsync();

        var writer = new OpenAIChunkWriter("chatcmpl-gateway", 1, "test-model");
        var output = new ArrayBufferWriter<byte>();
        var sequence = 0L;
        foreach (var e in events)
        {
            if (writer.WriteEvent(output, sequence + 1, e))
            {
                sequence++;
            }
        }

        writer.WriteUsage(output, ++sequence, Assert.IsType<UsageEvent>(events[^1]).Usage);
        OpenAIChunkWriter.WriteDone(output, ++sequence);

        var written = new List<SseEvent>();
        var parser = new SseParser();
        parser.Feed(output.WrittenSpan, written);
        var upstream = UpstreamKit.DataPayloads(recording);
        Assert.Equal(upstream.Count, written.Count);
        for (var i = 0; i < upstream.Count - 2; i++)
        {
            Assert.Equal(upstream[i], written[i].Data.ToArray());
            Assert.Equal((i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), written[i].LastEventId);
        }

        // Logprobs survive because nothing was re-serialized.
        Assert.Contains("\"logprob\":-0.0025094282", Encoding.UTF8.GetString(written[1].Data.Span), StringComparison.Ordinal);
        using var usageChunk = JsonDocument.Parse(written[^2].Data);
        using var firstChunk = JsonDocument.Parse(upstream[0]);
        Assert.Equal(firstChunk.RootElement.GetProperty("id").GetString(), usageChunk.RootElement.GetProperty("id").GetString());
        Assert.Equal(firstChunk.RootElement.GetProperty("created").GetInt64(), usageChunk.RootElement.GetProperty("created").GetInt64());
        Assert.Equal(firstChunk.RootElement.GetProperty("model").GetString(), usageChunk.RootElement.GetProperty("model").GetString());
        Assert.Equal(11, usageChunk.RootElement.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        Assert.True(written[^1].IsDone);
    }

    [Fact]
    public async Task Unknown_fields_and_reasoning_content_pass_through_and_timings_do_not_break_decoding()
    {
        // llama.cpp adds "timings" to its last chunk; DeepSeek-style servers stream "reasoning_content".
        const string Stream = """
            data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"local","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"Let me think."},"finish_reason":null}]}

            data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"local","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

            data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"local","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"timings":{"prompt_n":3,"predicted_per_second":41.5}}

            data: [DONE]


            """;
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(Stream));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);
        var events = await rig.CollectAsync();

        var chunks = events.OfType<OpenAIChunkEvent>().ToList();
        Assert.Equal(3, chunks.Count);
        Assert.Contains("\"reasoning_content\":\"Let me think.\"", Encoding.UTF8.GetString(chunks[0].Json.Span), StringComparison.Ordinal);
        Assert.Contains("\"timings\":{\"prompt_n\":3", Encoding.UTF8.GetString(chunks[2].Json.Span), StringComparison.Ordinal);
        var answer = UpstreamKit.Assemble(events);
        Assert.Equal("Hi", Assert.Single(answer.Choices).Content);
        Assert.Equal(new ChatUsage(3, 2), answer.Usage);
    }

    [Fact]
    public async Task Non_streaming_request_is_streamed_upstream_and_assembles_the_same_answer()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/tool-call-b.sse");
        var answer = UpstreamKit.Assemble(await rig.CollectAsync(UpstreamKit.Request(
            """{"model":"test-model","messages":[{"role":"user","content":"weather in SF?"}]}""")));

        var sent = rig.Upstream.Requests[0].Json;
        Assert.True(sent.GetProperty("stream").GetBoolean());
        Assert.True(sent.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        var call = Assert.Single(Assert.Single(answer.Choices).ToolCalls);
        Assert.Equal(new ToolCall("call_CTf1nWJLqSeRgDqaCG27xZ74", "get_weather", """{"city":"San Francisco","state":"CA"}"""), call);
    }

    private static List<ReferenceChoice> ReferenceAssemble(IEnumerable<byte[]> chunks)
    {
        var choices = new SortedDictionary<int, ReferenceChoice>();
        foreach (var chunk in chunks)
        {
            using var document = JsonDocument.Parse(chunk);
            foreach (var choice in document.RootElement.GetProperty("choices").EnumerateArray())
            {
                var index = choice.GetProperty("index").GetInt32();
                if (!choices.TryGetValue(index, out var state))
                {
                    state = new ReferenceChoice(index);
                    choices[index] = state;
                }

                var delta = choice.GetProperty("delta");
                if (delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                {
                    state.Text += content.GetString();
                }

                if (delta.TryGetProperty("refusal", out var refusal) && refusal.ValueKind == JsonValueKind.String)
                {
                    state.Refusal += refusal.GetString();
                }

                if (delta.TryGetProperty("tool_calls", out var calls))
                {
                    foreach (var call in calls.EnumerateArray())
                    {
                        var toolIndex = call.GetProperty("index").GetInt32();
                        while (state.Tools.Count <= toolIndex)
                        {
                            state.Tools.Add((string.Empty, string.Empty, string.Empty));
                        }

                        var (id, name, arguments) = state.Tools[toolIndex];
                        if (call.TryGetProperty("id", out var idElement))
                        {
                            id = idElement.GetString()!;
                        }

                        var function = call.GetProperty("function");
                        if (function.TryGetProperty("name", out var nameElement))
                        {
                            name = nameElement.GetString()!;
                        }

                        if (function.TryGetProperty("arguments", out var argumentsElement))
                        {
                            arguments += argumentsElement.GetString();
                        }

                        state.Tools[toolIndex] = (id, name, arguments);
                    }
                }

                if (choice.GetProperty("finish_reason") is { ValueKind: JsonValueKind.String } finish)
                {
                    state.FinishReason = finish.GetString();
                }
            }
        }

        return [.. choices.Values];
    }

    private sealed class ReferenceChoice(int index)
    {
        public int Index { get; } = index;

        public string Text { get; set; } = string.Empty;

        public string Refusal { get; set; } = string.Empty;

        public string? FinishReason { get; set; }

        public List<(string Id, string Name, string Arguments)> Tools { get; } = [];
    }
}
