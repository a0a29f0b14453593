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

    private static CodepointFlags Category(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) switch
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
