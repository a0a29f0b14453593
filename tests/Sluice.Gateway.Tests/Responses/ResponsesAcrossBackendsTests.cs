using System.ClientModel;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Responses;

/// <summary>
/// Every dialect from every kind of backend for the new features: the Responses API from simulated models and recorded
/// Chat Completions, Anthropic, Gemini and Responses upstreams (held to the event grammar, or passed through byte for
/// byte), the Responses upstream read by Chat Completions, Anthropic and Ollama clients, and structured outputs
/// through a recorded Anthropic stream.
/// </summary>
public sealed class ResponsesAcrossBackendsTests
{
    public static TheoryData<string, string, string> Backends() => new()
    {
        { "openai", "openai/text-a.sse", "chat" },
        { "anthropic", "anthropic/basic_response.sse", "chat" },
        { "gemini", "gemini/googleai/streaming-success-basic-reply-short.sse", "chat" },
        { "openai", "openai-responses/text.sse", "responses" },
        { "openai", "openai-responses/two-messages.sse", "responses" },
    };

    private static Task<TestGateway> StartAsync(ReplayUpstream upstream, string provider, string api) => TestGateway.StartAsync(options => options.Models =
    [
        new ModelOptions
        {
            Name = "up",
            Provider = provider,
            Api = api == "responses" ? "responses" : null,
            BaseUrl = upstream.BaseUrl + (provider == "gemini" ? "/v1beta" : "/v1"),
            UpstreamModel = "model-x",
            MaxAttempts = 1,
        },
    ]);

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Every_dialect_reads_the_same_answer_and_responses_clients_get_the_grammar(string provider, string fixture, string api)
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read(fixture));
        await using var gateway = await StartAsync(upstream, provider, api);

        using var chat = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json("""{"model":"up","messages":[{"role":"user","content":"Hello"}]}"""));
        Assert.Equal(200, (int)chat.StatusCode);
        using var chatBody = JsonDocument.Parse(await chat.Content.ReadAsStringAsync());
        var reference = chatBody.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.False(string.IsNullOrEmpty(reference));

        using var stream = await gateway.Client.PostAsync("v1/responses", TestGateway.Json("""{"model":"up","input":"Hello","stream":true}"""));
        var sse = await stream.Content.ReadAsStringAsync();
        if (api == "responses")
        {
            // Passed through: the upstream's events, unchanged and in order.
            var sent = ResponsesGrammar.Parse(sse).Select(e => e.Data.GetRawText()).ToList();
            var recorded = ResponsesGrammar.Parse(System.Text.Encoding.UTF8.GetString(Fixtures.Read(fixture))).Select(e => e.Data.GetRawText()).ToList();
            Assert.Equal(recorded, sent);
            ResponsesGrammar.Check(sse, consecutive: false);
            Assert.Equal("model-x", upstream.Requests[^1].Json.GetProperty("model").GetString());
            Assert.Equal("Hello", upstream.Requests[^1].Json.GetProperty("input").GetString());
        }
        else
        {
            var events = ResponsesGrammar.Check(sse);
            var text = string.Concat(events.Where(e => e.Type == "response.output_text.delta").Select(e => e.Data.GetProperty("delta").GetString()));
            Assert.Equal(reference, text);
        }

        using var plain = await gateway.Client.PostAsync("v1/responses", TestGateway.Json("""{"model":"up","input":"Hello"}"""));
        using var response = JsonDocument.Parse(await plain.Content.ReadAsStringAsync());
        var output = string.Join("\n\n", response.RootElement.GetProperty("output").EnumerateArray()
            .Where(o => o.GetProperty("type").GetString() == "message")
            .Select(o => string.Concat(o.GetProperty("content").EnumerateArray().Select(c => c.GetProperty("text").GetString()))));
        if (fixture.Contains("two-messages", StringComparison.Ordinal))
        {
            // That recording had most deltas cut out: its done texts (the response object) are longer than its deltas.
            Assert.StartsWith("Got it", output, StringComparison.Ordinal);
            Assert.Contains("\n\nHere are a few **AI headlines", output, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(reference, output);
        }

        using var anthropic = await gateway.Client.PostAsync("v1/messages", TestGateway.Json("""{"model":"up","max_tokens":500,"messages":[{"role":"user","content":"Hello"}]}"""));
        using var anthropicBody = JsonDocument.Parse(await anthropic.Content.ReadAsStringAsync());
        Assert.Equal(reference, anthropicBody.RootElement.GetProperty("content")[0].GetProperty("text").GetString());

        using var ollama = await gateway.Client.PostAsync("api/chat", TestGateway.Json("""{"model":"up","stream":false,"messages":[{"role":"user","content":"Hello"}]}"""));
        using var ollamaBody = JsonDocument.Parse(await ollama.Content.ReadAsStringAsync());
        Assert.Equal(reference, ollamaBody.RootElement.GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task A_recorded_responses_function_call_reaches_chat_clients_as_a_tool_call_and_a_failure_as_an_error()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai-responses/reasoning-then-function-call.sse"));
        await using var gateway = await StartAsync(upstream, "openai", "responses");
        using var chat = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(
            """{"model":"up","messages":[{"role":"user","content":"12+7"}],"tools":[{"type":"function","function":{"name":"calculator","parameters":{"type":"object"}}}]}"""));
        using var body = JsonDocument.Parse(await chat.Content.ReadAsStringAsync());
        var choice = body.RootElement.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var call = choice.GetProperty("message").GetProperty("tool_calls")[0];
        Assert.Equal("call_AB6AaRZ1FYZB2RwS6A5vbdqn", call.GetProperty("id").GetString());
        Assert.Equal("""{"a":12,"b":7,"op":"add"}""", call.GetProperty("function").GetProperty("arguments").GetString());

        // The upstream got a Responses request built from the chat fields.
        var sent = upstream.Requests[^1].Json;
        Assert.Equal("function", sent.GetProperty("tools")[0].GetProperty("type").GetString());
        Assert.Equal("calculator", sent.GetProperty("tools")[0].GetProperty("name").GetString());
        Assert.Equal("user", sent.GetProperty("input")[0].GetProperty("role").GetString());
        Assert.False(sent.GetProperty("store").GetBoolean());

        await using var failing = await ReplayUpstream.StartAsync(Fixtures.Read("openai-responses/error-failed.sse"));
        await using var gateway2 = await StartAsync(failing, "openai", "responses");
        using var failed = await gateway2.Client.PostAsync("v1/chat/completions", TestGateway.Json("""{"model":"up","stream":true,"messages":[{"role":"user","content":"Hi"}]}"""));
        var frames = await failed.Content.ReadAsStringAsync();
        Assert.Contains("insufficient_quota", frames, StringComparison.Ordinal);
        Assert.DoesNotContain("[DONE]", frames, StringComparison.Ordinal);

        using var responsesFailed = await gateway2.Client.PostAsync("v1/responses", TestGateway.Json("""{"model":"up","input":"Hi","stream":true}"""));
        var events = ResponsesGrammar.Check(await responsesFailed.Content.ReadAsStringAsync(), consecutive: false);
        Assert.Equal(["error", "response.failed"], events.TakeLast(2).Select(e => e.Type));
    }

    private sealed record WeatherQuery(string Location);

    [Fact]
    public async Task Structured_output_through_anthropic_is_a_forced_tool_unwrapped_into_text_the_sdk_parses()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/tool_use_response.sse"));
        await using var gateway = await StartAsync(upstream, "anthropic", "chat");
        var client = new ChatClient("up", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(gateway.BaseAddress, "v1") });
        ChatCompletion completion = await client.CompleteChatAsync(
            [new UserChatMessage("Where should I check the weather?")],
            new ChatCompletionOptions
            {
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat(
                    "get_weather",
                    BinaryData.FromString("""{"type":"object","properties":{"location":{"type":"string"}},"required":["location"],"additionalProperties":false}"""),
                    jsonSchemaIsStrict: true),
            });

        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Empty(completion.ToolCalls);
        var query = JsonSerializer.Deserialize<WeatherQuery>(completion.Content[0].Text, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
        Assert.Equal("Paris", query.Location);

        var sent = upstream.Requests[^1].Json;
        Assert.Equal("get_weather", sent.GetProperty("tools")[0].GetProperty("name").GetString());
        Assert.Equal("string", sent.GetProperty("tools")[0].GetProperty("input_schema").GetProperty("properties").GetProperty("location").GetProperty("type").GetString());
        Assert.Equal("tool", sent.GetProperty("tool_choice").GetProperty("type").GetString());
        Assert.Equal("get_weather", sent.GetProperty("tool_choice").GetProperty("name").GetString());
    }

    [Fact]
    public async Task Structured_output_is_translated_for_gemini_ollama_and_chat_upstreams()
    {
        const string request = """
            {"model":"up","messages":[{"role":"user","content":"Hi"}],
             "response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"},"nick":{"type":["string","null"]}},"required":["name","nick"],"additionalProperties":false}}}}
            """;
        await using var gemini = await ReplayUpstream.StartAsync(Fixtures.Read("gemini/googleai/streaming-success-basic-reply-short.sse"));
        await using (var gateway = await StartAsync(gemini, "gemini", "chat"))
        {
            using var posted = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(request));
            var config = gemini.Requests[^1].Json.GetProperty("generationConfig");
            Assert.Equal("application/json", config.GetProperty("responseMimeType").GetString());
            var schema = config.GetProperty("responseSchema");
            Assert.Equal("OBJECT", schema.GetProperty("type").GetString());
            Assert.Equal("STRING", schema.GetProperty("properties").GetProperty("nick").GetProperty("type").GetString());
            Assert.True(schema.GetProperty("properties").GetProperty("nick").GetProperty("nullable").GetBoolean());
            Assert.False(schema.TryGetProperty("additionalProperties", out _));
        }

        await using var responses = await ReplayUpstream.StartAsync(Fixtures.Read("openai-responses/text.sse"));
        await using (var gateway = await StartAsync(responses, "openai", "responses"))
        {
            using var posted = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(request));
            var format = responses.Requests[^1].Json.GetProperty("text").GetProperty("format");
            Assert.Equal("json_schema", format.GetProperty("type").GetString());
            Assert.Equal("person", format.GetProperty("name").GetString());
            Assert.True(format.GetProperty("strict").GetBoolean());
        }

        await using var chat = await ReplayUpstream.StartAsync(Fixtures.Read("openai/text-a.sse"));
        await using (var gateway = await StartAsync(chat, "openai", "chat"))
        {
            // From the Responses dialect (no chat body to pass through) the chat upstream gets response_format built.
            using var posted = await gateway.Client.PostAsync("v1/responses", TestGateway.Json(
                """{"model":"up","input":"Hi","text":{"format":{"type":"json_schema","name":"person","schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}}}"""));
            var format = chat.Requests[^1].Json.GetProperty("response_format");
            Assert.Equal("json_schema", format.GetProperty("type").GetString());
            Assert.Equal("person", format.GetProperty("json_schema").GetProperty("name").GetString());
        }
    }

    [Fact]
    public async Task Logprobs_survive_a_non_streamed_answer_assembled_from_an_openai_upstream()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/content-logprobs.sse"));
        await using var gateway = await StartAsync(upstream, "openai", "chat");
        using var response = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(
            """{"model":"up","logprobs":true,"top_logprobs":2,"messages":[{"role":"user","content":"Say foo"}]}"""));
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var content = body.RootElement.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content");
        Assert.Equal("Foo", content[0].GetProperty("token").GetString());
        Assert.Equal(-0.0025094282, content[0].GetProperty("logprob").GetDouble(), 9);
    }
}
