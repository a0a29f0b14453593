using Sluice.Protocol.Embeddings;

namespace Sluice.Protocol.Events;

/// <summary>An embeddings call's whole answer (its vectors), as the one answer event of the call.</summary>
public sealed class EmbeddingResultEvent(EmbeddingResult result) : ChatStreamEvent(0)
{
    /// <summary>The vectors (and, for an OpenAI pass-through, the upstream's body).</summary>
    public EmbeddingResult Result { get; } = result ?? throw new ArgumentNullException(nameof(result));
}
