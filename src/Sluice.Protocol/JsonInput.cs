using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Sluice.Protocol;

/// <summary>
/// Parses JSON that comes from clients — request bodies, WebSocket and MQTT messages — so that reading any string of it
/// afterwards cannot fail: every string and property name is checked to be valid Unicode text, and the first one that is
/// not is refused with a 400 that names it.
/// </summary>
/// <remarks>
/// <see cref="JsonDocument"/> accepts strings that <see cref="JsonElement.GetString"/> then refuses with an
/// <see cref="InvalidOperationException"/>: a lone surrogate escape (<c>"\ud800"</c>) and invalid UTF-8 bytes inside a
/// string. Without this check every field read became a possible 500. The check is one extra pass of a
/// <see cref="Utf8JsonReader"/> over the bytes; strings without escapes (most of them) are validated without being
/// decoded, and nothing is allocated unless a string is refused.
/// </remarks>
public static class JsonInput
{
    /// <summary>The error code of a string that is not valid Unicode text.</summary>
    public const string InvalidTextCode = "invalid_text";

    /// <summary>
    /// Parses <paramref name="utf8Json"/> and validates every string in it.
    /// </summary>
    /// <param name="utf8Json">The JSON text.</param>
    /// <param name="maxDepth">The deepest nesting accepted.</param>
    /// <param name="what">What the text is, for messages: "The request body", "The message".</param>
    /// <param name="hint">What to do about malformed JSON, appended to the message.</param>
    /// <exception cref="ChatException">400 <c>invalid_json</c> for malformed JSON (too deep included), 400
    /// <see cref="InvalidTextCode"/> naming the field for a string that is not valid Unicode text.</exception>
    public static JsonDocument Parse(
        ReadOnlyMemory<byte> utf8Json,
        int maxDepth = 64,
        string what = "The request body",
        string hint = "Check quoting and commas, and send Content-Type: application/json.")
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8Json, new JsonDocumentOptions { MaxDepth = maxDepth });
        }
        catch (JsonException ex)
        {
            // Too deep is well-formed JSON the gateway will not read: "check quoting and commas" would send the caller
            // looking for a typo that is not there.
            var message = IsTooDeep(ex)
                ? $"{what} nests objects and arrays deeper than {maxDepth} levels (byte {ex.BytePositionInLine}). No field Sluice reads is that deep: flatten the structure or send it as a string."
                : $"{what} is not valid JSON ({ex.Message}). {hint}";
            throw new ChatException(400, new ErrorInfo(message, ErrorTypes.InvalidRequest, null, "invalid_json"), inner: ex);
        }

        try
        {
            if (!IsPlainText(utf8Json.Span))
            {
                Validate(utf8Json.Span, maxDepth);
            }

            return document;
        }
        catch
        {
            document.Dispose();
            throw;
        }
    }

    // System.Text.Json has no distinct exception for it; its message ("The maximum configured depth of N has been
    // exceeded") is the only sign, and its resources are not localised in this process.
    private static bool IsTooDeep(JsonException ex) =>
        ex.Message.Contains("maximum configured depth", StringComparison.Ordinal);

    /// <summary>
    /// Checks that every string and property name of well-formed JSON text is valid Unicode (UTF-8 bytes, surrogate
    /// escapes in pairs).
    /// </summary>
    /// <exception cref="ChatException">400 <see cref="InvalidTextCode"/> naming the first bad field.</exception>
    /// <exception cref="JsonException">The text is not well-formed JSON.</exception>
    public static void Validate(ReadOnlySpan<byte> utf8Json, int maxDepth = 64)
    {
        var reader = new Utf8JsonReader(utf8Json, new JsonReaderOptions { MaxDepth = maxDepth });

        // The thread's own path stack: Validate runs to its end without awaiting, and every request body passes here.
        var path = t_path ??= new PathStack();
        path.Clear();
        char[]? scratch = null;
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                    case JsonTokenType.StartArray:
                        path.CountElement();
                        path.Push(reader.TokenType == JsonTokenType.StartArray);
                        break;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        path.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                        path.SetName(-1);
                        if (Problem(ref reader, ref scratch) is { } nameProblem)
                        {
                            var at = path.Describe(utf8Json);
                            throw Refuse(at.Length == 0 ? "A property name of the body" : $"A property name in {at}", at.Length == 0 ? null : at, nameProblem);
                        }

                        path.SetName((int)reader.TokenStartIndex);
                        break;
                    case JsonTokenType.String:
                        path.CountElement();
                        if (Problem(ref reader, ref scratch) is { } valueProblem)
                        {
                            var at = path.Describe(utf8Json);
                            throw Refuse(at.Length == 0 ? "The body" : at, at.Length == 0 ? null : at, valueProblem);
                        }

                        break;
                    default:
                        path.CountElement();
                        break;
                }
            }
        }
        finally
        {
            if (scratch is not null)
            {
                ArrayPool<char>.Shared.Return(scratch);
            }
        }
    }

    /// <summary>
    /// True when no string of well-formed JSON text can fail to decode, without reading it token by token: the whole
    /// text is valid UTF-8 (so every string's bytes are — JSON's delimiters are ASCII, which never occurs inside a
    /// multi-byte sequence) and it has no <c>\u</c> escape (so no lone surrogate). Nearly every request body is; the
    /// others get the full check, which names the bad field.
    /// </summary>
    internal static bool IsPlainText(ReadOnlySpan<byte> utf8Json) =>
        utf8Json.IndexOf("\\u"u8) < 0 && Utf8.IsValid(utf8Json);

    private static ChatException Refuse(string subject, string? param, string problem) =>
        ChatException.BadRequest($"{subject} is not valid Unicode text: it contains {problem}", param, InvalidTextCode);

    // Null when the current string token decodes; otherwise what is wrong with it and what to do.
    private static string? Problem(ref Utf8JsonReader reader, ref char[]? scratch)
    {
        var raw = reader.ValueSpan;
        if (!Utf8.IsValid(raw))
        {
            return "bytes that are not UTF-8. Send the text encoded as UTF-8.";
        }

        if (!reader.ValueIsEscaped)
        {
            return null;
        }

        // Unescaped text is never longer in UTF-16 units than in escaped UTF-8 bytes.
        if (scratch is null || scratch.Length < raw.Length)
        {
            if (scratch is not null)
            {
                ArrayPool<char>.Shared.Return(scratch);
            }

            scratch = ArrayPool<char>.Shared.Rent(Math.Max(raw.Length, 256));
        }

        try
        {
            reader.CopyString(scratch);
            return null;
        }
        catch (InvalidOperationException)
        {
            return "a lone surrogate escape (\\ud800 to \\udfff without its pair). Escape a character outside the Basic Multilingual Plane "
                + "as a surrogate pair (e.g. \\ud83d\\ude00), or send it as UTF-8.";
        }
    }

    [ThreadStatic]
    private static PathStack? t_path;

    /// <summary>
    /// Where the reader is, kept cheaply (offsets and counters) and turned into <c>messages[1].content</c> only on error.
    /// One per thread, reused (its frames grow at most to the depth limit).
    /// </summary>
    private sealed class PathStack
    {
        private Frame[] _frames = new Frame[16];
        private int _depth;

        public void Clear() => _depth = 0;

        public void Push(bool isArray)
        {
            if (_depth == _frames.Length)
            {
                Array.Resize(ref _frames, _depth * 2);
            }

            _frames[_depth++] = new Frame { IsArray = isArray, Count = 0, NameOffset = -1 };
        }

        public void Pop() => _depth--;

        // A value (container or scalar) begins: in an array it is the next element.
        public void CountElement()
        {
            if (_depth > 0 && _frames[_depth - 1].IsArray)
            {
                _frames[_depth - 1].Count++;
            }
        }

        public void SetName(int tokenOffset) => _frames[_depth - 1].NameOffset = tokenOffset;

        public string Describe(ReadOnlySpan<byte> json)
        {
            var text = new StringBuilder();
            for (var i = 0; i < _depth; i++)
            {
                var frame = _frames[i];
                if (frame.IsArray)
                {
                    if (frame.Count > 0)
                    {
                        text.Append('[').Append(frame.Count - 1).Append(']');
                    }
                }
                else if (frame.NameOffset >= 0)
                {
                    if (text.Length > 0)
                    {
                        text.Append('.');
                    }

                    text.Append(NameAt(json, frame.NameOffset));
                }
            }

            return text.ToString();
        }

        // The property name at this offset was validated when it was read, so it decodes.
        private static string NameAt(ReadOnlySpan<byte> json, int offset)
        {
            var reader = new Utf8JsonReader(json[offset..]);
            return reader.Read() ? reader.GetString() ?? string.Empty : string.Empty;
        }

        private struct Frame
        {
            public bool IsArray;
            public int Count;
            public int NameOffset;
        }
    }
}
