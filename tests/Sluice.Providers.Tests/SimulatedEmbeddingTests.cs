using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Embeddings;
using Sluice.Providers.Simulation;

namespace Sluice.Providers.Tests;

/// <summary>The built-in sim-embed: deterministic unit vectors that are close for similar texts.</summary>
public sealed class SimulatedEmbeddingTests
{
    private static readonly SimulatedEmbeddingBackend Backend = new(BuiltInModels.Embed);

    private static EmbeddingRequest Request(params string[] texts) =>
        new() { Model = "sim-embed", Inputs = [.. texts.Select(t => new EmbeddingInput(t, null))] };

    private static double Cosine(float[] a, float[] b) => a.Zip(b, (x, y) => (double)x * y).Sum();

    [Fact]
    public async Task Similar_texts_are_closer_than_unrelated_ones_and_every_vector_has_unit_length()
    {
        var result = await Backend.EmbedAsync(Request(
            "The cat sat on the mat.",
            "A cat was sitting on the mat",
            "Quarterly revenue grew by twelve percent.",
            "How do I reset my router password?",
            "Resetting the password of a router"), CancellationToken.None);
        var v = result.Vectors;

        Assert.All(v, vector => Assert.Equal(1.0, Math.Sqrt(vector.Sum(x => (double)x * x)), 5));
        Assert.All(v, vector => Assert.Equal(SimulatedEmbeddingBackend.DefaultDimensions, vector.Length));
        Assert.True(Cosine(v[0], v[1]) > 0.5, $"cat/cat {Cosine(v[0], v[1]):F3}");
        Assert.True(Cosine(v[0], v[1]) > Cosine(v[0], v[2]) + 0.3, $"cat/cat {Cosine(v[0], v[1]):F3} vs cat/revenue {Cosine(v[0], v[2]):F3}");
        Assert.True(Cosine(v[3], v[4]) > Cosine(v[3], v[0]) + 0.3, $"router/router {Cosine(v[3], v[4]):F3} vs router/cat {Cosine(v[3], v[0]):F3}");

        // Retrieval: the nearest neighbour of each query is its paraphrase.
        Assert.Equal(1, Nearest(v, 0));
        Assert.Equal(4, Nearest(v, 3));
    }

    [Fact]
    public async Task Vectors_are_deterministic_and_reported_with_the_input_token_count()
    {
        var first = await Backend.EmbedAsync(Request("Deterministic vectors, please"), CancellationToken.None);
        var second = await new SimulatedEmbeddingBackend(BuiltInModels.Embed).EmbedAsync(Request("Deterministic vectors, please"), CancellationToken.None);
        Assert.Equal(first.Vectors[0], second.Vectors[0]);
        Assert.Equal(TokenCounter.Count("Deterministic vectors, please"), first.PromptTokens);
        Assert.Equal(SimulatedEmbeddingBackend.Embed("Deterministic vectors, please", 256), first.Vectors[0]);
    }

    [Fact]
    public async Task Dimensions_token_ids_and_limits()
    {
        var shorter = await Backend.EmbedAsync(Request("Shorter please") with { Dimensions = 32 }, CancellationToken.None);
        Assert.Equal(32, shorter.Vectors[0].Length);
        Assert.Equal(1.0, Math.Sqrt(shorter.Vectors[0].Sum(x => (double)x * x)), 5);

        var tooMany = await Assert.ThrowsAsync<ChatException>(() => Backend.EmbedAsync(Request("x") with { Dimensions = 1024 }, CancellationToken.None));
        Assert.Equal("dimensions", tooMany.Error.Param);

        var tokens = await Backend.EmbedAsync(new EmbeddingRequest { Model = "sim-embed", Inputs = [new EmbeddingInput(null, [101, 2023, 2003])] }, CancellationToken.None);
        Assert.Equal(3, tokens.PromptTokens);

        var small = new SimulatedEmbeddingBackend(new ModelOptions { Name = "tiny-embed", Provider = "sim-embed", ContextWindow = 4 });
        var tooLong = Request("one", "one two three four five six");
        var refused = await Assert.ThrowsAsync<ChatException>(() => small.EmbedAsync(tooLong, CancellationToken.None));
        Assert.Equal("input[1]", refused.Error.Param);
        Assert.Equal("context_length_exceeded", refused.Error.Code);
        var truncated = await small.EmbedAsync(tooLong with { Truncate = true }, CancellationToken.None);
        Assert.Equal(SimulatedEmbeddingBackend.Embed("one two three four", 256), truncated.Vectors[1]);
        Assert.Equal(1 + 4, truncated.PromptTokens);
    }

    [Fact]
    public async Task Chat_requests_get_a_400_that_points_at_the_embeddings_endpoints()
    {
        var error = await Assert.ThrowsAsync<ChatException>(async () =>
        {
            await foreach (var unused in Backend.StreamAsync(SimTestKit.Request("Hi"), null, CancellationToken.None))
            {
            }
        });
        Assert.Equal(400, error.StatusCode);
        Assert.Contains("/v1/embeddings", error.Error.Message, StringComparison.Ordinal);
    }

    private static int Nearest(IReadOnlyList<float[]> vectors, int query) =>
        Enumerable.Range(0, vectors.Count).Where(i => i != query).MaxBy(i => Cosine(vectors[query], vectors[i]));
}
