namespace Sluice.Protocol.Completions;

/// <summary>One prompt of a legacy completion request: a text, or token ids.</summary>
/// <param name="Text">The text, or null for token ids.</param>
/// <param name="Tokens">The token ids, or null for text.</param>
public sealed record CompletionPrompt(string? Text, IReadOnlyList<int>? Tokens)
{
    /// <summary>The tokens it counts as: the ids given, or the text's tokens by <see cref="TokenCounter"/> (an estimate).</summary>
    public int TokenCount => Tokens?.Count ?? TokenCounter.Count(Text);
}

/// <summary>
/// What a <c>POST /v1/completions</c> request says beyond a chat request (<see cref="Chat.ChatRequest.Completion"/>):
/// its prompts, <c>suffix</c>, <c>echo</c>, <c>best_of</c>, <c>logprobs</c> and the body as sent. OpenAI-compatible
/// upstreams get the body as it is; other backends answer the first prompt as a user message.
/// </summary>
public sealed record LegacyCompletion
{
    /// <summary>The prompts (several make several answers), text or token ids.</summary>
    public required IReadOnlyList<CompletionPrompt> Prompts { get; init; }

    /// <summary>The text after the completion (fill-in-the-middle), or null.</summary>
    public string? Suffix { get; init; }

    /// <summary>Whether the answer repeats the prompt before the completion.</summary>
    public bool Echo { get; init; }

    /// <summary><c>best_of</c>: completions generated upstream, the best <c>n</c> returned.</summary>
    public int? BestOf { get; init; }

    /// <summary><c>logprobs</c>: the log probabilities of each token and of this many most likely alternatives (0–5).</summary>
    public int? Logprobs { get; init; }

    /// <summary>The <c>max_tokens</c> as sent (0 with <c>echo</c> scores the prompt without generating).</summary>
    public int MaxTokens { get; init; } = CompletionRequestParser.DefaultMaxTokens;

    /// <summary>The body exactly as the client sent it, for OpenAI-compatible upstreams (<c>POST /completions</c>).</summary>
    public ReadOnlyMemory<byte> RawBody { get; init; }
}
