using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers;

/// <summary>
/// The base of backend decorators (fallback, session capture, per-model defaults, …): forwards every call to an
/// inner backend; derived classes override <see cref="StreamAsync"/> to change the request, watch the events or
/// wrap the stream, and call the base to continue.
/// </summary>
public abstract class DelegatingChatBackend : IChatBackend
{
    /// <summary>Wraps <paramref name="innerBackend"/>.</summary>
    protected DelegatingChatBackend(IChatBackend innerBackend) =>
        InnerBackend = innerBackend ?? throw new ArgumentNullException(nameof(innerBackend));

    /// <summary>The backend calls are forwarded to.</summary>
    protected IChatBackend InnerBackend { get; }

    /// <inheritdoc />
    public virtual IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, CancellationToken cancellationToken) =>
        InnerBackend.StreamAsync(request, options, cancellationToken);
}
