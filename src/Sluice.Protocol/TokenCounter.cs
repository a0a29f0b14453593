using Sluice.Protocol.Chat;

namespace Sluice.Protocol;

/// <summary>
/// A fast, dependency-free token approximation: a word with its leading space, a run of digits, or one
/// punctuation mark each count as one token. Real tokenizers differ by model; this is used by the simulated
/// models (whose output is made of exactly these tokens) and to estimate usage when an upstream reports none.
/// </summary>
public static class TokenCounter
{
    /// <summary>Tokens added per message for role and framing, as OpenAI's chat format does.</summary>
    public const int PerMessageOverhead = 3;

    /// <summary>Counts the tokens of <paramref name="text"/>.</summary>
    public static int Count(ReadOnlySpan<char> text)
    {
        var count = 0;
        var i = 0;
        while (i < text.Length)
        {
            i = NextTokenEnd(text, i);
            count++;
        }

        return count;
    }

    /// <summary>Prompt tokens of a conversation: each message's tokens plus framing, as OpenAI's chat format counts.</summary>
    public static int CountPrompt(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var total = 3;
        foreach (var message in messages)
        {
            total += PerMessageOverhead + Count(message.Content);
            if (message.Parts is { } parts)
            {
                foreach (var part in parts)
                {
                    // Text parts are already counted in Content.
                    total += part.IsAttachment ? part.EstimatedTokens : 0;
                }
            }

            if (message.ToolCalls is { } calls)
            {
                foreach (var call in calls)
                {
                    total += Count(call.Name) + Count(call.Arguments);
                }
            }
        }

        return total;
    }

    /// <summary>Returns the index just past the token starting at <paramref name="start"/>.</summary>
    public static int NextTokenEnd(ReadOnlySpan<char> text, int start)
    {
        var i = start;
        while (i < text.Length && char.IsWhiteSpace(text[i]))
        {
            i++;
        }

        if (i >= text.Length)
        {
            return text.Length;
        }

        if (char.IsLetter(text[i]))
        {
            // Long words split every 12 letters, a rough stand-in for sub-word pieces.
            var wordStart = i;
            while (i < text.Length && (char.IsLetter(text[i]) || text[i] == '\'') && i - wordStart < 12)
            {
                i++;
            }

            return i;
        }

        if (char.IsDigit(text[i]))
        {
            var digitsStart = i;
            while (i < text.Length && char.IsDigit(text[i]) && i - digitsStart < 3)
            {
                i++;
            }

            return i;
        }

        return char.IsHighSurrogate(text[i]) && i + 1 < text.Length ? i + 2 : i + 1;
    }
}
