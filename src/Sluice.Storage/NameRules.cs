using System.Globalization;
using System.Text;

namespace Sluice.Storage;

/// <summary>What kind of name or text a value is, which decides its length limit and allowed characters.</summary>
public enum NameKind
{
    /// <summary>An id a caller may choose (organization, team): ASCII letters, digits, <c>_</c>, <c>-</c>, <c>.</c>.</summary>
    Id,

    /// <summary>A model or model-group name, as clients write it in <c>model</c>: an id plus <c>:</c>, <c>/</c>, <c>@</c>, <c>+</c>.</summary>
    ModelName,

    /// <summary>A display name on one line (team alias, key name, session title, job type): printable text.</summary>
    Label,

    /// <summary>Free text that may span lines (a description, an error message): printable text, tabs and line breaks.</summary>
    Text,
}

/// <summary>
/// The one validator for every name and id that tenants or operators can set and that Sluice stores or echoes: length
/// limits and allowed characters. The gateway checks request fields with it (a 400 naming the field); the store checks
/// again before writing (an <see cref="ArgumentException"/>), so nothing else can store a bad name.
/// </summary>
/// <remarks>
/// Refused in every kind: control characters (NUL included; <see cref="NameKind.Text"/> allows tab and line breaks),
/// bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069, which make a name read differently from what it
/// is) and other invisible format characters except the zero-width joiners emoji sequences need, unpaired surrogates,
/// and the noncharacters U+FFFE/U+FFFF. Lengths are in UTF-16 code units (what .NET strings count).
/// </remarks>
public static class NameRules
{
    /// <summary>Longest <see cref="NameKind.Id"/>.</summary>
    public const int MaxIdLength = 64;

    /// <summary>Longest <see cref="NameKind.ModelName"/>.</summary>
    public const int MaxModelNameLength = 128;

    /// <summary>Longest <see cref="NameKind.Label"/> unless a field says less.</summary>
    public const int MaxLabelLength = 200;

    /// <summary>Longest <see cref="NameKind.Text"/> unless a field says otherwise.</summary>
    public const int MaxTextLength = 4_000;

    /// <summary>The default longest value of <paramref name="kind"/>.</summary>
    public static int MaxLength(NameKind kind) => kind switch
    {
        NameKind.Id => MaxIdLength,
        NameKind.ModelName => MaxModelNameLength,
        NameKind.Label => MaxLabelLength,
        _ => MaxTextLength,
    };

    /// <summary>
    /// Null when <paramref name="value"/> is an acceptable <paramref name="kind"/>; otherwise what is wrong with it and
    /// what to send instead, as a sentence that follows the field's name ("is 100000 characters; …").
    /// </summary>
    /// <param name="kind">What the value is.</param>
    /// <param name="value">The value, already trimmed by the caller where trimming applies.</param>
    /// <param name="maxLength">A tighter limit for this field, or null for the kind's.</param>
    public static string? Check(NameKind kind, string value, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        var max = maxLength ?? MaxLength(kind);
        if (value.Length == 0)
        {
            return "is empty; send a non-empty value.";
        }

        if (value.Length > max)
        {
            return $"is {value.Length} characters; the limit is {max}.";
        }

        return kind switch
        {
            NameKind.Id => CheckAscii(value, static c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.', "letters, digits, '_', '-' and '.'"),
            NameKind.ModelName => CheckAscii(
                value, static c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or ':' or '/' or '@' or '+', "letters, digits and _ - . : / @ +"),
            _ => CheckText(value, multiline: kind == NameKind.Text),
        };
    }

    /// <summary>Throws <see cref="ArgumentException"/> (for <paramref name="paramName"/>) when <see cref="Check"/> finds a problem.</summary>
    public static void Require(NameKind kind, string value, string paramName, string field, int? maxLength = null)
    {
        if (Check(kind, value, maxLength) is { } problem)
        {
            throw new ArgumentException($"{field} {problem}", paramName);
        }
    }

    /// <summary>
    /// <paramref name="value"/> with every character a <see cref="NameKind.Label"/> refuses replaced by a space — for
    /// labels Sluice derives itself (a session title from the first message), which must follow the same rules.
    /// </summary>
    public static string ToLabel(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var text = new StringBuilder(value.Length);
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                text.Append(c).Append(value[++i]);
            }
            else
            {
                text.Append(char.IsSurrogate(c) || Refused(c, multiline: false) ? ' ' : c);
            }
        }

        return text.ToString();
    }

    private static string? CheckAscii(string value, Func<char, bool> allowed, string description)
    {
        foreach (var c in value)
        {
            if (!allowed(c))
            {
                return $"contains {Describe(c)}; use only {description}.";
            }
        }

        return null;
    }

    private static string? CheckText(string value, bool multiline)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsSurrogate(c))
            {
                if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
                {
                    i++;
                    continue;
                }

                return "contains an unpaired surrogate; send valid Unicode text.";
            }

            if (multiline && c is '\n' or '\r' or '\t')
            {
                continue;
            }

            if (Refused(c, multiline))
            {
                return $"contains {Describe(c)}, which is not allowed; send {(multiline ? "printable text (tabs and line breaks are fine)" : "printable text on one line")}.";
            }
        }

        return null;
    }

    private static bool Refused(char c, bool multiline) => CharUnicodeInfo.GetUnicodeCategory(c) switch
    {
        UnicodeCategory.Control => true,
        UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => !multiline,

        // Zero-width (non-)joiners hold emoji sequences and some scripts together; every other format character
        // (bidi overrides and isolates, BOMs, invisible operators) only hides what a name really is.
        UnicodeCategory.Format => c is not ('\u200C' or '\u200D'),
        _ => c is '\uFFFE' or '\uFFFF',
    };

    private static string Describe(char c) =>
        c is >= ' ' and <= '~'
            ? $"'{c}'"
            : new StringBuilder("the character U+").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture)).ToString();
}
