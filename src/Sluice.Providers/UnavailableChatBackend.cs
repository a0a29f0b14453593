using System.Runtime.CompilerServices;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers;

/// <summary>
/// Stands in for a model that is configured but cannot be called — its API key variable was not set when the gateway
/// started. Every request fails at once with a 503 <c>model_unavailable</c> whose message names the variable, so one
/// missing key does not stop the rest of the gateway from starting.
/// </summary>
/// <param name="reason">Why, and what to do (e.g. which variable to export).</param>
public sealed class UnavailableChatBackend(string reason) : IChatBackend
{
    /// <summary>The error code of the answer.</summary>
    public const string Code = "model_unavailable";

    /// <summary>Why the model cannot be called, and what to do.</summary>
    public string Reason { get; } = reason;

    /// <inheritdoc />
    /// <remarks>An iterator, so the failure comes with the first read (where every consumer handles failures), not the call.</remarks>
    public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await Task.CompletedTask;
        throw new ChatException(503, new ErrorInfo(Reason, ErrorTypes.Upstream, "model", Code));
#pragma warning disable CS0162 // An iterator needs a yield; the throw above always wins.
        yield break;
#pragma warning restore CS0162
    }
}
