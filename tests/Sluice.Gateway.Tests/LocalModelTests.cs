using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using Sluice.Engine;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;
using Sluice.Engine.Tokenization;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Providers.Local;
using Sluice.Testing;
using TemplateMessage = Sluice.Engine.Templates.ChatMessage;

namespace Sluice.Gateway.Tests;

/// <summary>
/// A random-weight GGUF model served by the gateway (<c>"Provider": "local"</c>): through the OpenAI SDK, Anthropic's and
/// Ollama's dialects and a session turn, with text and usage compared to the same greedy generation run in-process
/// (prompt tokens = the tokenizer's count of the rendered chat template), <c>max_tokens</c> ending with <c>length</c>, the
/// end-of-turn token ending with <c>stop</c>, a client that leaves stopping the generation, concurrent requests, refusals
/// and the model list.
/// </summary>
public sealed class LocalModelTests(LocalGatewayFixture fixture) : IClassFixture<LocalGatewayFixture>
{
    private ChatClient OpenAI(string model) => new(
        model,
        new ApiKeyCredential("sk-test-unused"),
        new OpenAIClientOptions { Endpoint = new Uri(fixture.Gateway.BaseAddress, "v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    [Fact]
    public async Task OpenAI_sdk_streams_the_greedy_answer_in_chunks_with_exact_usage_and_length_at_max_tokens()
    {
        var expected = await fixture.ExpectedAsync(LocalGatewayFixture.Long, [new("system", "You are terse."), new("user", "Describe the harbor at night")], 40);
        Assert.Equal(GenerationStopReason.MaxTokens, expected.Stop);

        var text = new StringBuilder();
        var chunks = 0;
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in OpenAI(LocalGatewayFixture.Long).CompleteChatStreamingAsync(
            [new SystemChatMessage("You are terse."), new UserChatMessage("Describe the harbor at night")],
            new ChatCompletionOptions { MaxOutputTokenCount = 40, Temperature = 0 }))
        {
            foreach (var part in update.ContentUpdate)
            {
                chunks++;
                text.Append(part.Text);
            }

            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }

        Assert.Equal(expected.Text, text.ToString());
        Assert.True(chunks >= 10, $"{chunks} chunks");
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(expected.Prompt.Length, usage.InputTokenCount);
        Assert.Equal(40, usage.OutputTokenCount);
        Assert.Equal(fixture.RenderedTokenCount(LocalGatewayFixture.Long, [new("system", "You are terse."), new("user", "Describe the harbor at night")]), usage.InputTokenCount);
    }

    [Fact]
    public async Task The_end_of_turn_token_ends_the_answer_with_stop_and_counts_only_the_tokens_before_it()
    {
        var expected = await fixture.ExpectedAsync(LocalGatewayFixture.Short, [new("user", LocalGatewayFixture.ShortPrompt)], 200);
        Assert.Equal(GenerationStopReason.StopToken, expected.Stop);

        ChatCompletion completion = await OpenAI(LocalGatewayFixture.Short).CompleteChatAsync(
            [new UserChatMessage(LocalGatewayFixture.ShortPrompt)], new ChatCompletionOptions { MaxOutputTokenCount = 200, Temperature = 0 });

        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(expected.Tokens.Count, completion.Usage.OutputTokenCount);
        Assert.Equal(expected.Prompt.Length, completion.Usage.InputTokenCount);
    }

    [Fact]
    public async Task A_stop_string_ends_the_text_before_it()
    {
        var expected = await fixture.ExpectedAsync(LocalGatewayFixture.Long, [new("user", "Tell me about rivers")], 30);
        var words = expected.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var stop = words[^3]; // a word past the first few tokens
        var cut = expected.Text[..expected.Text.IndexOf(stop, StringComparison.Ordinal)];

        using var response = await fixture.Gateway.PostChatAsync($$"""
            {"model": "{{LocalGatewayFixture.Long}}", "messages": [{"role": "user", "content": "Tell me about rivers"}], "max_tokens": 30, "temperature": 0, "stop": [{{JsonSerializer.Serialize(stop)}}]}
            """);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(body);
        var choice = json.RootElement.GetProperty("choices")[0];
        Assert.Equal(cut, choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_client_that_leaves_stops_the_generation()
    {
        var backend = fixture.Backend(LocalGatewayFixture.Long);
        var pool = Assert.IsType<BatchingGenerator>(backend.Generator);

        // HttpClient drains a disposed response for up to 2 s to reuse the connection; a user closing a tab does not.
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = fixture.Gateway.BaseAddress };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var response = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = TestGateway.Json($$"""{"model": "{{LocalGatewayFixture.Long}}", "prompt": "A very long story", "stream": true, "max_tokens": 2000, "temperature": 0}"""),
            },
            HttpCompletionOption.ResponseHeadersRead,
            cts.Token);
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        var stream = await response.Content.ReadAsStreamAsync(cts.Token);
        var seen = 0;
        await foreach (var e in SseReader.ReadAsync(stream, cancellationToken: cts.Token))
        {
            if (++seen == 3)
            {
                break;
            }
        }

        Assert.Equal(1, pool.Running);
        var left = Stopwatch.GetTimestamp();
        response.Dispose();

        var (record, _) = await fixture.Gateway.Usage.WaitForAsync(requestId, TimeSpan.FromSeconds(20));
        while (pool.Running > 0 && Stopwatch.GetElapsedTime(left) < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(10);
        }

        Assert.Equal(0, pool.Running);
        Assert.True(record.Status == UsageStatus.Abandoned, $"recorded {record.Status} with {record.CompletionTokens} tokens, {Stopwatch.GetElapsedTime(left).TotalMilliseconds:F0} ms after the client left");
        Assert.InRange(record.CompletionTokens, 1, 1999);
        Assert.True(Stopwatch.GetElapsedTime(left) < TimeSpan.FromSeconds(2), $"the generation ran on {Stopwatch.GetElapsedTime(left).TotalMilliseconds:F0} ms after the client left");
    }

    [Fact]
    public async Task Anthropic_messages_stream_the_same_answer_with_exact_usage()
    {
        var expected = await fixture.ExpectedAsync(LocalGatewayFixture.Long, [new("system", "Be brief."), new("user", "Name a bird")], 12);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/messages")
        {
            Content = TestGateway.Json($$"""
                {"model": "{{LocalGatewayFixture.Long}}", "max_tokens": 12, "temperature": 0, "stream": true, "system": "Be brief.",
                 "messages": [{"role": "user", "content": "Name a bird"}]}
                """),
        };
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var response = await fixture.Gateway.Client.SendAsync(request);
        var events = await SseTestClient.ReadAllAsync(response);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var data = events.Where(e => !e.IsComment).Select(e => (e.EventType, Json: e.Json())).ToList();
        var text = string.Concat(data.Where(e => e.EventType == "content_block_delta").Select(e => e.Json.GetProperty("delta").GetProperty("text").GetString()));
        Assert.Equal(expected.Text, text);
        var delta = data.Single(e => e.EventType == "message_delta").Json;
        Assert.Equal("max_tokens", delta.GetProperty("delta").GetProperty("stop_reason").GetString());
        Assert.Equal(12, delta.GetProperty("usage").GetProperty("output_tokens").GetInt32());
        Assert.Equal(expected.Prompt.Length, delta.GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.Equal("message_stop", data[^1].EventType);

        using var count = await fixture.Gateway.Client.PostAsync("v1/messages/count_tokens", TestGateway.Json($$"""
            {"model": "{{LocalGatewayFixture.Long}}", "system": "Be brief.", "messages": [{"role": "user", "content": "Name a bird"}]}
            """));
        using var counted = JsonDocument.Parse(await count.Content.ReadAsStringAsync());
        Assert.Equal(expected.Prompt.Length, counted.RootElement.GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public async Task Ollama_chat_streams_ndjson_with_exact_counts()
    {
        var expected = await fixture.ExpectedAsync(LocalGatewayFixture.Long, [new("user", "Sing about the sea")], 10);
        using var response = await fixture.Gateway.Client.PostAsync("api/chat", TestGateway.Json($$"""
            {"model": "{{LocalGatewayFixture.Long}}", "messages": [{"role": "user", "content": "Sing about the sea"}], "options": {"num_predict": 10, "temperature": 0} }
            """));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var lines = body.TrimEnd('\n').Split('\n').Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(expected.Text, string.Concat(lines.Select(l => l.GetProperty("message").GetProperty("content").GetString())));
        var done = lines[^1];
        Assert.Equal("length", done.GetProperty("done_reason").GetString());
        Assert.Equal(10, done.GetProperty("eval_count").GetInt32());
        Assert.Equal(expected.Prompt.Length, done.GetProperty("prompt_eval_count").GetInt32());
    }

    [Fact]
    public async Task A_session_turn_streams_through_the_portal_format()
    {
        using var response = await fixture.Gateway.Client.PostAsync("api/llm/chat/session/stream", TestGateway.Json($$"""
            {"model": "{{LocalGatewayFixture.Long}}", "message": "Tell me about towers", "max_tokens": 8, "temperature": 0}
            """));
        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).Select(e => e.Json()).ToList();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var expected = await fixture.ExpectedAsync(LocalGatewayFixture.Long, [new("user", "Tell me about towers")], 8);
        Assert.Equal(expected.Text, string.Concat(events.Where(e => e.TryGetProperty("content", out _)).Select(e => e.GetProperty("content").GetString())));
        var done = events[^1];
        Assert.True(done.GetProperty("done").GetBoolean());
        Assert.Equal("length", done.GetProperty("finish_reason").GetString());
        Assert.Equal(expected.Prompt.Length, done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task Concurrent_requests_each_get_their_own_answer()
    {
        string[] prompts = ["Tell me about bridges", "Tell me about clocks", "Tell me about islands"];
        var expected = new List<string>();
        foreach (var prompt in prompts)
        {
            expected.Add((await fixture.ExpectedAsync(LocalGatewayFixture.Long, [new("user", prompt)], 48)).Text);
        }

        var answers = await Task.WhenAll(prompts.Select(async prompt =>
        {
            ChatCompletion completion = await OpenAI(LocalGatewayFixture.Long).CompleteChatAsync(
                [new UserChatMessage(prompt)], new ChatCompletionOptions { MaxOutputTokenCount = 48, Temperature = 0 });
            return completion.Content[0].Text;
        }));

        Assert.Equal(expected, answers);
    }

    [Theory]
    [InlineData("""{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}""", "tools")]
    [InlineData(null, "response_format")]
    public async Task Tools_and_structured_outputs_are_refused_with_a_400_naming_the_model(string? tool, string param)
    {
        var extra = tool is null ? "\"response_format\": {\"type\": \"json_object\"}" : $"\"tools\": [{tool}]";
        using var response = await fixture.Gateway.PostChatAsync($$"""
            {"model": "{{LocalGatewayFixture.Long}}", "messages": [{"role": "user", "content": "Weather in Oslo?"}], {{extra}}}
            """);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = json.RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains($"\"{LocalGatewayFixture.Long}\" is a local model", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Models_list_the_local_models_with_their_context_and_the_unavailable_one_with_its_variable()
    {
        using var response = await fixture.Gateway.Client.GetAsync("v1/models");
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var models = json.RootElement.GetProperty("data").EnumerateArray().ToDictionary(m => m.GetProperty("id").GetString()!);

        var local = models[LocalGatewayFixture.Long];
        Assert.Equal("local", local.GetProperty("owned_by").GetString());
        Assert.Equal(LocalGatewayFixture.ContextSize, local.GetProperty("context_window").GetInt32());
        var unavailable = models[LocalGatewayFixture.FromVariable];
        Assert.False(unavailable.GetProperty("available").GetBoolean());
        Assert.Contains(LocalGatewayFixture.PathVariable, unavailable.GetProperty("unavailable_reason").GetString(), StringComparison.Ordinal);

        using var call = await fixture.Gateway.PostChatAsync($$"""{"model": "{{LocalGatewayFixture.FromVariable}}", "prompt": "Hello"}""");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, call.StatusCode);
        Assert.Contains($"Export {LocalGatewayFixture.PathVariable}=", await call.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}

/// <summary>
/// Two random-weight chat models (ChatML, small word vocabulary) served by one gateway, and the same files loaded
/// in-process to compute the answers the gateway must give. <see cref="Long"/>'s greedy answers run past 2,000 tokens;
/// <see cref="Short"/> ends its answer to <see cref="ShortPrompt"/> with the end-of-turn token.
/// </summary>
public sealed class LocalGatewayFixture : IAsyncLifetime
{
    public const string Long = "local-long";
    public const string Short = "local-short";
    public const string FromVariable = "local-from-variable";
    public const string ShortPrompt = "Tell me a long story about the sea";
    public const int ContextSize = 2048;

    public static readonly string PathVariable = "SLUICE_TEST_MODEL_" + Guid.NewGuid().ToString("N");

    private readonly string _directory = Directory.CreateTempSubdirectory("sluice-local-gateway-").FullName;
    private readonly Dictionary<string, LocalChatModel> _models = [];

    public TestGateway Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var longPath = LocalTestModels.WriteChatModel(Path.Combine(_directory, "long.gguf"), LocalTestModels.Tiny("llama", seed: 5));
        var shortPath = LocalTestModels.WriteChatModel(Path.Combine(_directory, "short.gguf"), LocalTestModels.Tiny("llama", seed: 2));
        _models[Long] = LocalChatModel.Load(longPath, new LocalChatModelOptions { ContextSize = ContextSize, Threads = 1 });
        _models[Short] = LocalChatModel.Load(shortPath, new LocalChatModelOptions { ContextSize = ContextSize, Threads = 1 });
        Gateway = await TestGateway.StartAsync(options => options.Models =
        [
            new ModelOptions { Name = Long, Provider = "local", ModelPath = longPath, ContextSize = ContextSize, Threads = 1 },
            // Read into memory rather than mapped: its answers are still checked against the mapped model loaded above.
            new ModelOptions { Name = Short, Provider = "local", ModelPath = shortPath, ContextSize = ContextSize, Threads = 1, MemoryMap = false },
            new ModelOptions { Name = FromVariable, Provider = "local", ModelPathEnv = PathVariable },
        ]);
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        foreach (var model in _models.Values)
        {
            model.Dispose();
        }

        Directory.Delete(_directory, recursive: true);
    }

    public LocalChatBackend Backend(string name)
    {
        Assert.True(Gateway.Gateway.GetRequiredService<ModelCatalog>().TryGet(name, out var entry));
        return Assert.IsType<LocalChatBackend>(entry.Source);
    }

    /// <summary>The tokenizer's count of the rendered chat template (BOS as the file says), computed here from the file.</summary>
    public int RenderedTokenCount(string name, IReadOnlyList<TemplateMessage> messages)
    {
        var model = _models[name];
        var rendered = new Sluice.Engine.Templates.ChatTemplate(LocalTestModels.ChatMLTemplate).Render(messages, Sluice.Engine.Templates.ChatTemplateOptions.For(model.Tokenizer));
        return model.Tokenizer.Encode(rendered, addSpecial: true, parseSpecial: true).Length;
    }

    /// <summary>The greedy answer to <paramref name="messages"/>, generated in-process from the same file.</summary>
    public async Task<(int[] Prompt, List<int> Tokens, string Text, GenerationStopReason Stop)> ExpectedAsync(string name, IReadOnlyList<TemplateMessage> messages, int maxTokens)
    {
        var model = _models[name];
        var prompt = model.EncodeChat(messages);
        using var generator = new BatchingGenerator(model.Model, 1);
        var stats = new LocalGenerationStats();
        var tokens = new List<int>();
        var text = new TokenTextStream(model.Tokenizer);
        var answer = new StringBuilder();
        await foreach (var token in generator.GenerateAsync(
            new LocalGenerationRequest { Prompt = prompt, Sampling = SamplingOptions.Greedy, MaxTokens = maxTokens, StopTokens = model.StopTokens }, stats, CancellationToken.None))
        {
            tokens.Add(token);
            answer.Append(text.Push(token));
        }

        answer.Append(text.Flush());
        return (prompt, tokens, answer.ToString(), stats.StopReason);
    }
}
