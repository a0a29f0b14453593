using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models.Messages;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// Both directions at once: a recorded Anthropic stream, replayed by a loopback upstream configured as an
/// <c>anthropic</c> model, decoded by the Anthropic adapter into Sluice's events and written back out as Anthropic
/// SSE by <c>/v1/messages</c>. What the client reads must say what the recording said.
/// </summary>
public sealed class AnthropicRoundTripTests
{
    public static TheoryData<string> Recordings => new(
        Directory.GetFiles(Path.Combine(Fixtures.Directory, "anthropic"), "*.sse").Select(Path.GetFileName).Order()!);

    [Theory]
    [MemberData(nameof(Recordings))]
    public async Task Recording_served_through_v1_messages_keeps_text_tool_calls_stop_reason_and_usage(string file)
    {
        var recording = Fixtures.Read("anthropic/" + file);
        var expected = Transcript.Parse(recording);
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await StartAsync(upstream);

        using var response = await gateway.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/messages")
            {
                Content = TestGateway.Json("""{"model": "claude", "max_tokens": 1024, "stream": true, "messages": [{"role": "user", "content": "Hello"}]}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        var body = await response.Content.ReadAsByteArrayAsync();
        var actual = Transcript.Parse(body);

        Assert.Equal(expected.Text, actual.Text);
        Assert.Equal(expected.Tools, actual.Tools);
        Assert.Equal(expected.StopReason, actual.StopReason);
        Assert.Equal(expected.OutputTokens, actual.OutputTokens);

        // message_start goes out with the upstream's first content, so it carries the upstream's own count (not an
        // estimate), its message id, cache counts and service tier; message_delta repeats the final count.
        Assert.Equal(expected.InputTokens, actual.InputTokens);
        Assert.Equal(expected.InputTokens, actual.FinalInputTokens);
        Assert.Equal(expected.MessageId, actual.MessageId);
        Assert.Equal(expected.ServiceTier, actual.ServiceTier);
        Assert.Equal(expected.StopDetails, actual.StopDetails);
        Assert.True(actual.EndedWithMessageStop);
        Assert.Equal("claude-test", upstream.Requests[0].Json.GetProperty("model").GetString());
    }

    [Theory]
    [InlineData("basic_response.sse")]
    [InlineData("tool_use_response.sse")]
    public async Task The_sdk_reads_the_same_message_from_sluice_as_from_the_recording_itself(string file)
    {
        // These recordings stop right after the last data line; an SSE client (the SDK's included) drops an event
        // that no blank line ends, so the SDK reading the file directly needs the blank line a live server sends.
        var recording = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Fixtures.Read("anthropic/" + file)).TrimEnd() + "\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await StartAsync(upstream);
        var parameters = new MessageCreateParams
        {
            Model = "claude",
            MaxTokens = 1024,
            Messages = [new UserMessageParam("What is the weather in Paris?")],
        };

        var direct = await Sdk(upstream.BaseUrl).Messages.CreateStreaming(parameters).Aggregate();
        var viaSluice = await Sdk(gateway.BaseAddress.ToString().TrimEnd('/')).Messages.CreateStreaming(parameters).Aggregate();

        Assert.Equal(direct.StopReason!.Raw(), viaSluice.StopReason!.Raw());
        Assert.Equal(direct.Usage.OutputTokens, viaSluice.Usage.OutputTokens);
        Assert.Equal(Describe(direct), Describe(viaSluice));
    }

    [Fact]
    public async Task A_stop_sequence_comes_back_as_stop_sequence_with_its_text()
    {
        const string recording = """
            event: message_start
            data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}

            event: content_block_start
            data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"One, two"}}

            event: content_block_stop
            data: {"type":"content_block_stop","index":0}

            event: message_delta
            data: {"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"three"},"usage":{"output_tokens":3}}

            event: message_stop
            data: {"type":"message_stop"}


            """;
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(recording));
        await using var gateway = await StartAsync(upstream);

        using var response = await gateway.Client.PostAsync("v1/messages", TestGateway.Json(
            """{"model": "claude", "max_tokens": 50, "stop_sequences": ["three"], "messages": [{"role": "user", "content": "Count"}]}"""));
        using var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal("stop_sequence", message.RootElement.GetProperty("stop_reason").GetString());
        Assert.Equal("three", message.RootElement.GetProperty("stop_sequence").GetString());
        Assert.Equal("One, two", message.RootElement.GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal("three", upstream.Requests[0].Json.GetProperty("stop_sequences")[0].GetString());
    }

    private static Task<TestGateway> StartAsync(ReplayUpstream upstream) => TestGateway.StartAsync(options => options.Models =
    [
        new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "claude-test", MaxAttempts = 1 },
    ]);

    private static AnthropicClient Sdk(string baseUrl) => new(new ClientOptions
    {
        BaseUrl = baseUrl,
        ApiKey = "sk-ant-test-unused",
        MaxRetries = 0,
        Timeout = TimeSpan.FromSeconds(30),
    });

    /// <summary>The message's blocks as comparable text: text blocks by their text, tool calls by name and input.</summary>
    private static List<string> Describe(Message message) => message.Content.Select(block =>
        block.TryPickText(out var text) ? "text:" + text.Text
        : block.TryPickToolUse(out var tool) ? $"tool:{tool.ID}:{tool.Name}:{JsonSerializer.Serialize(tool.Input)}"
        : "other").ToList();

    /// <summary>What an Anthropic stream says, read straight from its events.</summary>
    private sealed record Transcript(
        string Text,
        IReadOnlyList<string> ToolList,
        string? StopReason,
        int InputTokens,
        int? FinalInputTokens,
        int OutputTokens,
        bool EndedWithMessageStop)
    {
        public string? MessageId { get; init; }

        public string? ServiceTier { get; init; }

        public string? StopDetails { get; init; }

        public string Tools => string.Join(" | ", ToolList);

        public static Transcript Parse(byte[] body)
        {
            var parser = new SseParser();
            var events = new List<SseEvent>();
            parser.Feed(body, events);
            parser.Complete(events);

            var text = new StringBuilder();
            var tools = new SortedDictionary<int, (string Id, string Name, StringBuilder Json)>();
            string? stopReason = null;
            var input = 0;
            int? finalInput = null;
            var output = 0;
            var last = string.Empty;
            string? messageId = null;
            string? serviceTier = null;
            string? stopDetails = null;
            foreach (var sseEvent in events)
            {
                using var document = JsonDocument.Parse(sseEvent.Data);
                var root = document.RootElement;
                var type = root.GetProperty("type").GetString()!;
                Assert.Equal(sseEvent.EventType, type);
                last = type;
                switch (type)
                {
                    case "message_start":
                        var message = root.GetProperty("message");
                        input = SumInput(message.GetProperty("usage"));
                        messageId = message.GetProperty("id").GetString();
                        serviceTier = message.GetProperty("usage").TryGetProperty("service_tier", out var tier) ? tier.GetString() : null;
                        break;
                    case "content_block_start" when root.GetProperty("content_block").GetProperty("type").GetString() == "tool_use":
                        var block = root.GetProperty("content_block");
                        tools[root.GetProperty("index").GetInt32()] = (block.GetProperty("id").GetString()!, block.GetProperty("name").GetString()!, new StringBuilder());
                        break;
                    case "content_block_delta":
                        var delta = root.GetProperty("delta");
                        if (delta.GetProperty("type").GetString() == "text_delta")
                        {
                            text.Append(delta.GetProperty("text").GetString());
                        }
                        else if (delta.GetProperty("type").GetString() == "input_json_delta")
                        {
                            tools[root.GetProperty("index").GetInt32()].Json.Append(delta.GetProperty("partial_json").GetString());
                        }

                        break;
                    case "message_delta":
                        stopReason = root.GetProperty("delta").GetProperty("stop_reason").GetString();
                        stopDetails = root.GetProperty("delta").TryGetProperty("stop_details", out var details) ? details.GetRawText() : null;
                        var usage = root.GetProperty("usage");
                        output = usage.GetProperty("output_tokens").GetInt32();
                        finalInput = usage.TryGetProperty("input_tokens", out _) ? SumInput(usage) : null;
                        break;
                }
            }

            var toolList = tools.Values.Select(t => $"{t.Id}:{t.Name}:{t.Json}").ToList();
            return new Transcript(text.ToString(), toolList, stopReason, input, finalInput, output, last == "message_stop")
            {
                MessageId = messageId,
                ServiceTier = serviceTier,
                StopDetails = stopDetails,
            };
        }

        private static int SumInput(JsonElement usage) =>
            new[] { "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens" }
                .Sum(name => usage.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetInt32() : 0);
    }
}
