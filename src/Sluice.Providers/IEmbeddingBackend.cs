using Sluice.Protocol.Embeddings;

namespace Sluice.Providers;

/// <summary>
/// A source of embeddings: the built-in <c>sim-embed</c>, or an upstream (OpenAI-compatible and Ollama passed through,
/// Gemini's <c>batchEmbedContents</c>). The gateway runs embeddings calls through the same call pipeline as chat.
/// </summary>
/// <remarks>
/// Failures are thrown as <see cref="Sluice.Protocol.ChatException"/> (the gateway answers with that status, in the
/// client's dialect); bad input the backend cannot take is a 400 naming the parameter. Cancelling
/// <c>cancellationToken</c> must release the upstream at once.
/// </remarks>
public interface IEmbeddingBackend
{
    /// <summary>One vector per input of <paramref name="request"/>, in order.</summary>
    Task<EmbeddingResult> EmbedAsync(EmbeddingRequest request, CancellationToken cancellationToken);
}
