using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers;

/// <summary>
/// A source of answers: a simulated model, an upstream provider, or (later) an in-process engine.
/// </summary>
/// <remarks>
/// The contract is a pull-based event stream so that an engine can batch the decode steps of many
/// concurrent streams and complete each stream's pending read when its token is ready.
/// Failures before the first event are thrown as <see cref="Sluice.Protocol.ChatException"/> (the gateway
/// answers with that status); failures after it are thrown or yielded as an
/// <see cref="ErrorEvent"/> (the gateway writes an error frame). Cancelling <c>cancellationToken</c> must stop
/// generation promptly and release the upstream.
/// </remarks>
public interface IChatBackend
{
    /// <summary>Starts generating the answer to <paramref name="request"/> and yields its events as they are produced.</summary>
    IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, CancellationToken cancellationToken);
}
