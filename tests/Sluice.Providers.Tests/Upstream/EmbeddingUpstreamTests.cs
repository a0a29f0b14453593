using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Embeddings;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Embeddings upstream: OpenAI-compatible and Ollama passed through, Gemini's batchEmbedContents translated.</summary>
public sealed class EmbeddingUpstreamTests
{
    private static string OpenAIAnswer(params float[][] vectors) => JsonSerializer.Serialize(new
    {
        @object = "list",
        data = vectors.Select((v, i) => new { @object = "embedding", index = i, embedding = v }),
        model = "text-embedding-3-small",
        usage = new { prompt_tokens = 7, total_tokens = 7 },
    });

    private static async Task<(UpstreamRig Rig, IEmbeddingBackend Backend)> RigAsync(string provider, string answer)
    {
        var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(answer), "application/json");
        var rig = await UpstreamRig.StartAsync(provider, upstream);
        return (rig, rig.Catalog.Models[0].Embeddings!);
    }

    [Fact]
    public async Task Openai_clients_body_goes_with_only_the_model_replaced_and_the_answer_comes_back_verbatim()
    {
        var answer = OpenAIAnswer([0.25f, -0.5f], [1f, 0f]);
        var (rig, backend) = await RigAsync("openai", answer);
        await using var _ = rig;
        const string Body = """{"model":"test-model","input":["a","b"],"encoding_format":"float","dimensions":2,"x_vendor":{"k":[1]}}""";

        var result = await backend.EmbedAsync(EmbeddingRequestParser.ParseOpenAI(Encoding.UTF8.GetBytes(Body)), CancellationToken.None);

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("/v1/embeddings", sent.PathAndQuery);
        // A JSON answer is asked for instead of the transport's text/event-stream, not beside it.
        Assert.Equal("application/json", sent.Headers["accept"]);
        Assert.Equal("""{"model":"upstream-model","input":["a","b"],"encoding_format":"float","dimensions":2,"x_vendor":{"k":[1]}}""", Encoding.UTF8.GetString(sent.Body));
        Assert.Equal(answer, Encoding.UTF8.GetString(result.Verbatim.Span));
        Assert.Equal([0.25f, -0.5f], result.Vectors[0]);
        Assert.Equal(7, result.PromptTokens);
    }

    [Fact]
    public async Task Requests_from_other_dialects_are_built_asking_for_base64_which_is_decoded()
    {
        float[] vector = [0.1f, 0.2f, -0.3f];
        var base64 = Convert.ToBase64String(MemoryMarshal.AsBytes(vector.AsSpan()));
        var answer = $$$"""{"object":"list","data":[{"object":"embedding","index":0,"embedding":"{{{base64}}}"}],"model":"m","usage":{"prompt_tokens":3,"total_tokens":3}}""";
        var (rig, backend) = await RigAsync("openai", answer);
        await using var _ = rig;

        var result = await backend.EmbedAsync(EmbeddingRequestParser.ParseOllamaEmbed(Encoding.UTF8.GetBytes("""{"model":"m","input":"hello"}""")), CancellationToken.None);

        var sent = rig.Upstream.Requests[0].Json;
        Assert.Equal("base64", sent.GetProperty("encoding_format").GetString());
        Assert.Equal("hello", sent.GetProperty("input")[0].GetString());
        Assert.Equal(vector, result.Vectors[0]);
        Assert.True(result.Verbatim.IsEmpty);
    }

    [Fact]
    public async Task Ollama_gets_api_embed_with_truncate_and_dimensions()
    {
        var (rig, backend) = await RigAsync("ollama", """{"model":"all-minilm","embeddings":[[0.5,0.5],[0,1]],"total_duration":1,"load_duration":0,"prompt_eval_count":6}""");
        await using var _ = rig;

        var result = await backend.EmbedAsync(EmbeddingRequestParser.ParseOllamaEmbed(Encoding.UTF8.GetBytes("""{"model":"m","input":["a b","c"],"truncate":false,"dimensions":2}""")), CancellationToken.None);

        var sent = rig.Upstream.Requests[0];
        Assert.Equal("/api/embed", sent.PathAndQuery);
        Assert.Equal("""{"model":"upstream-model","input":["a b","c"],"truncate":false,"dimensions":2}""", Encoding.UTF8.GetString(sent.Body));
        Assert.Equal([0f, 1f], result.Vectors[1]);
        Assert.Equal(6, result.PromptTokens);
    }

    [Fact]
    public async Task Gemini_gets_batch_embed_contents_and_reports_no_tokens()
    {
        var (rig, backend) = await RigAsync("gemini", """{"embeddings":[{"values":[0.1,0.2]},{"values":[0.3,0.4]}]}""");
        await using var _ = rig;

        var result = await backend.EmbedAsync(EmbeddingRequestParser.ParseOpenAI(Encoding.UTF8.GetBytes("""{"model":"m","input":["x","y"],"dimensions":2}""")), CancellationToken.None);

        var sent = rig.Upstream.Requests[0];
        Assert.Equal("/v1/models/upstream-model:batchEmbedContents", sent.PathAndQuery);
        var first = sent.Json.GetProperty("requests")[0];
        Assert.Equal("models/upstream-model", first.GetProperty("model").GetString());
        Assert.Equal("x", first.GetProperty("content").GetProperty("parts")[0].GetProperty("text").GetString());
        Assert.Equal(2, first.GetProperty("outputDimensionality").GetInt32());
        Assert.Equal([0.3f, 0.4f], result.Vectors[1]);
        Assert.Null(result.PromptTokens);
    }

    [Theory]
    [InlineData("gemini")]
    [InlineData("ollama")]
    public async Task Token_id_inputs_are_refused_by_upstreams_that_embed_text_only(string provider)
    {
        var (rig, backend) = await RigAsync(provider, "{}");
        await using var _ = rig;
        var error = await Assert.ThrowsAsync<ChatException>(() => backend.EmbedAsync(
            EmbeddingRequestParser.ParseOpenAI(Encoding.UTF8.GetBytes("""{"model":"m","input":[[1,2],[3]]}""")), CancellationToken.None));
        Assert.Equal("input[0]", error.Error.Param);
        Assert.Empty(rig.Upstream.Requests);
    }

    [Fact]
    public async Task An_answer_with_too_few_vectors_is_a_502()
    {
        var (rig, backend) = await RigAsync("openai", OpenAIAnswer([1f]));
        await using var _ = rig;
        var error = await Assert.ThrowsAsync<ChatException>(() => backend.EmbedAsync(
            EmbeddingRequestParser.ParseOpenAI(Encoding.UTF8.GetBytes("""{"model":"m","input":["a","b"]}""")), CancellationToken.None));
        Assert.Equal(502, error.StatusCode);
        Assert.Equal("upstream_malformed", error.Error.Code);
    }

    [Fact]
    public async Task An_upstream_http_error_keeps_its_status_and_message()
    {
        await using var upstream = await ReplayUpstream.StartAsync(
            Encoding.UTF8.GetBytes("""{"error":{"message":"This model does not support embeddings","type":"invalid_request_error","code":"model_not_supported"}}"""),
            "application/json", status: 400);
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);
        var error = await Assert.ThrowsAsync<ChatException>(() => rig.Catalog.Models[0].Embeddings!.EmbedAsync(
            EmbeddingRequestParser.ParseOpenAI(Encoding.UTF8.GetBytes("""{"model":"m","input":"a"}""")), CancellationToken.None));
        Assert.Equal(400, error.StatusCode);
        Assert.Contains("does not support embeddings", error.Error.Message, StringComparison.Ordinal);
    }
}
