using Sluice.Protocol.Chat;

namespace Sluice.Providers;

/// <summary>
/// A backend that can count a request's prompt tokens without generating (simulated models; later an in-process
/// engine with its tokenizer). Serves Anthropic's <c>count_tokens</c>; upstream providers do not implement it.
/// </summary>
public interface IPromptTokenCounter
{
    /// <summary>The prompt tokens <paramref name="request"/> would use, as this backend's usage would report them.</summary>
    int CountPromptTokens(ChatRequest request);
}
