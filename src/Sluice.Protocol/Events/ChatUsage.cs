namespace Sluice.Protocol.Events;

/// <summary>Token counts of one request.</summary>
/// <param name="PromptTokens">Tokens read (cached and cache-written ones included).</param>
/// <param name="CompletionTokens">Tokens generated (reasoning ones included).</param>
public sealed record ChatUsage(int PromptTokens, int CompletionTokens)
{
    /// <summary>Prompt plus completion tokens.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;

    /// <summary>How the counts break down, when the backend reported it (null: nothing beyond the two counts).</summary>
    public ChatUsageDetails? Details { get; init; }
}

/// <summary>
/// The parts of a <see cref="ChatUsage"/> that providers report separately. Every count is included in
/// <see cref="ChatUsage.PromptTokens"/> or <see cref="ChatUsage.CompletionTokens"/> (OpenAI's convention); writers of
/// dialects that count them apart (Anthropic's <c>input_tokens</c> excludes cache reads and writes) subtract.
/// </summary>
public sealed record ChatUsageDetails
{
    /// <summary>
    /// Prompt tokens read from the provider's prompt cache: OpenAI <c>prompt_tokens_details.cached_tokens</c>, Anthropic
    /// <c>cache_read_input_tokens</c>, Gemini <c>cachedContentTokenCount</c>.
    /// </summary>
    public int CachedPromptTokens { get; init; }

    /// <summary>Prompt tokens written to the prompt cache: Anthropic <c>cache_creation_input_tokens</c>.</summary>
    public int CacheCreationPromptTokens { get; init; }

    /// <summary>Completion tokens spent reasoning: OpenAI <c>completion_tokens_details.reasoning_tokens</c>, Gemini <c>thoughtsTokenCount</c>.</summary>
    public int ReasoningTokens { get; init; }

    /// <summary>The details, or null when every count is zero (so usage without details compares equal to plain usage).</summary>
    public static ChatUsageDetails? Of(int cachedPromptTokens, int cacheCreationPromptTokens, int reasoningTokens) =>
        cachedPromptTokens == 0 && cacheCreationPromptTokens == 0 && reasoningTokens == 0
            ? null
            : new ChatUsageDetails
            {
                CachedPromptTokens = cachedPromptTokens,
                CacheCreationPromptTokens = cacheCreationPromptTokens,
                ReasoningTokens = reasoningTokens,
            };
}
