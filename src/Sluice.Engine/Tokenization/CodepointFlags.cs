using System.Globalization;

namespace Sluice.Engine.Tokenization;

/// <summary>Unicode classes of one codepoint as llama.cpp's pre-tokenizers see them (\p{L}, \p{N}, \s, …).</summary>
[Flags]
internal enum CodepointFlags : ushort
{
    None = 0,
    Undefined = 0x0001,
    Number = 0x0002,
    Letter = 0x0004,
    Separator = 0x0008,
    Mark = 0x0010,
    Punctuation = 0x0020,
    Symbol = 0x0040,
    Control = 0x0080,
    Categories = 0x00FF,
    Whitespace = 0x0100,
}

/// <summary>Codepoint classification: the general category from .NET's Unicode data, the White_Space property from a fixed list.</summary>
internal static class Codepoints
{
    /// <summary>Beyond the text: the flags llama.cpp's splitters see past the end of a segment (no class at all).</summary>
    public const int OutOfRange = -1;

    public static CodepointFlags Flags(int codepoint)
    {
        if (codepoint < 0 || codepoint > 0x10FFFF)
        {
            return CodepointFlags.None;
        }
        var flags = Category(codepoint);
        if (IsWhitespace(codepoint))
        {
            flags |= CodepointFlags.Whitespace;
        }
        return flags;
    }

    public static bool Has(this CodepointFlags flags, CodepointFlags any) => (flags & any) != 0;

    /// <summary>The Unicode White_Space property (llama.cpp's <c>\s</c>): not the C0 separators 0x1C–0x1F that .NET's IsWhiteSpace adds.</summary>
    public static bool IsWhitespace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D => true,
        0x20 or 0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    // Codepoints assigned in Unicode 16.0 (which .NET's data has) but not in the older Unicode data llama.cpp's tables were
    // generated from: llama.cpp sees them as unassigned, and so must we to split text the same way.
    private static readonly (int First, int Last)[] NewerThanLlamaCpp =
    [
        (0x0897, 0x0897),
        (0x1B4E, 0x1B4F),
        (0x1B7F, 0x1B7F),
        (0x1C89, 0x1C8A),
        (0x2427, 0x2429),
        (0x31E4, 0x31E5),
        (0xA7CB, 0xA7CD),
        (0xA7DA, 0xA7DC),
        (0x105C0, 0x105F3),
        (0x10D40, 0x10D65),
        (0x10D69, 0x10D85),
        (0x10D8E, 0x10D8F),
        (0x10EC2, 0x10EC4),
        (0x10EFC, 0x10EFC),
        (0x11380, 0x11389),
        (0x1138B, 0x1138B),
        (0x1138E, 0x1138E),
        (0x11390, 0x113B5),
        (0x113B7, 0x113C0),
        (0x113C2, 0x113C2),
        (0x113C5, 0x113C5),
        (0x113C7, 0x113CA),
        (0x113CC, 0x113D5),
        (0x113D7, 0x113D8),
        (0x113E1, 0x113E2),
        (0x116D0, 0x116E3),
        (0x11BC0, 0x11BE1),
        (0x11BF0, 0x11BF9),
        (0x11F5A, 0x11F5A),
        (0x13460, 0x143FA),
        (0x16100, 0x16139),
        (0x16D40, 0x16D79),
        (0x18CFF, 0x18CFF),
        (0x1CC00, 0x1CCF9),
        (0x1CD00, 0x1CEB3),
        (0x1E5D0, 0x1E5FA),
        (0x1E5FF, 0x1E5FF),
        (0x1F8B2, 0x1F8BB),
        (0x1F8C0, 0x1F8C1),
        (0x1FA89, 0x1FA89),
        (0x1FA8F, 0x1FA8F),
        (0x1FABE, 0x1FABE),
        (0x1FAC6, 0x1FAC6),
        (0x1FADC, 0x1FADC),
        (0x1FADF, 0x1FADF),
        (0x1FAE9, 0x1FAE9),
        (0x1FBCB, 0x1FBEF),
    ];

    private static bool IsNewerThanLlamaCpp(int cp)
    {
        int lo = 0, hi = NewerThanLlamaCpp.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            var (first, last) = NewerThanLlamaCpp[mid];
            if (cp < first)
            {
                hi = mid - 1;
            }
            else if (cp > last)
            {
                lo = mid + 1;
            }
            else
            {
                return true;
            }
        }
        return false;
    }

    private static CodepointFlags Category(int cp) => IsNewerThanLlamaCpp(cp) ? CodepointFlags.Undefined : CharUnicodeInfo.GetUnicodeCategory(cp) switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CodepointFlags.Letter,
        UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark => CodepointFlags.Mark,
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CodepointFlags.Number,
        UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => CodepointFlags.Separator,
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse => CodepointFlags.Control,
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
            or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation or UnicodeCategory.FinalQuotePunctuation
            or UnicodeCategory.OtherPunctuation => CodepointFlags.Punctuation,
        UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
            or UnicodeCategory.OtherSymbol => CodepointFlags.Symbol,
        _ => CodepointFlags.Undefined,
    };

    /// <summary>Splits a string into codepoints; a lone surrogate becomes U+FFFD, as it does on the way to UTF-8.</summary>
    public static int[] FromString(string text)
    {
        var result = new List<int>(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                result.Add(char.ConvertToUtf32(c, text[i + 1]));
                i++;
            }
            else
            {
                result.Add(char.IsSurrogate(c) ? 0xFFFD : c);
            }
        }
        return [.. result];
    }

    /// <summary>A string whose lone surrogates are replaced by U+FFFD, so that UTF-16 and UTF-8 views of it agree.</summary>
    public static string Sanitize(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (!char.IsSurrogate(c))
            {
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            var codepoints = FromString(text);
            var sb = new System.Text.StringBuilder(text.Length);
            foreach (var cp in codepoints)
            {
                sb.Append(char.ConvertFromUtf32(cp));
            }
            return sb.ToString();
        }
        return text;
    }

    /// <summary>ASCII lower case: the only letters the contraction rules compare with ('s, 't, 're, …).</summary>
    public static int ToLowerAscii(int cp) => cp is >= 'A' and <= 'Z' ? cp + 32 : cp;
}
