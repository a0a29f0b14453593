using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Ollama's native <c>/api/chat</c> NDJSON, built from its documented format (docs/api.md of ollama/ollama).</summary>
public sealed class OllamaReplayTests
{
    private const string TextStream =
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"The\"},\"done\":false}\n"
        + "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\" sky is\"},\"done\":false}\n"
        + "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\" blue.\"},\"done\":false}\n"
        + "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\","
        + "\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":4,\"eval_duration\":4535599000}\n";

    private const string ToolStream =
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        + "{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"unit\":\"celsius\"}}},"
        + "{\"function\":{\"name\":\"get_time\",\"arguments\":{\"zone\":\"Europe/Paris\"}}}]},\"done\":false}\n"
        + "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":120,\"eval_count\":31}\n";

    [Theory]
    [InlineData(ReplayChunking.PerEvent)]
    [InlineData(ReplayChunking.SmallSlices)]
    public async Task Text_deltas_done_reason_and_counts(ReplayChunking chunking)
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(TextStream), "application/x-ndjson", chunking: chunking);
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);
        var events = await rig.CollectAsync();
        var answer = UpstreamKit.Assemble(events);

        Assert.Equal(["The", " sky is", " blue."], events.OfType<TextDeltaEvent>().Select(e => e.Text));
        var choice = Assert.Single(answer.Choices);
        Assert.Equal("The sky is blue.", choice.Content);
        Assert.Equal("stop", choice.FinishReason);
        Assert.Equal(new ChatUsage(26, 4), answer.Usage);
        Assert.Equal("/api/chat", rig.Upstream.Requests[0].PathAndQuery);
    }

    [Fact]
    public async Task Length_done_reason_is_length()
    {
        var stream = TextStream.Replace("\"done_reason\":\"stop\"", "\"done_reason\":\"length\"", StringComparison.Ordinal);
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(stream), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);

        Assert.Equal("length", Assert.Single(UpstreamKit.Assemble(await rig.CollectAsync()).Choices).FinishReason);
    }

    [Fact]
    public async Task Whole_tool_calls_get_ids_and_json_text_arguments()
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(ToolStream), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);
        var answer = UpstreamKit.Assemble(await rig.CollectAsync());

        var choice = Assert.Single(answer.Choices);
        Assert.Equal("tool_calls", choice.FinishReason);
        Assert.Equal(2, choice.ToolCalls.Count);
        Assert.Equal("get_weather", choice.ToolCalls[0].Name);
        Assert.Equal("""{"city":"Paris","unit":"celsius"}""", choice.ToolCalls[0].Arguments);
        Assert.Equal("get_time", choice.ToolCalls[1].Name);
        Assert.Equal("""{"zone":"Europe/Paris"}""", choice.ToolCalls[1].Arguments);
        Assert.All(choice.ToolCalls, c => Assert.Matches("^call_[A-Za-z0-9]{24}$", c.Id));
        Assert.NotEqual(choice.ToolCalls[0].Id, choice.ToolCalls[1].Id);
        Assert.Equal(new ChatUsage(120, 31), answer.Usage);
    }

    [Fact]
    public async Task Error_line_mid_stream_is_an_error_event()
    {
        var stream = TextStream[..TextStream.IndexOf("{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:01Z\"", StringComparison.Ordinal)]
            + "{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(stream), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);
        var events = await rig.CollectAsync();

        Assert.Equal(3, events.OfType<TextDeltaEvent>().Count());
        var error = Assert.IsType<ErrorEvent>(events[^1]);
        Assert.Contains("unexpected EOF", error.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(events, e => e is FinishEvent);
    }

    [Fact]
    public async Task Error_line_first_is_a_chat_exception()
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8("{\"error\":\"model requires more system memory\"}\n"), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(502, ex.StatusCode);
        Assert.Contains("model requires more system memory", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_404_for_a_missing_model_is_passed_back()
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8("{\"error\":\"model 'llama9' not found\"}"), "application/json", 404);
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());
        Assert.Equal(404, ex.StatusCode);
        Assert.Contains("model 'llama9' not found", ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains("UpstreamModel", ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stream_ending_without_done_is_an_error()
    {
        var stream = TextStream[..TextStream.IndexOf("{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:01Z\"", StringComparison.Ordinal)];
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(stream), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.Equal(3, events.Count);
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal("upstream_truncated", ex.Error.Code);
    }

    [Fact]
    public async Task Malformed_line_is_an_error()
    {
        var stream = TextStream.Replace("\" sky is\"},\"done\":false}", "\" sky is\"},\"done\":fal", StringComparison.Ordinal);
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(stream), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream);

        var (events, failure) = await UpstreamKit.CollectUntilFailureAsync(rig.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.Single(events);
        var ex = Assert.IsType<ChatException>(failure);
        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_malformed", ex.Error.Code);
        Assert.IsAssignableFrom<JsonException>(ex.InnerException);
    }
}
