using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models.Messages;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// An OpenAI upstream (whose chunks Sluice passes through as <c>OpenAIChunkEvent</c>s) served to Anthropic and
/// Ollama clients: they must read the same answer an OpenAI client of Sluice reads, and the upstream must receive a
/// proper OpenAI request, not the client's dialect.
/// </summary>
public sealed class CrossDialectTests
{
    private static Task<TestGateway> StartAsync(ReplayUpstream upstream) => TestGateway.StartAsync(options => options.Models =
    [
        new ModelOptions { Name = "gpt", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "gpt-4o", MaxAttempts = 1 },
    ]);

    /// <summary>What Sluice's own OpenAI endpoint assembles from the recording: the reference answer.</summary>
    private static async Task<JsonElement> OpenAIAnswerAsync(TestGateway gateway)
    {
        using var response = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(
            """{"model": "gpt", "messages": [{"role": "user", "content": "Weather in Edinburgh?"}]}"""));
        Assert.Equal(200, (int)response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.Clone();
    }

    [Fact]
    public async Task Openai_text_stream_reaches_anthropic_and_ollama_clients_unchanged()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var gateway = await StartAsync(upstream);
        var reference = await OpenAIAnswerAsync(gateway);
        var referenceText = reference.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();

        using var client = new AnthropicClient(new ClientOptions { BaseUrl = gateway.BaseAddress.ToString().TrimEnd('/'), ApiKey = "unused", MaxRetries = 0 });
        var message = await client.Messages.CreateStreaming(new MessageCreateParams
        {
            Model = "gpt",
            MaxTokens = 100,
            System = "Be brief.",
            Messages = [new UserMessageParam("Weather in Edinburgh?")],
            Tools = [new Tool { Name = "get_weather", InputSchema = new InputSchema { Properties = new Dictionary<string, JsonElement>() } }],
            ToolChoice = new ToolChoiceAuto(),
        }).Aggregate();

        Assert.True(message.Content[0].TryPickText(out var text));
        Assert.Equal(referenceText, text.Text);
        Assert.Equal(StopReason.EndTurn, message.StopReason!.Value());
        Assert.Equal(reference.GetProperty("usage").GetProperty("completion_tokens").GetInt64(), message.Usage.OutputTokens);

        // The upstream got an OpenAI request built from the parsed fields, not the Anthropic body.
        var sent = upstream.Requests[^1].Json;
        Assert.Equal("gpt-4o", sent.GetProperty("model").GetString());
        Assert.Equal("system", sent.GetProperty("messages")[0].GetProperty("role").GetString());
        Assert.Equal("Be brief.", sent.GetProperty("messages")[0].GetProperty("content").GetString());
        Assert.Equal("function", sent.GetProperty("tools")[0].GetProperty("type").GetString());
        Assert.Equal("auto", sent.GetProperty("tool_choice").GetString());
        Assert.Equal(100, sent.GetProperty("max_tokens").GetInt32());
        Assert.False(sent.TryGetProperty("system", out _));

        using var ollama = await gateway.Client.PostAsync("api/chat", TestGateway.Json(
            """{"model": "gpt", "stream": false, "messages": [{"role": "user", "content": "Weather in Edinburgh?"}]}"""));
        using var ollamaBody = JsonDocument.Parse(await ollama.Content.ReadAsStringAsync());
        Assert.Equal(referenceText, ollamaBody.RootElement.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(reference.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), ollamaBody.RootElement.GetProperty("prompt_eval_count").GetInt32());
    }

    [Fact]
    public async Task Openai_tool_call_fragments_become_input_json_deltas_and_a_whole_ollama_tool_call()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/tool-call-a.sse"));
        await using var gateway = await StartAsync(upstream);
        var reference = (await OpenAIAnswerAsync(gateway)).GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls")[0];
        var referenceArguments = JsonDocument.Parse(reference.GetProperty("function").GetProperty("arguments").GetString()!).RootElement;

        using var client = new AnthropicClient(new ClientOptions { BaseUrl = gateway.BaseAddress.ToString().TrimEnd('/'), ApiKey = "unused", MaxRetries = 0 });
        var fragments = 0;
        var events = new List<RawMessageStreamEvent>();
        await foreach (var streamEvent in client.Messages.CreateStreaming(new MessageCreateParams
        {
            Model = "gpt",
            MaxTokens = 100,
            Messages = [new UserMessageParam("Weather in Edinburgh?")],
        }))
        {
            events.Add(streamEvent);
            fragments += streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickInputJson(out _) ? 1 : 0;
        }

        var message = await events.ToAsyncEnumerable().Aggregate();
        Assert.True(fragments > 1);
        Assert.True(message.Content.Single().TryPickToolUse(out var toolUse));
        Assert.Equal(reference.GetProperty("id").GetString(), toolUse.ID);
        Assert.Equal(reference.GetProperty("function").GetProperty("name").GetString(), toolUse.Name);
        Assert.Equal(referenceArguments.GetProperty("city").GetString(), toolUse.Input["city"].GetString());
        Assert.Equal(StopReason.ToolUse, message.StopReason!.Value());

        using var ollama = await gateway.Client.PostAsync("api/chat", TestGateway.Json(
            """{"model": "gpt", "messages": [{"role": "user", "content": "Weather in Edinburgh?"}]}"""));
        var lines = (await ollama.Content.ReadAsStringAsync()).TrimEnd('\n').Split('\n').Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        var call = Assert.Single(lines, l => l.GetProperty("message").TryGetProperty("tool_calls", out _)).GetProperty("message").GetProperty("tool_calls")[0];
        Assert.Equal(referenceArguments.GetProperty("city").GetString(), call.GetProperty("function").GetProperty("arguments").GetProperty("city").GetString());
        Assert.True(lines[^1].GetProperty("done").GetBoolean());
    }
}
