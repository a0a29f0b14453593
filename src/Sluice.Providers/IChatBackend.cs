using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers;

/// <summary>
/// A source of answers: a simulated model, an upstream provider, or the in-process engine.
/// </summary>
/// <remarks>
/// The contract is a pull-based event stream so that an engine can batch the decode steps of many
/// concurrent streams and complete each stream's pending read when its token is ready.
/// Failures before the first event are thrown as <see cref="Sluice.Protocol.ChatException"/> (the gateway
/// answers with that status); failures after it are thrown or yielded as an
/// <see cref="ErrorEvent"/> (the gateway writes an error frame). Cancelling <c>cancellationToken</c> must stop
/// generation promptly and release the upstream. Decorators derive from <see cref="DelegatingChatBackend"/>.
/// </remarks>
public interface IChatBackend
{
    /// <summary>Starts generating the answer to <paramref name="request"/> and yields its events as they are produced.</summary>
    /// <param name="request">The request (immutable).</param>
    /// <param name="options">What the consumer of this call can take; <see cref="ChatCallOptions.Default"/> when null.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, CancellationToken cancellationToken);
}

/// <summary>
/// A backend that knows, without running anything, that it will refuse a request (its own limits: answer length,
/// context, unsupported options). The gateway asks before the call is admitted or anything is stored for it, so a
/// request the model refuses at once leaves no job call, session message or usage row behind.
/// </summary>
public interface IChatRequestCheck
{
    /// <summary>The 4xx the backend would answer <paramref name="request"/> with at once, or null when it would run it.</summary>
    Sluice.Protocol.ChatException? Check(ChatRequest request);
}

/// <summary>
/// Per-call facts about the consumer of an answer stream — not part of the request, so the same request can be
/// answered for different consumers (cloned-and-changed with <c>with</c>, never mutated).
/// </summary>
public sealed record ChatCallOptions
{
    /// <summary>The defaults: a consumer that takes the plain event model only.</summary>
    public static ChatCallOptions Default { get; } = new();

    /// <summary>With <see cref="AcceptsChunkBatches"/> on.</summary>
    public static ChatCallOptions ChunkBatches { get; } = new() { AcceptsChunkBatches = true };

    /// <summary>
    /// True when the consumer writes <see cref="OpenAIChunkBatch"/> events as they are (the OpenAI SSE writer), so an
    /// OpenAI-compatible upstream may pass on all the chunks of one read as one event. Backends that do not batch
    /// ignore it; everyone else gets one event per chunk.
    /// </summary>
    public bool AcceptsChunkBatches { get; init; }

    /// <summary>
    /// True when the consumer writes the Responses API format and takes an upstream's Responses events as they are
    /// (<see cref="ResponsesEvent"/>), so they can be passed through byte for byte. Backends that do not speak the
    /// Responses API ignore it; everyone else gets the decoded events.
    /// </summary>
    public bool AcceptsResponsesEvents { get; init; }

    /// <summary>
    /// True when the consumer writes Anthropic Messages events and takes an Anthropic upstream's content-block events as
    /// they are (<see cref="AnthropicBlockEvent"/>: thinking, signatures, citations and all), so they can be passed
    /// through byte for byte. Other backends ignore it; everyone else gets the decoded events.
    /// </summary>
    public bool AcceptsAnthropicBlocks { get; init; }
}

/// <summary>Conveniences over <see cref="IChatBackend"/>.</summary>
public static class ChatBackendExtensions
{
    /// <summary>Streams with the default options.</summary>
    public static IAsyncEnumerable<ChatStreamEvent> StreamAsync(this IChatBackend backend, ChatRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return backend.StreamAsync(request, ChatCallOptions.Default, cancellationToken);
    }
}
