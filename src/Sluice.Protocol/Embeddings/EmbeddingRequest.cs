using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Embeddings;

/// <summary>How the vectors of an OpenAI embeddings answer are encoded.</summary>
public enum EmbeddingEncoding
{
    /// <summary>JSON arrays of numbers (<c>"encoding_format": "float"</c>, the default).</summary>
    Float,

    /// <summary>Base64 of the little-endian float32 bytes (<c>"encoding_format": "base64"</c>), a quarter of the size.</summary>
    Base64,
}

/// <summary>One input to embed: a text, or a list of token ids (OpenAI clients may send tokens).</summary>
/// <param name="Text">The text, or null for tokens.</param>
/// <param name="Tokens">The token ids, or null for text.</param>
public sealed record EmbeddingInput(string? Text, IReadOnlyList<int>? Tokens)
{
    /// <summary>The tokens it counts as: the ids given, or the text's tokens by <see cref="TokenCounter"/> (an estimate).</summary>
    public int TokenCount => Tokens?.Count ?? TokenCounter.Count(Text);
}

/// <summary>
/// A validated embeddings request, whatever the dialect: OpenAI's <c>POST /v1/embeddings</c>, Ollama's
/// <c>POST /api/embed</c> or <c>POST /api/embeddings</c>.
/// </summary>
public sealed record EmbeddingRequest
{
    /// <summary>The model (or group, or alias) name.</summary>
    public required string Model { get; init; }

    /// <summary>What to embed, one vector each, in order.</summary>
    public required IReadOnlyList<EmbeddingInput> Inputs { get; init; }

    /// <summary>The number of dimensions asked for (<c>dimensions</c>), where the model can shorten its vectors.</summary>
    public int? Dimensions { get; init; }

    /// <summary>How the client wants the vectors (OpenAI dialect).</summary>
    public EmbeddingEncoding Encoding { get; init; }

    /// <summary>End-user identifier, passed through.</summary>
    public string? User { get; init; }

    /// <summary>
    /// Ollama's <c>truncate</c>: cut inputs longer than the model's context instead of refusing them (Ollama's default is
    /// true; null where the dialect has no such field, which refuses).
    /// </summary>
    public bool? Truncate { get; init; }

    /// <summary>
    /// The body exactly as an OpenAI client sent it (empty otherwise): OpenAI-compatible upstreams get it with only
    /// <c>model</c> replaced, so fields Sluice does not model reach them, and their answer goes back as it is.
    /// </summary>
    public ReadOnlyMemory<byte> RawBody { get; init; }

    /// <summary>The prompt tokens of all inputs (ids counted as given, text estimated).</summary>
    public int PromptTokens => Inputs.Sum(i => i.TokenCount);

    /// <summary>
    /// The request as the call pipeline sees it (model resolution, admission, limits and usage estimates count its
    /// <see cref="ChatRequest.PromptTokenEstimate"/>); it has no messages: the embedding backend reads this request.
    /// </summary>
    public ChatRequest ToChatRequest() => new()
    {
        Model = Model,
        Messages = [],
        User = User,
        PromptTokenEstimate = PromptTokens,
    };
}

/// <summary>What an embedding backend answered.</summary>
public sealed record EmbeddingResult
{
    /// <summary>One vector per input, in the order of <see cref="EmbeddingRequest.Inputs"/>.</summary>
    public required IReadOnlyList<float[]> Vectors { get; init; }

    /// <summary>The prompt tokens the backend counted, or null when it reports none (Gemini): Sluice estimates them.</summary>
    public int? PromptTokens { get; init; }

    /// <summary>
    /// The upstream's answer body, verbatim, when an OpenAI-compatible upstream answered an OpenAI client's own request
    /// (<see cref="EmbeddingRequest.RawBody"/>): written back unchanged (its encoding is the one the client asked for).
    /// </summary>
    public ReadOnlyMemory<byte> Verbatim { get; init; }
}
