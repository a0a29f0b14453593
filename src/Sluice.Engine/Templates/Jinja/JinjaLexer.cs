using System.Globalization;
using System.Text;

namespace Sluice.Engine.Templates.Jinja;

internal enum TokenKind
{
    Text,
    ExprStart,
    ExprEnd,
    StmtStart,
    StmtEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

internal readonly record struct JinjaToken(TokenKind Kind, string Value, int Line);

/// <summary>
/// Splits a template into text and tag tokens with the whitespace rules chat templates are rendered with (as Hugging Face
/// and llama.cpp do): trim_blocks, lstrip_blocks, the <c>-</c> modifiers, CRLF as LF, one trailing newline dropped.
/// </summary>
internal static class JinjaLexer
{
    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    public static List<JinjaToken> Tokenize(string source)
    {
        var src = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (src.EndsWith('\n'))
        {
            src = src[..^1];
        }
        var tokens = new List<JinjaToken>();
        var pos = 0;
        var stripNextText = false;      // the previous tag ended with '-'
        var trimNextNewline = false;    // the previous tag was a block or comment (trim_blocks)
        while (pos < src.Length)
        {
            var tagAt = FindTag(src, pos);
            var textEnd = tagAt < 0 ? src.Length : tagAt;
            var raw = src[pos..textEnd];
            var text = raw;
            if (stripNextText)
            {
                text = text.TrimStart(' ', '\t', '\n', '\r', '\v', '\f');
            }
            else if (trimNextNewline && text.StartsWith('\n'))
            {
                text = text[1..];
            }
            if (tagAt >= 0)
            {
                var kind = src[tagAt + 1];
                var modifier = tagAt + 2 < src.Length ? src[tagAt + 2] : '\0';
                if (modifier == '-')
                {
                    text = text.TrimEnd(' ', '\t', '\n', '\r', '\v', '\f');
                }
                else if (kind is '%' or '#' && modifier != '+')
                {
                    // lstrip_blocks: spaces and tabs from the start of a line up to a block tag go.
                    var lineStart = raw.LastIndexOf('\n') + 1;
                    var indent = raw.Length - lineStart;
                    if (raw.AsSpan(lineStart).TrimStart(" \t").IsEmpty && (lineStart > 0 || pos == 0 || src[pos - 1] == '\n'))
                    {
                        text = text[..Math.Max(0, text.Length - indent)];
                    }
                }
            }
            if (text.Length > 0)
            {
                tokens.Add(new JinjaToken(TokenKind.Text, text, LineOf(src, pos)));
            }
            if (tagAt < 0)
            {
                break;
            }
            pos = ReadTag(src, tagAt, tokens, out stripNextText, out trimNextNewline);
        }
        tokens.Add(new JinjaToken(TokenKind.End, "", LineOf(src, src.Length)));
        return tokens;
    }

    private static int FindTag(string src, int from)
    {
        for (var i = from; i + 1 < src.Length; i++)
        {
            if (src[i] == '{' && src[i + 1] is '{' or '%' or '#')
            {
                return i;
            }
        }
        return -1;
    }

    private static int LineOf(string src, int pos)
    {
        var line = 1;
        for (var i = 0; i < pos && i < src.Length; i++)
        {
            if (src[i] == '\n')
            {
                line++;
            }
        }
        return line;
    }

    private static int ReadTag(string src, int at, List<JinjaToken> tokens, out bool stripAfter, out bool trimNewline)
    {
        var line = LineOf(src, at);
        var kind = src[at + 1];
        var pos = at + 2;
        if (pos < src.Length && src[pos] is '-' or '+')
        {
            pos++;
        }
        if (kind == '#')
        {
            var close = src.IndexOf("#}", pos, StringComparison.Ordinal);
            if (close < 0)
            {
                throw new ChatTemplateException($"Unclosed comment (line {line}).");
            }
            stripAfter = close > 0 && src[close - 1] == '-';
            trimNewline = true;
            return close + 2;
        }
        var closer = kind == '{' ? '}' : '%';
        tokens.Add(new JinjaToken(kind == '{' ? TokenKind.ExprStart : TokenKind.StmtStart, kind == '{' ? "{{" : "{%", line));
        var depth = 0;
        while (true)
        {
            while (pos < src.Length && char.IsWhiteSpace(src[pos]))
            {
                pos++;
            }
            if (pos >= src.Length)
            {
                throw new ChatTemplateException($"Unclosed {(kind == '{' ? "{{" : "{%")} tag (line {line}).");
            }
            line = LineOf(src, pos);
            var c = src[pos];
            // The closing delimiter, optionally with '-': "-%}", "%}", "-}}", "}}" (a '}}' inside a dict literal is not one).
            if (depth == 0 && (c == '-' || c == '+') && pos + 2 < src.Length + 1 && Matches(src, pos + 1, closer))
            {
                stripAfter = c == '-';
                trimNewline = kind == '%';
                tokens.Add(new JinjaToken(kind == '{' ? TokenKind.ExprEnd : TokenKind.StmtEnd, "", line));
                return pos + 3;
            }
            if (depth == 0 && Matches(src, pos, closer))
            {
                stripAfter = false;
                trimNewline = kind == '%';
                tokens.Add(new JinjaToken(kind == '{' ? TokenKind.ExprEnd : TokenKind.StmtEnd, "", line));
                return pos + 2;
            }
            if (c is '\'' or '"')
            {
                pos = ReadString(src, pos, line, tokens);
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                var start = pos;
                while (pos < src.Length && (char.IsAsciiDigit(src[pos]) || src[pos] == '_'))
                {
                    pos++;
                }
                if (pos + 1 < src.Length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
                {
                    pos++;
                    while (pos < src.Length && char.IsAsciiDigit(src[pos]))
                    {
                        pos++;
                    }
                    tokens.Add(new JinjaToken(TokenKind.Float, src[start..pos].Replace("_", "", StringComparison.Ordinal), line));
                }
                else
                {
                    tokens.Add(new JinjaToken(TokenKind.Integer, src[start..pos].Replace("_", "", StringComparison.Ordinal), line));
                }
                continue;
            }
            if (char.IsLetter(c) || c == '_')
            {
                var start = pos;
                while (pos < src.Length && (char.IsLetterOrDigit(src[pos]) || src[pos] == '_'))
                {
                    pos++;
                }
                tokens.Add(new JinjaToken(TokenKind.Name, src[start..pos], line));
                continue;
            }
            var op = Operators.FirstOrDefault(o => string.CompareOrdinal(src, pos, o, 0, o.Length) == 0)
                ?? throw new ChatTemplateException($"Unexpected character '{c}' in a tag (line {line}).");
            depth += op is "(" or "[" or "{" ? 1 : op is ")" or "]" or "}" ? -1 : 0;
            tokens.Add(new JinjaToken(TokenKind.Operator, op, line));
            pos += op.Length;
        }
    }

    private static bool Matches(string src, int pos, char closer) =>
        pos + 1 < src.Length && src[pos] == closer && src[pos + 1] == '}';

    private static int ReadString(string src, int pos, int line, List<JinjaToken> tokens)
    {
        var quote = src[pos++];
        var sb = new StringBuilder();
        while (true)
        {
            if (pos >= src.Length)
            {
                throw new ChatTemplateException($"Unclosed string literal (line {line}).");
            }
            var c = src[pos++];
            if (c == quote)
            {
                break;
            }
            if (c != '\\' || pos >= src.Length)
            {
                sb.Append(c);
                continue;
            }
            var e = src[pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'u' when pos + 4 <= src.Length:
                    sb.Append((char)int.Parse(src.AsSpan(pos, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    pos += 4;
                    break;
                case 'x' when pos + 2 <= src.Length:
                    sb.Append((char)int.Parse(src.AsSpan(pos, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    pos += 2;
                    break;
                default:
                    // Python keeps unknown escapes as they are.
                    sb.Append('\\').Append(e);
                    break;
            }
        }
        tokens.Add(new JinjaToken(TokenKind.String, sb.ToString(), line));
        return pos;
    }
}
