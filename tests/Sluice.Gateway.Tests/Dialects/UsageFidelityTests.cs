using System.ClientModel;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// Usage details (cached prompt tokens, cache writes, reasoning tokens) from every upstream that reports them, in every
/// dialect's usage; <c>"usage": null</c> on OpenAI chunks when <c>include_usage</c> is on.
/// </summary>
public sealed class UsageFidelityTests
{
    private const string AnthropicWithCache = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_cache","type":"message","role":"assistant","content":[],"model":"claude-test","usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1,"service_tier":"standard"}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi there"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}

        event: message_stop
        data: {"type":"message_stop"}


        """;

    private const string GeminiWithThoughts =
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Blue\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],"
        + "\"usageMetadata\": {\"promptTokenCount\": 40,\"candidatesTokenCount\": 2,\"thoughtsTokenCount\": 55,\"cachedContentTokenCount\": 32,\"totalTokenCount\": 97}}\n\n";

    private const string OpenAIWithCache =
        "data: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n"
        + "data: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
        + "data: {\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[],\"usage\":{\"prompt_tokens\":1500,\"completion_tokens\":90,\"total_tokens\":1590,\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":64,\"audio_tokens\":0}}}\n\n"
        + "data: [DONE]\n\n";

    [Fact]
    public async Task Openai_chunks_carry_usage_null_when_include_usage_is_on_and_no_usage_field_otherwise()
    {
        await using var gateway = await TestGateway.StartAsync();
        foreach (var includeUsage in new[] { true, false })
        {
            using var response = await gateway.PostChatAsync(
                """{"model":"sim-fast","prompt":"Hello","stream":true,"max_tokens":5,"stream_options":{"include_usage":INCLUDE}}""".Replace("INCLUDE", includeUsage ? "true" : "false", StringComparison.Ordinal));
            var chunks = await ChunksAsync(response);
            var answerChunks = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).ToList();
            Assert.Equal(6, answerChunks.Count);
            foreach (var chunk in answerChunks)
            {
                Assert.Equal(includeUsage, chunk.TryGetProperty("usage", out var usage));
                if (includeUsage)
                {
                    Assert.Equal(JsonValueKind.Null, usage.ValueKind);
                }
            }

            Assert.Equal(includeUsage, chunks[^1].TryGetProperty("usage", out var final) && final.ValueKind == JsonValueKind.Object);
        }
    }

    [Fact]
    public async Task Anthropic_cache_reads_reach_the_openai_sdk_as_cached_tokens_streamed_and_not()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(AnthropicWithCache));
        await using var gateway = await TestGateway.StartAsync(o => o.Models =
            [new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", MaxAttempts = 1 }]);
        var client = new ChatClient("claude", new ApiKeyCredential("sk-test"), new OpenAIClientOptions { Endpoint = new Uri(gateway.BaseAddress, "v1") });

        ChatTokenUsage? streamed = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Hi")]))
        {
            streamed ??= update.Usage;
        }

        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Hi")]);
        foreach (var usage in new[] { streamed!, completion.Usage })
        {
            Assert.Equal(2112, usage.InputTokenCount);
            Assert.Equal(3, usage.OutputTokenCount);
            Assert.Equal(2000, usage.InputTokenDetails.CachedTokenCount);
        }
    }

    [Fact]
    public async Task Anthropic_cache_counts_and_service_tier_reach_an_anthropic_client_in_the_non_streamed_message()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(AnthropicWithCache));
        await using var gateway = await TestGateway.StartAsync(o => o.Models =
            [new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", MaxAttempts = 1 }]);

        using var response = await gateway.Client.PostAsync("v1/messages", TestGateway.Json(
            """{"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}"""));
        using var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = message.RootElement;
        Assert.Equal("msg_cache", root.GetProperty("id").GetString());
        var usage = root.GetProperty("usage");
        Assert.Equal(12, usage.GetProperty("input_tokens").GetInt32());
        Assert.Equal(2000, usage.GetProperty("cache_read_input_tokens").GetInt32());
        Assert.Equal(100, usage.GetProperty("cache_creation_input_tokens").GetInt32());
        Assert.Equal(3, usage.GetProperty("output_tokens").GetInt32());
        Assert.Equal("standard", usage.GetProperty("service_tier").GetString());
    }

    [Fact]
    public async Task Responses_clients_get_cached_and_reasoning_tokens_in_their_usage_details()
    {
        await using var anthropic = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(AnthropicWithCache));
        await using var gemini = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(GeminiWithThoughts));
        await using var gateway = await TestGateway.StartAsync(o => o.Models =
        [
            new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = anthropic.BaseUrl + "/v1", MaxAttempts = 1 },
            new ModelOptions { Name = "gem", Provider = "gemini", BaseUrl = gemini.BaseUrl + "/v1beta", MaxAttempts = 1 },
        ]);

        using var cached = await gateway.Client.PostAsync("v1/responses", TestGateway.Json("""{"model": "claude", "input": "Hi", "store": false}"""));
        var cachedUsage = JsonDocument.Parse(await cached.Content.ReadAsStringAsync()).RootElement.GetProperty("usage");
        Assert.Equal(2112, cachedUsage.GetProperty("input_tokens").GetInt32());
        Assert.Equal(2000, cachedUsage.GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32());

        using var thought = await gateway.Client.PostAsync("v1/responses", TestGateway.Json("""{"model": "gem", "input": "Sky?", "store": false}"""));
        var thoughtUsage = JsonDocument.Parse(await thought.Content.ReadAsStringAsync()).RootElement.GetProperty("usage");
        Assert.Equal(55, thoughtUsage.GetProperty("output_tokens_details").GetProperty("reasoning_tokens").GetInt32());
    }

    [Fact]
    public async Task Gemini_thoughts_and_cached_content_become_reasoning_and_cached_tokens()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(GeminiWithThoughts));
        await using var gateway = await TestGateway.StartAsync(o => o.Models =
            [new ModelOptions { Name = "gem", Provider = "gemini", BaseUrl = upstream.BaseUrl + "/v1beta", MaxAttempts = 1 }]);

        using var response = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json("""{"model":"gem","messages":[{"role":"user","content":"Sky?"}]}"""));
        using var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var usage = completion.RootElement.GetProperty("usage");
        Assert.Equal(40, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(57, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(32, usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        Assert.Equal(55, usage.GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());
    }

    [Fact]
    public async Task Openai_cached_tokens_reach_an_anthropic_client_as_cache_reads_and_the_sdk_as_details()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(OpenAIWithCache));
        await using var gateway = await TestGateway.StartAsync(o => o.Models =
            [new ModelOptions { Name = "up", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", MaxAttempts = 1 }]);

        using var response = await gateway.Client.PostAsync("v1/messages", TestGateway.Json(
            """{"model": "up", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"""));
        var frames = new List<SseEvent>();
        var parser = new SseParser();
        parser.Feed(await response.Content.ReadAsByteArrayAsync(), frames);
        var delta = frames.Single(f => f.EventType == "message_delta");
        using var document = JsonDocument.Parse(delta.Data);
        var usage = document.RootElement.GetProperty("usage");
        Assert.Equal(1500 - 1024, usage.GetProperty("input_tokens").GetInt32());
        Assert.Equal(1024, usage.GetProperty("cache_read_input_tokens").GetInt32());
        Assert.Equal(90, usage.GetProperty("output_tokens").GetInt32());

        var client = new ChatClient("up", new ApiKeyCredential("sk-test"), new OpenAIClientOptions { Endpoint = new Uri(gateway.BaseAddress, "v1") });
        ChatTokenUsage? streamed = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Hi")]))
        {
            streamed ??= update.Usage;
        }

        Assert.Equal(1024, streamed!.InputTokenDetails.CachedTokenCount);
        Assert.Equal(64, streamed.OutputTokenDetails.ReasoningTokenCount);
    }

    private static async Task<List<JsonElement>> ChunksAsync(HttpResponseMessage response)
    {
        var chunks = new List<JsonElement>();
        await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync()))
        {
            if (!e.IsDone)
            {
                chunks.Add(e.Json());
            }
        }

        return chunks;
    }
}
