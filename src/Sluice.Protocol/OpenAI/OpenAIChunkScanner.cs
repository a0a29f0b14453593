using System.Buffers;
using System.Text.Json;

namespace Sluice.Protocol.OpenAI;

/// <summary>
/// A quick look at a chunk's raw JSON that tells whether it needs a full decode. Most chunks of a stream are plain
/// deltas that a pass-through only has to forward and count; decoding each of them would cost more than
/// forwarding it. Only a chunk that may finish a choice, carry usage or an error needs the full decode.
/// </summary>
/// <remarks>
/// Safe against content: inside a JSON string every quote is escaped, so an unescaped <c>"finish_reason"</c>
/// can only be a property name. Whitespace between a name and its value is allowed, as pretty-printing servers send it.
/// </remarks>
public static class OpenAIChunkScanner
{
    /// <summary>True when <paramref name="json"/> may finish a choice, carries usage or an error: decode it fully.</summary>
    public static bool NeedsDecode(ReadOnlySpan<byte> json) =>
        HasNonNullValue(json, "\"finish_reason\""u8)
        || HasNonNullValue(json, "\"usage\""u8)
        || json.IndexOf("\"error\""u8) >= 0
        || json.IndexOf("\"choices\""u8) < 0;

    /// <summary>True when <paramref name="json"/> is one well-formed JSON object (checked without allocating).</summary>
    public static bool IsWellFormedObject(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            reader.Skip();
            return !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool HasNonNullValue(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name)
    {
        while (true)
        {
            var at = json.IndexOf(name);
            if (at < 0)
            {
                return false;
            }

            json = json[(at + name.Length)..];
            var rest = json.TrimStart(" \t\r\n"u8);
            if (rest.IsEmpty || rest[0] != (byte)':')
            {
                continue;
            }

            rest = rest[1..].TrimStart(" \t\r\n"u8);
            if (!rest.StartsWith("null"u8))
            {
                return true;
            }
        }
    }
}

/// <summary>
/// The shape of one stream's plain text deltas, to recognise the next ones without a JSON pass. An upstream writes
/// every content chunk of a stream with the same bytes around the text (<c>{"id":"chatcmpl-…",…,"delta":{"content":"</c>
/// … <c>"},"logprobs":null,"finish_reason":null}]}</c>); once one such chunk has passed the full check
/// (<see cref="OpenAIChunkScanner.NeedsDecode"/> false, <see cref="OpenAIChunkScanner.IsWellFormedObject"/> true), a chunk
/// with the same bytes before and after its text and a valid JSON string body in between is well-formed and needs no
/// decode either: the only part that differs lies inside a string, which cannot hold an unescaped quote, so it cannot
/// add a property or end the object. Anything else falls back to the full check. One instance per stream; dispose it
/// when the stream ends (the learned bytes live in a pooled buffer).
/// </summary>
public sealed class OpenAIDeltaShape : IDisposable
{
    private static ReadOnlySpan<byte> ContentMarker => "\"content\":\""u8;

    /// <summary>Relearning stops after this many shapes in a row that no chunk matched (an upstream whose chunks all differ).</summary>
    private const int MaxUnusedShapes = 8;

    // The learned bytes before the text, then those after it, in one buffer rented from the shared pool.
    private byte[] _shape = [];
    private int _prefixLength;
    private int _suffixLength;
    private int _unusedShapes;

    private ReadOnlySpan<byte> Prefix => _shape.AsSpan(0, _prefixLength);

    private ReadOnlySpan<byte> Suffix => _shape.AsSpan(_prefixLength, _suffixLength);

    /// <summary>Whether a shape has been learned.</summary>
    public bool IsKnown { get; private set; }

    /// <summary>
    /// True when <paramref name="json"/> is the learned chunk with other text: the same bytes up to and including the
    /// opening quote of <c>content</c>, the same bytes from its closing quote on, a valid JSON string body between.
    /// </summary>
    public bool Matches(ReadOnlySpan<byte> json)
    {
        if (!IsKnown || json.Length < _prefixLength + _suffixLength
            || !json.StartsWith(Prefix) || !json.EndsWith(Suffix))
        {
            return false;
        }

        if (!IsStringBody(json[_prefixLength..^_suffixLength]))
        {
            return false;
        }

        _unusedShapes = 0;
        return true;
    }

    /// <summary>
    /// Learns the shape of <paramref name="json"/>, a chunk that passed the full check as a plain delta; returns false
    /// (and forgets the old shape) when it has no top-level-looking <c>"content":"…"</c> string to vary.
    /// </summary>
    public bool Learn(ReadOnlySpan<byte> json)
    {
        if (_unusedShapes >= MaxUnusedShapes)
        {
            // This upstream's chunks differ outside their text (e.g. a random padding field): stop paying for copies.
            IsKnown = false;
            return false;
        }

        IsKnown = false;
        var marker = json.IndexOf(ContentMarker);
        if (marker < 0)
        {
            return false;
        }

        var start = marker + ContentMarker.Length;
        var end = StringEnd(json, start);
        if (end < 0)
        {
            return false;
        }

        var length = start + (json.Length - end);
        if (_shape.Length < length)
        {
            Release();
            _shape = ArrayPool<byte>.Shared.Rent(length);
        }

        json[..start].CopyTo(_shape);
        json[end..].CopyTo(_shape.AsSpan(start));
        _prefixLength = start;
        _suffixLength = json.Length - end;
        IsKnown = true;
        _unusedShapes++;
        return true;
    }

    /// <summary>Forgets the shape and returns its buffer to the pool.</summary>
    public void Dispose()
    {
        IsKnown = false;
        Release();
    }

    private void Release()
    {
        if (_shape.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_shape);
            _shape = [];
        }
    }

    /// <summary>The index of the quote that ends the string whose body starts at <paramref name="start"/>, or -1.</summary>
    private static int StringEnd(ReadOnlySpan<byte> json, int start)
    {
        var i = start;
        while (i < json.Length)
        {
            var at = json[i..].IndexOfAny((byte)'"', (byte)'\\');
            if (at < 0)
            {
                return -1;
            }

            i += at;
            if (json[i] == (byte)'"')
            {
                return i;
            }

            i += 2;
        }

        return -1;
    }

    /// <summary>True when <paramref name="body"/> is what may stand between the quotes of a JSON string (the rules <see cref="Utf8JsonReader"/> applies, and valid UTF-8).</summary>
    internal static bool IsStringBody(ReadOnlySpan<byte> body)
    {
        if (body.IndexOfAnyInRange((byte)0, (byte)0x1F) >= 0)
        {
            return false;
        }

        var rest = body;
        while (true)
        {
            var at = rest.IndexOfAny((byte)'"', (byte)'\\');
            if (at < 0)
            {
                break;
            }

            if (rest[at] == (byte)'"' || at + 1 >= rest.Length)
            {
                return false;
            }

            var escaped = rest[at + 1];
            if (escaped == (byte)'u')
            {
                if (at + 6 > rest.Length || !IsHex(rest[at + 2]) || !IsHex(rest[at + 3]) || !IsHex(rest[at + 4]) || !IsHex(rest[at + 5]))
                {
                    return false;
                }

                rest = rest[(at + 6)..];
            }
            else if (escaped is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
            {
                rest = rest[(at + 2)..];
            }
            else
            {
                return false;
            }
        }

        return System.Text.Unicode.Utf8.IsValid(body);
    }

    private static bool IsHex(byte b) => char.IsAsciiHexDigit((char)b);
}
