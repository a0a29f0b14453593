using System.Runtime.CompilerServices;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Calls;

/// <summary>
/// The stage of an embeddings call (<c>POST /v1/embeddings</c>, Ollama's <c>/api/embed</c> and <c>/api/embeddings</c>):
/// the call is resolved, admitted (billed and limited on its input tokens) and recorded like a chat call; once admitted
/// the model's embedding backend answers instead of its chat backend, as one <see cref="EmbeddingResultEvent"/> and its
/// usage.
/// </summary>
internal sealed class EmbeddingStage(EmbeddingRequest request) : CallStage
{
    /// <summary>The request as parsed.</summary>
    public EmbeddingRequest Request => request;

    public override ValueTask CommitAsync(ChatCall call, CancellationToken cancellationToken)
    {
        var embeddings = call.Model.Embeddings ?? throw NotAnEmbeddingModel(call);
        call.Backend = new EmbeddingCall(embeddings, request with { Model = call.Model.Name });
        return ValueTask.CompletedTask;
    }

    private static ChatException NotAnEmbeddingModel(ChatCall call) => ChatException.BadRequest(
        $"The model '{call.Model.Name}' (provider {call.Model.Options.Provider}) does not make embeddings. Use an embedding model: sim-embed, or an openai, ollama or gemini model whose upstream embeds ({call.Dialect.ModelListing} lists the models).",
        "model", "model_not_embedding");

    /// <summary>The embedding backend as the relay sees a backend: one answer event, then the usage.</summary>
    private sealed class EmbeddingCall(IEmbeddingBackend backend, EmbeddingRequest request) : IChatBackend
    {
        public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(
            ChatRequest chat, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            var result = await backend.EmbedAsync(request, cancellationToken);
            yield return new EmbeddingResultEvent(result);
            if (result.PromptTokens is { } tokens)
            {
                yield return new UsageEvent(new ChatUsage(tokens, 0));
            }
        }
    }
}
