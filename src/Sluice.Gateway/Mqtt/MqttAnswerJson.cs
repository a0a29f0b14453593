using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;

namespace Sluice.Gateway.Mqtt;

/// <summary>
/// Writes the answer messages of one request: <c>{"id","seq","content"}</c> chunks cut to an exact byte budget,
/// then <c>{"id","seq","done":true,"usage"[,"tool_calls"]}</c> or <c>{"id","seq","error"}</c>.
/// </summary>
/// <remarks>
/// Text is written as raw UTF-8 (only <c>"</c>, <c>\</c> and control characters are escaped), so the size of a
/// chunk is known character by character and a chunk never splits a character or an escape.
/// </remarks>
internal sealed class MqttAnswerJson
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly byte[] ContentKey = ",\"content\":\""u8.ToArray();

    /// <summary>Room kept for the fixed parts of a done message besides the id (keys, usage numbers, request id).</summary>
    private const int DoneOverhead = 200;

    private readonly string? _id;
    private readonly string _requestId;
    private readonly byte[] _chunkPrefix;

    public MqttAnswerJson(string? id, string requestId)
    {
        _id = id;
        _requestId = requestId;
        _chunkPrefix = Encoding.UTF8.GetBytes("{\"id\":" + (id is null ? "null" : Quote(id)) + ",\"seq\":");
    }

    /// <summary>The least <c>MaxMessageBytes</c> with which every message of this answer fits.</summary>
    public int MinimumMessageBytes => _chunkPrefix.Length + DoneOverhead;

    /// <summary>
    /// A chunk with as much of the front of <paramref name="pending"/> as fits in <paramref name="maxBytes"/>;
    /// <paramref name="consumed"/> is how many characters of it the chunk carries.
    /// </summary>
    public byte[] Chunk(long seq, StringBuilder pending, int maxBytes, out int consumed)
    {
        Span<byte> digits = stackalloc byte[20];
        seq.TryFormat(digits, out var digitCount, provider: CultureInfo.InvariantCulture);
        var budget = maxBytes - _chunkPrefix.Length - digitCount - ContentKey.Length - 2;

        var used = 0;
        consumed = 0;
        while (consumed < pending.Length)
        {
            var (chars, cost) = Measure(pending, consumed);
            if (used + cost > budget)
            {
                break;
            }

            used += cost;
            consumed += chars;
        }

        var message = new byte[_chunkPrefix.Length + digitCount + ContentKey.Length + used + 2];
        var at = 0;
        _chunkPrefix.CopyTo(message, at);
        at += _chunkPrefix.Length;
        digits[..digitCount].CopyTo(message.AsSpan(at));
        at += digitCount;
        ContentKey.CopyTo(message, at);
        at += ContentKey.Length;
        at += Escape(pending, consumed, message.AsSpan(at));
        message[at++] = (byte)'"';
        message[at++] = (byte)'}';
        return at == message.Length ? message : throw new InvalidOperationException("Chunk size mismatch.");
    }

    /// <summary>The final message of a streamed answer (with the whole tool calls, when the answer called tools).</summary>
    public byte[] Done(long seq, string? finishReason, ChatUsage usage, IReadOnlyList<ToolCall>? toolCalls = null) => Write(json =>
    {
        Start(json, seq);
        json.WriteBoolean("done"u8, true);
        WriteTail(json, finishReason, usage, toolCalls);
    });

    /// <summary>The only message of a non-streamed answer: the whole text, done, usage (and tool calls).</summary>
    public byte[] Single(long seq, string content, string? finishReason, ChatUsage usage, IReadOnlyList<ToolCall>? toolCalls = null) => Write(json =>
    {
        Start(json, seq);
        json.WriteString("content"u8, content);
        json.WriteBoolean("done"u8, true);
        WriteTail(json, finishReason, usage, toolCalls);
    });

    /// <summary>An error message; the text is shortened if needed so the message fits in <paramref name="maxBytes"/>.</summary>
    public byte[] Error(long seq, ErrorInfo error, int maxBytes)
    {
        var text = error.Message;
        while (true)
        {
            var bytes = Write(json =>
            {
                Start(json, seq);
                json.WriteStartObject("error"u8);
                json.WriteString("message"u8, text);
                json.WriteString("type"u8, error.Type);
                WriteOptional(json, "param"u8, error.Param);
                WriteOptional(json, "code"u8, error.Code);
                json.WriteEndObject();
                json.WriteString("request_id"u8, _requestId);
            });
            var excess = bytes.Length - maxBytes;
            if (excess <= 0 || text.Length <= 1)
            {
                return bytes;
            }

            // Bytes can be up to 6 per character once escaped; cutting characters one for one converges quickly.
            var cut = Math.Max(excess + 1, 1);
            text = text.Length > cut ? text[..(text.Length - cut)].TrimEnd() + "…" : text[..1];
        }
    }

    private void Start(Utf8JsonWriter json, long seq)
    {
        json.WriteStartObject();
        if (_id is null)
        {
            json.WriteNull("id"u8);
        }
        else
        {
            json.WriteString("id"u8, _id);
        }

        json.WriteNumber("seq"u8, seq);
    }

    private void WriteTail(Utf8JsonWriter json, string? finishReason, ChatUsage usage, IReadOnlyList<ToolCall>? toolCalls)
    {
        WriteOptional(json, "finish_reason"u8, finishReason);
        if (toolCalls is { Count: > 0 })
        {
            PortalEvents.WriteToolCalls(json, toolCalls);
        }

        json.WriteStartObject("usage"u8);
        json.WriteNumber("prompt_tokens"u8, usage.PromptTokens);
        json.WriteNumber("completion_tokens"u8, usage.CompletionTokens);
        json.WriteNumber("total_tokens"u8, usage.TotalTokens);
        json.WriteEndObject();
        json.WriteString("request_id"u8, _requestId);
        json.WriteEndObject();
    }

    private static void WriteOptional(Utf8JsonWriter json, ReadOnlySpan<byte> name, string? value)
    {
        if (value is not null)
        {
            json.WriteString(name, value);
        }
    }

    private static byte[] Write(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            write(json);
            if (json.CurrentDepth > 0)
            {
                json.WriteEndObject();
            }
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static string Quote(string value) => JsonSerializer.Serialize(value, JsonOptions);

    private static readonly JsonSerializerOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The characters of the code point at <paramref name="index"/> and its escaped UTF-8 size.</summary>
    private static (int Chars, int Bytes) Measure(StringBuilder text, int index)
    {
        var c = text[index];
        if (char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
        {
            return (2, 4);
        }

        return (1, c switch
        {
            '"' or '\\' or '\n' or '\r' or '\t' or '\b' or '\f' => 2,
            < ' ' => 6,
            < (char)0x80 => 1,
            < (char)0x800 => 2,
            _ => 3, // includes a lone surrogate, written as U+FFFD
        });
    }

    private static int Escape(StringBuilder text, int count, Span<byte> destination)
    {
        var at = 0;
        Span<char> pair = stackalloc char[2];
        for (var i = 0; i < count;)
        {
            var (chars, _) = Measure(text, i);
            var c = text[i];
            switch (c)
            {
                case '"':
                    at += Ascii("\\\"", destination[at..]);
                    break;
                case '\\':
                    at += Ascii("\\\\", destination[at..]);
                    break;
                case '\n':
                    at += Ascii("\\n", destination[at..]);
                    break;
                case '\r':
                    at += Ascii("\\r", destination[at..]);
                    break;
                case '\t':
                    at += Ascii("\\t", destination[at..]);
                    break;
                case '\b':
                    at += Ascii("\\b", destination[at..]);
                    break;
                case '\f':
                    at += Ascii("\\f", destination[at..]);
                    break;
                case < ' ':
                    at += Ascii("\\u00" + ((int)c).ToString("x2", CultureInfo.InvariantCulture), destination[at..]);
                    break;
                default:
                    if (chars == 2)
                    {
                        pair[0] = c;
                        pair[1] = text[i + 1];
                        at += Encoding.UTF8.GetBytes(pair, destination[at..]);
                    }
                    else
                    {
                        // A lone surrogate cannot be UTF-8; the replacement character takes its place.
                        var ch = char.IsSurrogate(c) ? '\uFFFD' : c;
                        at += Encoding.UTF8.GetBytes(new ReadOnlySpan<char>(in ch), destination[at..]);
                    }

                    break;
            }

            i += chars;
        }

        return at;
    }

    private static int Ascii(string value, Span<byte> destination) => Encoding.ASCII.GetBytes(value, destination);
}
