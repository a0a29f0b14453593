using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Embeddings;
using Sluice.Gateway.Accounting;
using Sluice.Providers;
using Sluice.Providers.Simulation;
using Sluice.Testing;

namespace Sluice.Gateway.Tests;

/// <summary>
/// <c>POST /v1/embeddings</c> with the official OpenAI SDK (base64 and float), Ollama's <c>/api/embed</c> and
/// <c>/api/embeddings</c>, over sim-embed and recorded OpenAI-compatible, Ollama and Gemini upstreams.
/// </summary>
public sealed class EmbeddingsTests
{
    private static EmbeddingClient Client(TestGateway gateway, string model) => new(
        model, new ApiKeyCredential("sk-test"), new OpenAIClientOptions { Endpoint = new Uri(gateway.BaseAddress, "v1"), NetworkTimeout = TimeSpan.FromSeconds(30) });

    private static double Cosine(ReadOnlyMemory<float> a, ReadOnlyMemory<float> b)
    {
        double sum = 0;
        for (var i = 0; i < a.Length; i++)
        {
            sum += a.Span[i] * b.Span[i];
        }

        return sum;
    }

    [Fact]
    public async Task The_openai_sdk_embeds_with_sim_embed_in_base64_and_the_vectors_work_for_retrieval()
    {
        await using var gateway = await TestGateway.StartAsync();
        string[] texts = ["The cat sat on the mat.", "A cat was sitting on the mat", "Quarterly revenue grew by twelve percent."];

        OpenAIEmbeddingCollection embeddings = await Client(gateway, "sim-embed").GenerateEmbeddingsAsync(texts);

        Assert.Equal(3, embeddings.Count);
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(i, embeddings[i].Index);
            Assert.Equal(SimulatedEmbeddingBackend.Embed(texts[i], 256), embeddings[i].ToFloats().ToArray());
        }

        Assert.True(Cosine(embeddings[0].ToFloats(), embeddings[1].ToFloats()) > Cosine(embeddings[0].ToFloats(), embeddings[2].ToFloats()) + 0.3);
        var tokens = texts.Sum(t => Sluice.Protocol.TokenCounter.Count(t));
        Assert.Equal(tokens, embeddings.Usage.InputTokenCount);
        Assert.Equal(tokens, embeddings.Usage.TotalTokenCount);
        Assert.Equal("sim-embed", embeddings.Model);

        var record = Assert.Single(gateway.Usage.Records);
        Assert.Equal(("sim-embed", tokens, 0, false, UsageStatus.Completed), (record.Model, record.PromptTokens, record.CompletionTokens, record.Estimated, record.Status));
        Assert.False(record.Stream);
    }

    [Fact]
    public async Task Float_and_base64_answers_carry_the_same_vectors_and_dimensions_shorten_them()
    {
        await using var gateway = await TestGateway.StartAsync();
        var client = Client(gateway, "sim-embed");

        ClientResult floats = await client.GenerateEmbeddingsAsync(BinaryContent.Create(BinaryData.FromString(
            """{"model": "sim-embed", "input": ["one text", "another"], "encoding_format": "float"}""")));
        using var raw = JsonDocument.Parse(floats.GetRawResponse().Content.ToString());
        var first = raw.RootElement.GetProperty("data")[0];
        Assert.Equal("embedding", first.GetProperty("object").GetString());
        Assert.Equal(JsonValueKind.Array, first.GetProperty("embedding").ValueKind);
        var fromFloats = first.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()).ToArray();

        ClientResult base64 = await client.GenerateEmbeddingsAsync(BinaryContent.Create(BinaryData.FromString(
            """{"model": "sim-embed", "input": ["one text", "another"], "encoding_format": "base64"}""")));
        using var rawBase64 = JsonDocument.Parse(base64.GetRawResponse().Content.ToString());
        Assert.Equal(JsonValueKind.String, rawBase64.RootElement.GetProperty("data")[0].GetProperty("embedding").ValueKind);
#pragma warning disable OPENAI001 // The SDK's own parsing of a protocol-method answer is marked experimental.
        var parsed = (OpenAIEmbeddingCollection)base64;
#pragma warning restore OPENAI001
        Assert.Equal(fromFloats, parsed[0].ToFloats().ToArray());

        OpenAIEmbedding shorter = await client.GenerateEmbeddingAsync("one text", new EmbeddingGenerationOptions { Dimensions = 64 });
        Assert.Equal(64, shorter.ToFloats().Length);
    }

    [Fact]
    public async Task An_openai_compatible_upstream_gets_the_sdk_request_with_the_model_replaced_and_its_answer_comes_back_verbatim()
    {
        float[] vector = [0.6f, -0.8f];
        var answer = JsonSerializer.Serialize(new
        {
            @object = "list",
            data = new[] { new { @object = "embedding", index = 0, embedding = vector } },
            model = "text-embedding-3-small",
            usage = new { prompt_tokens = 4, total_tokens = 4 },
        });
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(answer), "application/json");
        await using var gateway = await TestGateway.StartAsync(o => o.Models.Add(
            new ModelOptions { Name = "embed-up", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "text-embedding-3-small" }));

        OpenAIEmbedding embedding = await Client(gateway, "embed-up").GenerateEmbeddingAsync("hello there", new EmbeddingGenerationOptions { Dimensions = 2 });
        Assert.Equal(vector, embedding.ToFloats().ToArray());

        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("/v1/embeddings", sent.PathAndQuery);
        Assert.Equal("text-embedding-3-small", sent.Json.GetProperty("model").GetString());
        Assert.Equal("hello there", sent.Json.GetProperty("input").GetString());
        Assert.Equal(2, sent.Json.GetProperty("dimensions").GetInt32());

        using var response = await gateway.Client.PostAsync("v1/embeddings", TestGateway.Json("""{"model": "embed-up", "input": "hi"}"""));
        Assert.Equal(answer, await response.Content.ReadAsStringAsync());
        await gateway.Usage.WaitForCountAsync(2);
        Assert.All(gateway.Usage.Records, r => Assert.Equal((4, false), (r.PromptTokens, r.Estimated)));
    }

    [Fact]
    public async Task Ollama_api_embed_and_api_embeddings_answer_in_ollamas_shape()
    {
        await using var gateway = await TestGateway.StartAsync();

        using var embed = await gateway.Client.PostAsync("api/embed", TestGateway.Json("""{"model": "sim-embed:latest", "input": ["Why is the sky blue?", "Why is grass green?"]}"""));
        Assert.Equal(HttpStatusCode.OK, embed.StatusCode);
        using var embedBody = JsonDocument.Parse(await embed.Content.ReadAsStringAsync());
        var root = embedBody.RootElement;
        Assert.Equal("sim-embed:latest", root.GetProperty("model").GetString());
        Assert.Equal(2, root.GetProperty("embeddings").GetArrayLength());
        Assert.Equal(256, root.GetProperty("embeddings")[0].GetArrayLength());
        Assert.Equal(
            SimulatedEmbeddingBackend.Embed("Why is the sky blue?", 256),
            root.GetProperty("embeddings")[0].EnumerateArray().Select(v => v.GetSingle()).ToArray());
        Assert.True(root.GetProperty("prompt_eval_count").GetInt32() > 0);
        Assert.True(root.GetProperty("total_duration").GetInt64() > 0);

        using var legacy = await gateway.Client.PostAsync("api/embeddings", TestGateway.Json("""{"model": "sim-embed", "prompt": "Why is the sky blue?"}"""));
        using var legacyBody = JsonDocument.Parse(await legacy.Content.ReadAsStringAsync());
        Assert.Equal(
            SimulatedEmbeddingBackend.Embed("Why is the sky blue?", 256),
            legacyBody.RootElement.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()).ToArray());
    }

    [Fact]
    public async Task Ollama_and_gemini_upstreams_serve_the_openai_endpoint()
    {
        await using var ollama = await ReplayUpstream.StartAsync(
            Encoding.UTF8.GetBytes("""{"model":"all-minilm","embeddings":[[0.6,0.8]],"prompt_eval_count":3}"""), "application/json");
        await using var gemini = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes("""{"embeddings":[{"values":[1,0]}]}"""), "application/json");
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Models.Add(new ModelOptions { Name = "minilm", Provider = "ollama", BaseUrl = ollama.BaseUrl, UpstreamModel = "all-minilm" });
            o.Models.Add(new ModelOptions { Name = "gem-embed", Provider = "gemini", BaseUrl = gemini.BaseUrl + "/v1beta", UpstreamModel = "text-embedding-004" });
        });

        OpenAIEmbedding fromOllama = await Client(gateway, "minilm").GenerateEmbeddingAsync("hello");
        Assert.Equal([0.6f, 0.8f], fromOllama.ToFloats().ToArray());
        Assert.Equal("/api/embed", ollama.Requests[0].PathAndQuery);
        Assert.Equal("all-minilm", ollama.Requests[0].Json.GetProperty("model").GetString());

        OpenAIEmbeddingCollection fromGemini = await Client(gateway, "gem-embed").GenerateEmbeddingsAsync(["hello world"]);
        Assert.Equal([1f, 0f], fromGemini[0].ToFloats().ToArray());
        Assert.Equal("/v1beta/models/text-embedding-004:batchEmbedContents", gemini.Requests[0].PathAndQuery);

        // Gemini reports no token count: the usage is Sluice's estimate, and recorded as one.
        Assert.Equal(2, fromGemini.Usage.InputTokenCount);
        await gateway.Usage.WaitForCountAsync(2);
        Assert.Contains(gateway.Usage.Records, r => r.Model == "gem-embed" && r.Estimated && r.PromptTokens == 2);
    }

    [Theory]
    [InlineData("v1/embeddings", """{"model": "sim-fast", "input": "hi"}""", 400, "model", "model_not_embedding")]
    [InlineData("v1/embeddings", """{"model": "sim-embed"}""", 400, "input", "missing_required_parameter")]
    [InlineData("v1/embeddings", """{"model": "sim-embed", "input": ["ok", ""]}""", 400, "input[1]", "empty_value")]
    [InlineData("v1/embeddings", """{"model": "sim-embed", "input": "hi", "encoding_format": "int8"}""", 400, "encoding_format", "invalid_value")]
    [InlineData("v1/embeddings", """{"model": "sim-embed", "input": "hi", "dimensions": 0}""", 400, "dimensions", "invalid_value")]
    [InlineData("v1/embeddings", """{"model": "sim-embed", "input": "hi", "dimensions": 4096}""", 400, "dimensions", "invalid_value")]
    [InlineData("v1/embeddings", """{"model": "nope", "input": "hi"}""", 404, "model", "model_not_found")]
    [InlineData("v1/chat/completions", """{"model": "sim-embed", "messages": [{"role": "user", "content": "hi"}]}""", 400, "model", "model_not_chat")]
    public async Task Bad_requests_get_a_400_naming_the_parameter_in_openai_shape(string path, string body, int status, string param, string code)
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.Client.PostAsync(path, TestGateway.Json(body));
        Assert.Equal(status, (int)response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Ollama_errors_use_ollamas_shape()
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.Client.PostAsync("api/embed", TestGateway.Json("""{"model": "sim-fast", "input": "hi"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
        Assert.Contains("does not make embeddings", error, StringComparison.Ordinal);
    }
}
