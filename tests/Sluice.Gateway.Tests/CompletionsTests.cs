using System.Net;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests;

/// <summary>
/// The legacy <c>POST /v1/completions</c> over raw HTTP (the OpenAI .NET SDK keeps its completions client internal):
/// passed through to an OpenAI-compatible upstream, translated for simulated and Anthropic models.
/// </summary>
public sealed class CompletionsTests
{
    private static string Chunk(string text, string? finish = null, string logprobs = "null") =>
        "data: {\"id\":\"cmpl-up\",\"object\":\"text_completion\",\"created\":1690759702,\"choices\":[{\"text\":" + JsonSerializer.Serialize(text)
        + ",\"index\":0,\"logprobs\":" + logprobs + ",\"finish_reason\":" + (finish is null ? "null" : "\"" + finish + "\"") + "}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n";

    private const string Usage =
        "data: {\"id\":\"cmpl-up\",\"object\":\"text_completion\",\"created\":1690759702,\"choices\":[],\"model\":\"gpt-3.5-turbo-instruct\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n";

    private static readonly string[] UpstreamChunks =
    [
        Chunk("Once upon a time", logprobs: """{"tokens":["Once"," upon"," a"," time"],"token_logprobs":[null,-1.5,-0.1,-0.01],"top_logprobs":[null,{" upon":-1.5},{" a":-0.1},{" time":-0.01}],"text_offset":[0,4,9,11]}"""),
        Chunk(",", logprobs: """{"tokens":[","],"token_logprobs":[-0.2],"top_logprobs":[{",":-0.2}],"text_offset":[16]}"""),
        Chunk(" there", logprobs: """{"tokens":[" there"],"token_logprobs":[-0.7],"top_logprobs":[{" there":-0.7}],"text_offset":[17]}"""),
        Chunk(" was", "length", """{"tokens":[" was"],"token_logprobs":[-0.05],"top_logprobs":[{" was":-0.05}],"text_offset":[23]}"""),
    ];

    private static async Task<List<SseEvent>> FramesAsync(HttpResponseMessage response)
    {
        var frames = new List<SseEvent>();
        await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync()))
        {
            frames.Add(e);
        }

        return frames;
    }

    [Fact]
    public async Task An_openai_compatible_upstream_gets_the_request_as_sent_and_its_chunks_come_back_byte_for_byte()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(string.Concat(UpstreamChunks) + Usage + "data: [DONE]\n\n"));
        await using var gateway = await TestGateway.StartAsync(o => o.Models.Add(
            new ModelOptions { Name = "instruct", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "gpt-3.5-turbo-instruct" }));

        const string Body = """{"model": "instruct", "prompt": "Once upon a time", "suffix": "The end.", "echo": true, "logprobs": 1, "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}, "logit_bias": {"50256": -100}}""";
        using var response = await gateway.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = TestGateway.Json(Body) }, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var frames = await FramesAsync(response);

        Assert.Equal(UpstreamChunks.Select(c => c["data: ".Length..^2]), frames.Take(4).Select(f => f.DataText));
        var usage = frames[4].Json();
        Assert.Equal("cmpl-up", usage.GetProperty("id").GetString());
        Assert.Equal("text_completion", usage.GetProperty("object").GetString());
        Assert.Equal(8, usage.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        Assert.True(frames[5].IsDone);

        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("/v1/completions", sent.PathAndQuery);
        var json = sent.Json;
        Assert.Equal("gpt-3.5-turbo-instruct", json.GetProperty("model").GetString());
        Assert.Equal("Once upon a time", json.GetProperty("prompt").GetString());
        Assert.Equal("The end.", json.GetProperty("suffix").GetString());
        Assert.True(json.GetProperty("echo").GetBoolean());
        Assert.Equal(1, json.GetProperty("logprobs").GetInt32());
        Assert.Equal(-100, json.GetProperty("logit_bias").GetProperty("50256").GetInt32());
        Assert.True(json.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());

        // The call is accounted just after its last byte (the response ends first).
        Assert.Equal(1, await gateway.Usage.WaitForCountAsync(1));
        var record = Assert.Single(gateway.Usage.Records);
        Assert.Equal((5, 3, false), (record.PromptTokens, record.CompletionTokens, record.Estimated));
    }

    [Fact]
    public async Task A_non_streamed_pass_through_is_assembled_with_its_logprobs()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(string.Concat(UpstreamChunks) + Usage + "data: [DONE]\n\n"));
        await using var gateway = await TestGateway.StartAsync(o => o.Models.Add(
            new ModelOptions { Name = "instruct", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1" }));

        using var response = await gateway.Client.PostAsync("v1/completions", TestGateway.Json("""{"model": "instruct", "prompt": "Once upon a time", "echo": true, "logprobs": 1, "max_tokens": 3}"""));
        var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.Equal("text_completion", completion.GetProperty("object").GetString());
        var choice = completion.GetProperty("choices")[0];
        Assert.Equal("Once upon a time, there was", choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var logprobs = choice.GetProperty("logprobs");
        Assert.Equal(["Once", " upon", " a", " time", ",", " there", " was"], logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(JsonValueKind.Null, logprobs.GetProperty("token_logprobs")[0].ValueKind);
        Assert.Equal(-0.7, logprobs.GetProperty("token_logprobs")[5].GetDouble());
        Assert.Equal([0, 4, 9, 11, 16, 17, 23], logprobs.GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32()));
        Assert.Equal(8, completion.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        Assert.True(upstream.Requests[0].Json.GetProperty("stream").GetBoolean());
    }

    [Fact]
    public async Task A_simulated_model_streams_text_completion_chunks_with_usage_null_echo_and_logprobs()
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/completions")
            {
                Content = TestGateway.Json("""{"model": "sim-fast", "prompt": "Tell me about lighthouses.", "echo": true, "logprobs": 2, "max_tokens": 6, "seed": 4, "stream": true, "stream_options": {"include_usage": true}}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.NotNull(response.Headers.GetValues("x-sluice-stream-id"));
        var frames = (await FramesAsync(response)).Where(f => !f.IsComment).ToList();
        Assert.True(frames[^1].IsDone);
        var chunks = frames.SkipLast(1).Select(f => f.Json()).ToList();
        var answers = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).ToList();

        Assert.All(answers, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        Assert.All(answers, c => Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind));
        Assert.Equal("Tell me about lighthouses.", answers[0].GetProperty("choices")[0].GetProperty("text").GetString());
        var generated = answers.Skip(1).Where(c => c.GetProperty("choices")[0].GetProperty("logprobs").ValueKind == JsonValueKind.Object).ToList();
        Assert.Equal(6, generated.Count);
        var first = generated[0].GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(2, first.GetProperty("top_logprobs")[0].EnumerateObject().Count());
        Assert.Equal("Tell me about lighthouses.".Length, first.GetProperty("text_offset")[0].GetInt32());
        Assert.Equal("length", answers[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(6, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task A_non_streamed_simulated_completion_is_one_text_completion_object()
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.Client.PostAsync("v1/completions", TestGateway.Json("""{"model": "sim-fast", "prompt": "Describe rivers", "n": 2, "seed": 9}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.StartsWith("cmpl-", completion.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("text_completion", completion.GetProperty("object").GetString());
        Assert.Equal("sim-fast", completion.GetProperty("model").GetString());
        var choices = completion.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(choices, c => Assert.False(string.IsNullOrWhiteSpace(c.GetProperty("text").GetString())));
        Assert.All(choices, c => Assert.Equal(JsonValueKind.Null, c.GetProperty("logprobs").ValueKind));

        // OpenAI's default for completions: 16 tokens per choice.
        Assert.Equal(32, completion.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task An_anthropic_model_answers_the_prompt_as_a_user_turn()
    {
        var recording = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Fixtures.Read("anthropic/basic_response.sse")).TrimEnd() + "\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await TestGateway.StartAsync(o => o.Models.Add(
            new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", MaxAttempts = 1 }));

        using var response = await gateway.Client.PostAsync("v1/completions", TestGateway.Json("""{"model": "claude", "prompt": "Say hello", "max_tokens": 20, "echo": true}"""));
        var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.Equal("Say helloHello there!", completion.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(11, completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        var sent = upstream.Requests[0].Json;
        Assert.Equal("Say hello", sent.GetProperty("messages")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(20, sent.GetProperty("max_tokens").GetInt32());
    }

    [Theory]
    [InlineData("sim-fast", """{"model": "sim-fast", "prompt": "a", "suffix": "b"}""", "suffix")]
    [InlineData("sim-fast", """{"model": "sim-fast", "prompt": ["a", "b"]}""", "prompt")]
    [InlineData("sim-fast", """{"model": "sim-fast", "prompt": [1, 2]}""", "prompt")]
    [InlineData("sim-fast", """{"model": "sim-fast", "prompt": "a", "best_of": 3}""", "best_of")]
    [InlineData("claude", """{"model": "claude", "prompt": "a", "max_tokens": 0, "echo": true}""", "max_tokens")]
    public async Task What_a_backend_cannot_translate_is_a_400_naming_the_parameter(string model, string body, string param)
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/basic_response.sse"));
        await using var gateway = await TestGateway.StartAsync(o => o.Models.Add(
            new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", MaxAttempts = 1 }));

        using var response = await gateway.Client.PostAsync("v1/completions", TestGateway.Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains(model, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Contains("OpenAI-compatible", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty(upstream.Requests);
    }
}
