namespace Sluice.Cli;

/// <summary>Joins message parts into sentences without doubled periods ("in use.. Stop") or missing ones.</summary>
internal static class Sentences
{
    /// <summary>Each part trimmed and ended with one period (unless it ends with ? or !), joined by spaces.</summary>
    public static string Join(params ReadOnlySpan<string?> parts)
    {
        var sentences = new List<string>(parts.Length);
        foreach (var part in parts)
        {
            if (string.IsNullOrWhiteSpace(part))
            {
                continue;
            }

            var text = part.Trim();
            while (text.EndsWith("..", StringComparison.Ordinal))
            {
                text = text[..^1];
            }

            sentences.Add(text.EndsWith('.') || text.EndsWith('?') || text.EndsWith('!') ? text : text + ".");
        }

        return string.Join(' ', sentences);
    }
}
