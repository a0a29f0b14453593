using Sluice.Protocol.Chat;

namespace Sluice.Providers;

/// <summary>
/// A backend that can count a request's prompt tokens without generating: simulated and local models with their own
/// tokenizer, and upstreams whose provider has a counting endpoint (Anthropic's <c>count_tokens</c>, Gemini's
/// <c>countTokens</c>). Serves Anthropic's <c>POST /v1/messages/count_tokens</c>.
/// </summary>
public interface IPromptTokenCounter
{
    /// <summary>
    /// The prompt tokens <paramref name="request"/> would use, as this backend's usage would report them; an upstream asks
    /// its provider (its errors are <see cref="Sluice.Protocol.ChatException"/>s like a call's).
    /// </summary>
    ValueTask<int> CountPromptTokensAsync(ChatRequest request, CancellationToken cancellationToken);
}
