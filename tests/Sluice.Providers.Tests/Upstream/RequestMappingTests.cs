using System.Text.Json;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>What each adapter sends upstream: path, headers (key header included), body.</summary>
public sealed class RequestMappingTests
{
    private const string ToolConversation = """
        {
          "model": "test-model",
          "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
              {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
              {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny, 24 C"},
            {"role": "user", "content": "Thanks. Which is warmer?"}
          ],
          "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
          "tool_choice": "required",
          "temperature": 0.3,
          "top_p": 0.9,
          "max_tokens": 200,
          "stop": ["END"],
          "seed": 7,
          "stream": true
        }
        """;

    [Fact]
    public async Task OpenAI_forwards_the_client_body_replacing_only_model_and_stream_options()
    {
        const string Body = """
            {"model":"test-model","messages":[{"role":"user","content":"Hi"}],"stream":false,
             "stream_options":{"include_usage":false},"logprobs":true,"top_logprobs":2,
             "response_format":{"type":"json_object"},"x_vendor_field":{"nested":[1,2,{"a":"\u00e9\"q"}]},"n":2}
            """;
        const string Key = "sk-test-openai-0123456789";
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var rig = await WithKeyAsync("openai", upstream, Key, o => o.Headers = new() { ["OpenAI-Project"] = "proj_42" });
        await rig.CollectAsync(UpstreamKit.Request(Body));

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("POST", sent.Method);
        Assert.Equal("/v1/chat/completions", sent.PathAndQuery);
        Assert.Equal("Bearer " + Key, sent.Headers["authorization"]);
        Assert.Equal("proj_42", sent.Headers["openai-project"]);
        Assert.Contains("text/event-stream", sent.Headers["accept"], StringComparison.Ordinal);
        Assert.StartsWith("application/json", sent.Headers["content-type"], StringComparison.Ordinal);

        var json = sent.Json;
        Assert.Equal("upstream-model", json.GetProperty("model").GetString());
        Assert.True(json.GetProperty("stream").GetBoolean());
        Assert.True(json.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.Single(json.GetProperty("stream_options").EnumerateObject());
        Assert.True(json.GetProperty("logprobs").GetBoolean());
        Assert.Equal(2, json.GetProperty("top_logprobs").GetInt32());
        Assert.Equal(2, json.GetProperty("n").GetInt32());
        Assert.Equal("json_object", json.GetProperty("response_format").GetProperty("type").GetString());
        Assert.Equal("é\"q", json.GetProperty("x_vendor_field").GetProperty("nested")[2].GetProperty("a").GetString());
        Assert.Equal("Hi", json.GetProperty("messages")[0].GetProperty("content").GetString());
        Assert.Equal(
            ["model", "messages", "logprobs", "top_logprobs", "response_format", "x_vendor_field", "n", "stream", "stream_options"],
            json.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task OpenAI_sends_the_prompt_shorthand_as_messages()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);
        await rig.CollectAsync(UpstreamKit.Request("""{"model":"test-model","prompt":"Hello there","temperature":0.5}"""));

        var json = rig.Upstream.Requests[0].Json;
        Assert.False(json.TryGetProperty("prompt", out _));
        var message = Assert.Single(json.GetProperty("messages").EnumerateArray());
        Assert.Equal("user", message.GetProperty("role").GetString());
        Assert.Equal("Hello there", message.GetProperty("content").GetString());
        Assert.Equal(0.5, json.GetProperty("temperature").GetDouble());
    }

    [Fact]
    public async Task OpenAI_builds_a_body_for_requests_made_in_code()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);
        var parsed = UpstreamKit.Request(ToolConversation);
        var request = new Sluice.Protocol.Chat.ChatRequest
        {
            Model = parsed.Model,
            Messages = parsed.Messages,
            MaxTokens = parsed.MaxTokens,
            Temperature = parsed.Temperature,
            Tools = parsed.Tools,
            ToolsJson = parsed.ToolsJson,
            ToolChoice = parsed.ToolChoice,
            Stop = parsed.Stop,
        };
        await rig.CollectAsync(request);

        var json = rig.Upstream.Requests[0].Json;
        Assert.Equal("upstream-model", json.GetProperty("model").GetString());
        Assert.Equal(7, json.GetProperty("messages").GetArrayLength());
        var assistant = json.GetProperty("messages")[3];
        Assert.Equal(JsonValueKind.Null, assistant.GetProperty("content").ValueKind);
        Assert.Equal("call_2", assistant.GetProperty("tool_calls")[1].GetProperty("id").GetString());
        Assert.Equal("{\"city\":\"Rome\"}", assistant.GetProperty("tool_calls")[1].GetProperty("function").GetProperty("arguments").GetString());
        Assert.Equal("call_1", json.GetProperty("messages")[4].GetProperty("tool_call_id").GetString());
        Assert.Equal(200, json.GetProperty("max_tokens").GetInt32());
        Assert.Equal("get_weather", json.GetProperty("tools")[0].GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("required", json.GetProperty("tool_choice").GetString());
        Assert.Equal("END", json.GetProperty("stop")[0].GetString());
        Assert.True(json.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
    }

    [Fact]
    public async Task Anthropic_maps_system_roles_tools_and_tool_results()
    {
        const string Key = "sk-ant-test-0123456789";
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/basic_response.sse"));
        await using var rig = await WithKeyAsync("anthropic", upstream, Key);
        await rig.CollectAsync(UpstreamKit.Request(ToolConversation));

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("/v1/messages", sent.PathAndQuery);
        Assert.Equal(Key, sent.Headers["x-api-key"]);
        Assert.Equal("2023-06-01", sent.Headers["anthropic-version"]);
        Assert.False(sent.Headers.ContainsKey("authorization"));

        var json = sent.Json;
        Assert.Equal("upstream-model", json.GetProperty("model").GetString());
        Assert.Equal("Be brief.\n\nUse metric units.", json.GetProperty("system").GetString());
        Assert.Equal(200, json.GetProperty("max_tokens").GetInt32());
        Assert.True(json.GetProperty("stream").GetBoolean());
        Assert.Equal(0.3, json.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, json.GetProperty("top_p").GetDouble());
        Assert.Equal("END", json.GetProperty("stop_sequences")[0].GetString());

        var messages = json.GetProperty("messages");
        Assert.Equal(["user", "assistant", "user"], messages.EnumerateArray().Select(m => m.GetProperty("role").GetString()));
        Assert.Equal("Weather in Paris and Rome?", messages[0].GetProperty("content")[0].GetProperty("text").GetString());

        var toolUses = messages[1].GetProperty("content");
        Assert.Equal(2, toolUses.GetArrayLength());
        Assert.Equal("tool_use", toolUses[0].GetProperty("type").GetString());
        Assert.Equal("call_1", toolUses[0].GetProperty("id").GetString());
        Assert.Equal("get_weather", toolUses[0].GetProperty("name").GetString());
        Assert.Equal("Rome", toolUses[1].GetProperty("input").GetProperty("city").GetString());

        // Both tool results and the next question share one user turn.
        var results = messages[2].GetProperty("content");
        Assert.Equal(["tool_result", "tool_result", "text"], results.EnumerateArray().Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("call_1", results[0].GetProperty("tool_use_id").GetString());
        Assert.Equal("{\"temp\":18}", results[0].GetProperty("content").GetString());
        Assert.Equal("sunny, 24 C", results[1].GetProperty("content").GetString());

        var tool = Assert.Single(json.GetProperty("tools").EnumerateArray());
        Assert.Equal("get_weather", tool.GetProperty("name").GetString());
        Assert.Equal("Current weather", tool.GetProperty("description").GetString());
        Assert.Equal("string", tool.GetProperty("input_schema").GetProperty("properties").GetProperty("city").GetProperty("type").GetString());
        Assert.Equal("any", json.GetProperty("tool_choice").GetProperty("type").GetString());
    }

    [Fact]
    public async Task Anthropic_max_tokens_defaults_to_the_models_output_limit()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/basic_response.sse"));
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream, o => o.MaxOutputTokens = 4096);
        await rig.CollectAsync();

        var json = rig.Upstream.Requests[0].Json;
        Assert.Equal(4096, json.GetProperty("max_tokens").GetInt32());
        Assert.False(json.TryGetProperty("system", out _));
    }

    [Fact]
    public async Task Gemini_maps_roles_system_instruction_generation_config_and_functions()
    {
        const string Key = "AIza-test-0123456789";
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("gemini/googleai/streaming-success-basic-reply-short.sse"));
        await using var rig = await WithKeyAsync("gemini", upstream, Key, o => o.UpstreamModel = "gemini-2.0-flash");
        await rig.CollectAsync(UpstreamKit.Request(ToolConversation));

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse", sent.PathAndQuery);
        Assert.Equal(Key, sent.Headers["x-goog-api-key"]);
        Assert.False(sent.Headers.ContainsKey("authorization"));

        var json = sent.Json;
        Assert.Equal("Be brief.\n\nUse metric units.", json.GetProperty("systemInstruction").GetProperty("parts")[0].GetProperty("text").GetString());
        var contents = json.GetProperty("contents");
        Assert.Equal(["user", "model", "user"], contents.EnumerateArray().Select(c => c.GetProperty("role").GetString()));
        Assert.Equal("Weather in Paris and Rome?", contents[0].GetProperty("parts")[0].GetProperty("text").GetString());

        var calls = contents[1].GetProperty("parts");
        Assert.Equal("get_weather", calls[0].GetProperty("functionCall").GetProperty("name").GetString());
        Assert.Equal("Paris", calls[0].GetProperty("functionCall").GetProperty("args").GetProperty("city").GetString());

        var answers = contents[2].GetProperty("parts");
        Assert.Equal("get_weather", answers[0].GetProperty("functionResponse").GetProperty("name").GetString());
        Assert.Equal(18, answers[0].GetProperty("functionResponse").GetProperty("response").GetProperty("temp").GetInt32());
        Assert.Equal("sunny, 24 C", answers[1].GetProperty("functionResponse").GetProperty("response").GetProperty("content").GetString());
        Assert.Equal("Thanks. Which is warmer?", answers[2].GetProperty("text").GetString());

        var config = json.GetProperty("generationConfig");
        Assert.Equal(0.3, config.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, config.GetProperty("topP").GetDouble());
        Assert.Equal(200, config.GetProperty("maxOutputTokens").GetInt32());
        Assert.Equal("END", config.GetProperty("stopSequences")[0].GetString());
        Assert.Equal(7, config.GetProperty("seed").GetInt32());

        var declaration = json.GetProperty("tools")[0].GetProperty("functionDeclarations")[0];
        Assert.Equal("get_weather", declaration.GetProperty("name").GetString());
        Assert.Equal("object", declaration.GetProperty("parameters").GetProperty("type").GetString());
        Assert.Equal("ANY", json.GetProperty("toolConfig").GetProperty("functionCallingConfig").GetProperty("mode").GetString());
    }

    [Fact]
    public async Task Ollama_maps_messages_tools_and_options()
    {
        const string Done = "{\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"done\":true,\"done_reason\":\"stop\"}\n";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8(Done), "application/x-ndjson");
        await using var rig = await UpstreamRig.StartAsync("ollama", upstream, o => o.UpstreamModel = "llama3.2");
        await rig.CollectAsync(UpstreamKit.Request(ToolConversation));

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("/api/chat", sent.PathAndQuery);
        Assert.False(sent.Headers.ContainsKey("authorization"));
        var json = sent.Json;
        Assert.Equal("llama3.2", json.GetProperty("model").GetString());
        Assert.True(json.GetProperty("stream").GetBoolean());
        var messages = json.GetProperty("messages");
        Assert.Equal(["system", "system", "user", "assistant", "tool", "tool", "user"], messages.EnumerateArray().Select(m => m.GetProperty("role").GetString()));
        Assert.Equal("Paris", messages[3].GetProperty("tool_calls")[0].GetProperty("function").GetProperty("arguments").GetProperty("city").GetString());
        Assert.Equal("get_weather", messages[4].GetProperty("tool_name").GetString());
        Assert.Equal("get_weather", json.GetProperty("tools")[0].GetProperty("function").GetProperty("name").GetString());
        var options = json.GetProperty("options");
        Assert.Equal(0.3, options.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, options.GetProperty("top_p").GetDouble());
        Assert.Equal(200, options.GetProperty("num_predict").GetInt32());
        Assert.Equal("END", options.GetProperty("stop")[0].GetString());
        Assert.Equal(7, options.GetProperty("seed").GetInt32());
    }

    [Theory]
    [InlineData("anthropic", "n")]
    [InlineData("gemini", "n")]
    [InlineData("ollama", "n")]
    [InlineData("anthropic", "logprobs")]
    [InlineData("gemini", "logprobs")]
    [InlineData("ollama", "logprobs")]
    public async Task What_a_provider_cannot_carry_is_a_400_naming_it_before_calling_upstream(string provider, string param)
    {
        // n > 1: these providers answer once per request; logprobs: none come back through them.
        var asked = param == "n" ? "\"n\":2" : "\"logprobs\":true,\"top_logprobs\":2";
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8("{}"));
        await using var rig = await UpstreamRig.StartAsync(provider, upstream);

        var ex = await Assert.ThrowsAsync<Sluice.Protocol.ChatException>(() => rig.CollectAsync(UpstreamKit.Request(
            $$"""{"model":"test-model","messages":[{"role":"user","content":"Hi"}],{{asked}}}""")));
        Assert.Equal(400, ex.StatusCode);
        Assert.Equal(param, ex.Error.Param);
        Assert.Empty(rig.Upstream.Requests);
    }

    [Fact]
    public async Task Invalid_tool_call_arguments_in_history_are_a_400_naming_the_field()
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8("{}"));
        await using var rig = await UpstreamRig.StartAsync("anthropic", upstream);
        var body = ToolConversation.Replace("{\\\"city\\\":\\\"Rome\\\"}", "{not json", StringComparison.Ordinal);

        var ex = await Assert.ThrowsAsync<Sluice.Protocol.ChatException>(() => rig.CollectAsync(UpstreamKit.Request(body)));
        Assert.Equal(400, ex.StatusCode);
        Assert.Equal("messages[3].tool_calls[1].function.arguments", ex.Error.Param);
    }

    [Theory]
    [InlineData("anthropic", "top_k")]
    [InlineData("gemini", "generationConfig.topK")]
    [InlineData("ollama", "options.top_k")]
    public async Task Top_k_from_an_anthropic_client_reaches_upstreams_that_know_it(string provider, string path)
    {
        await using var upstream = await ReplayUpstream.StartAsync(UpstreamKit.Utf8("{}"));
        await using var rig = await UpstreamRig.StartAsync(provider, upstream, o => o.MaxAttempts = 1);
        var request = Sluice.Protocol.Anthropic.AnthropicRequestParser.Parse(UpstreamKit.Utf8(
            """{"model": "test-model", "max_tokens": 20, "top_k": 17, "messages": [{"role": "user", "content": "Hi"}]}"""));

        // The empty answer is an error; only what was sent matters here.
        await Record.ExceptionAsync(() => rig.CollectAsync(request));

        var value = path.Split('.').Aggregate(Assert.Single(rig.Upstream.Requests).Json, (json, name) => json.GetProperty(name));
        Assert.Equal(17, value.GetInt32());
    }

    private static async Task<UpstreamRig> WithKeyAsync(string provider, ReplayUpstream upstream, string key, Action<ModelOptions>? configure = null)
    {
        var variable = "SLUICE_TEST_KEY_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(variable, key);
        return await UpstreamRig.StartAsync(provider, upstream, o =>
        {
            o.ApiKeyEnv = variable;
            configure?.Invoke(o);
        });
    }
}
