using System.Globalization;
using System.Text;

namespace Sluice.Engine.Tokenization;

/// <summary>GPT-2's reversible byte-to-unicode alphabet: printable bytes stand for themselves, the rest map to U+0100 onwards.</summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var assigned = new bool[256];
        for (var b = 0; b < 256; b++)
        {
            if (b is (>= 0x21 and <= 0x7E) or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF))
            {
                map[b] = (char)b;
                assigned[b] = true;
            }
        }
        var n = 0;
        for (var b = 0; b < 256; b++)
        {
            if (!assigned[b])
            {
                map[b] = (char)(256 + n++);
            }
        }
        return map;
    }

    private static Dictionary<char, byte> BuildCharToByte()
    {
        var map = new Dictionary<char, byte>(256);
        for (var b = 0; b < 256; b++)
        {
            map[ByteToChar[b]] = (byte)b;
        }
        return map;
    }

    public static char EncodeByte(byte b) => ByteToChar[b];

    public static string Encode(List<byte> utf8)
    {
        var chars = new char[utf8.Count];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = ByteToChar[utf8[i]];
        }
        return new string(chars);
    }

    /// <summary>
    /// A byte-level token's bytes. A codepoint outside the alphabet becomes llama.cpp's marker
    /// <c>[UNK_BYTE_0x…&lt;token text&gt;]</c>, so that nothing is dropped silently.
    /// </summary>
    public static byte[] DecodeTokenText(string text)
    {
        var result = new List<byte>(text.Length);
        var cpts = Codepoints.FromString(text);
        foreach (var cp in cpts)
        {
            if (cp < 0x10000 && CharToByte.TryGetValue((char)cp, out var b))
            {
                result.Add(b);
                continue;
            }
            var marker = new StringBuilder("[UNK_BYTE_0x");
            foreach (var u in Encoding.UTF8.GetBytes(char.ConvertFromUtf32(cp)))
            {
                marker.Append(u.ToString("x2", CultureInfo.InvariantCulture));
            }
            marker.Append(text).Append(']');
            result.AddRange(Encoding.UTF8.GetBytes(marker.ToString()));
        }
        return [.. result];
    }

    /// <summary>The byte of a <c>&lt;0xXX&gt;</c> token.</summary>
    public static byte ParseByteToken(string text) =>
        text.Length >= 5 && byte.TryParse(text.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b)
            ? b
            : throw new InvalidDataException($"Byte token '{text}' is not of the form <0xXX>.");
}

/// <summary>UTF-8 helpers that work a codepoint or a byte at a time.</summary>
internal static class Utf8
{
    public static void Append(List<byte> output, int cp)
    {
        if (cp < 0x80)
        {
            output.Add((byte)cp);
        }
        else if (cp < 0x800)
        {
            output.Add((byte)(0xC0 | (cp >> 6)));
            output.Add((byte)(0x80 | (cp & 0x3F)));
        }
        else if (cp < 0x10000)
        {
            output.Add((byte)(0xE0 | (cp >> 12)));
            output.Add((byte)(0x80 | ((cp >> 6) & 0x3F)));
            output.Add((byte)(0x80 | (cp & 0x3F)));
        }
        else
        {
            output.Add((byte)(0xF0 | (cp >> 18)));
            output.Add((byte)(0x80 | ((cp >> 12) & 0x3F)));
            output.Add((byte)(0x80 | ((cp >> 6) & 0x3F)));
            output.Add((byte)(0x80 | (cp & 0x3F)));
        }
    }

    /// <summary>
    /// How many leading bytes of <paramref name="bytes"/> can be decoded now: everything except an incomplete (but so far
    /// valid) character at the end, which may still be completed by later bytes.
    /// </summary>
    public static int CompletePrefixLength(ReadOnlySpan<byte> bytes)
    {
        // A character is at most 4 bytes: only the last 3 can be the start of an unfinished one.
        for (var back = 1; back <= Math.Min(3, bytes.Length); back++)
        {
            var b = bytes[^back];
            if ((b & 0xC0) == 0x80)
            {
                continue; // continuation byte: look further back for the lead byte
            }
            var need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 1;
            if (need > back && TailIsValidSoFar(bytes[^back..]))
            {
                return bytes.Length - back;
            }
            return bytes.Length;
        }
        return bytes.Length;
    }

    private static bool TailIsValidSoFar(ReadOnlySpan<byte> tail)
    {
        var lead = tail[0];
        for (var i = 1; i < tail.Length; i++)
        {
            var b = tail[i];
            var (lo, hi) = i == 1
                ? lead switch
                {
                    0xE0 => (0xA0, 0xBF),
                    0xED => (0x80, 0x9F),
                    0xF0 => (0x90, 0xBF),
                    0xF4 => (0x80, 0x8F),
                    _ => (0x80, 0xBF),
                }
                : (0x80, 0xBF);
            if (b < lo || b > hi)
            {
                return false;
            }
        }
        return true;
    }
}
