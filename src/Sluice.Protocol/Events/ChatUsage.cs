namespace Sluice.Protocol.Events;

/// <summary>Token counts of one request.</summary>
/// <param name="PromptTokens">Tokens read.</param>
/// <param name="CompletionTokens">Tokens generated.</param>
public sealed record ChatUsage(int PromptTokens, int CompletionTokens)
{
    /// <summary>Prompt plus completion tokens.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;
}
