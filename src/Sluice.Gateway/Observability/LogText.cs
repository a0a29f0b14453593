using System.Buffers;
using System.Globalization;
using System.Text;

namespace Sluice.Gateway.Observability;

/// <summary>
/// Makes text a caller chose (a model name, a path, an MQTT topic or id, an error message quoting them) safe to put in
/// a log line: control characters — a line break that would forge a line, an escape sequence that would recolour or
/// rewrite an operator's terminal, a NUL that turns the log into a "binary file" for grep — and the invisible
/// characters that reorder or break lines (bidirectional overrides, line and paragraph separators) are written as
/// <c>\uXXXX</c> (line breaks and tabs as <c>\n</c>, <c>\r</c>, <c>\t</c>), and the text is cut to a length.
/// </summary>
/// <remarks>
/// The console formatter only replaces line breaks in single-line mode, and its colours are escape sequences of its own,
/// so the values are cleaned where they are logged rather than the finished line. Clean text (nearly all of it) is
/// returned as it is, without allocating.
/// </remarks>
internal static class LogText
{
    // C0 and C1 controls with DEL, bidirectional embeddings, overrides and isolates, line and paragraph separators,
    // and the byte-order mark / zero-width no-break space.
    private static readonly SearchValues<char> Unsafe = SearchValues.Create(
        "\0\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f" +
        "\u007f\u0080\u0081\u0082\u0083\u0084\u0085\u0086\u0087\u0088\u0089\u008a\u008b\u008c\u008d\u008e\u008f\u0090\u0091\u0092\u0093\u0094\u0095\u0096\u0097\u0098\u0099\u009a\u009b\u009c\u009d\u009e\u009f" +
        "\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff");

    /// <summary>
    /// <paramref name="text"/> cut to <paramref name="maxLength"/> characters (before escaping) with every unsafe character
    /// written as <c>\uXXXX</c>; the same instance when there is nothing to change. Null stays null.
    /// </summary>
    public static string? Clean(string? text, int maxLength = 1_000)
    {
        if (text is null)
        {
            return null;
        }

        var cut = text.Length <= maxLength ? text.AsSpan() : text.AsSpan(0, maxLength);
        var first = cut.IndexOfAny(Unsafe);
        if (first < 0)
        {
            return cut.Length == text.Length ? text : cut.ToString();
        }

        var clean = new StringBuilder(cut.Length + 16);
        clean.Append(cut[..first]);
        foreach (var c in cut[first..])
        {
            if (c is '\n' or '\r' or '\t')
            {
                clean.Append(c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t");
            }
            else if (Unsafe.Contains(c))
            {
                clean.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                clean.Append(c);
            }
        }

        return clean.ToString();
    }
}
