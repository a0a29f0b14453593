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
