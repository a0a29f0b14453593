using System.Text.RegularExpressions;

namespace Sluice.Cli;

/// <summary>Joins message parts into sentences without doubled periods ("in use.. Stop") or missing ones.</summary>
internal static partial class Sentences
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

            // ".." where two sentences were glued (an ellipsis "..." is left alone).
            var text = DoubledPeriod().Replace(part.Trim(), ".");

            sentences.Add(text.EndsWith('.') || text.EndsWith('?') || text.EndsWith('!') ? text : text + ".");
        }

        return string.Join(' ', sentences);
    }

    [GeneratedRegex(@"(?<!\.)\.\.(?!\.)")]
    private static partial Regex DoubledPeriod();
}
