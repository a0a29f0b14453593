using System.Buffers;
using System.Buffers.Text;

namespace Sluice.Protocol.Sse;

/// <summary>
/// Writes Server-Sent Events as whole frames into a buffer. A frame is written completely before anything
/// else (such as a keep-alive comment) can be, so a ping can never land inside a <c>data:</c> line.
/// </summary>
public static class SseWriter
{
    /// <summary>The comment frame used as keep-alive.</summary>
    public static ReadOnlySpan<byte> PingFrame => ": ping\n\n"u8;

    /// <summary>Writes <c>id: {id}\n</c> (nothing when <paramref name="id"/> is negative).</summary>
    public static void WriteId(IBufferWriter<byte> writer, long id)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (id < 0)
        {
            return;
        }

        var span = writer.GetSpan(24);
        "id: "u8.CopyTo(span);
        Utf8Formatter.TryFormat(id, span[4..], out var written);
        span[4 + written] = (byte)'\n';
        writer.Advance(5 + written);
    }

    /// <summary>Writes <c>event: {type}\n</c>.</summary>
    public static void WriteEventType(IBufferWriter<byte> writer, ReadOnlySpan<byte> eventType)
    {
        Write(writer, "event: "u8);
        Write(writer, eventType);
        Write(writer, "\n"u8);
    }

    /// <summary>
    /// Writes <paramref name="data"/> as one or more <c>data:</c> lines (split at any CR, LF or CRLF), then the
    /// blank line that dispatches the event.
    /// </summary>
    public static void WriteData(IBufferWriter<byte> writer, ReadOnlySpan<byte> data)
    {
        ArgumentNullException.ThrowIfNull(writer);
        while (true)
        {
            var end = data.IndexOfAny((byte)'\r', (byte)'\n');
            Write(writer, "data: "u8);
            if (end < 0)
            {
                Write(writer, data);
                Write(writer, "\n\n"u8);
                return;
            }

            Write(writer, data[..end]);
            Write(writer, "\n"u8);
            var skip = data[end] == (byte)'\r' && end + 1 < data.Length && data[end + 1] == (byte)'\n' ? 2 : 1;
            data = data[(end + skip)..];
        }
    }

    /// <summary>Writes a whole event: optional id, optional type, data.</summary>
    public static void WriteEvent(IBufferWriter<byte> writer, long id, ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType = default)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (eventType.IsEmpty && data.IndexOfAny((byte)'\r', (byte)'\n') < 0)
        {
            // The usual frame, one data line: reserve it whole and fill it in one go.
            WriteSingleLine(writer, id, data);
            return;
        }

        WriteId(writer, id);
        if (!eventType.IsEmpty)
        {
            WriteEventType(writer, eventType);
        }

        WriteData(writer, data);
    }

    /// <summary>Writes a comment frame <c>: {text}\n\n</c> (text must not contain line breaks).</summary>
    public static void WriteComment(IBufferWriter<byte> writer, ReadOnlySpan<byte> text)
    {
        if (text.IndexOfAny((byte)'\r', (byte)'\n') >= 0)
        {
            throw new ArgumentException("A comment cannot contain line breaks.", nameof(text));
        }

        Write(writer, ": "u8);
        Write(writer, text);
        Write(writer, "\n\n"u8);
    }

    private static void WriteSingleLine(IBufferWriter<byte> writer, long id, ReadOnlySpan<byte> data)
    {
        // "id: " + up to 20 digits + "\n", "data: ", data, "\n\n".
        var span = writer.GetSpan(25 + 6 + data.Length + 2);
        var written = 0;
        if (id >= 0)
        {
            "id: "u8.CopyTo(span);
            Utf8Formatter.TryFormat(id, span[4..], out var digits);
            span[4 + digits] = (byte)'\n';
            written = 5 + digits;
        }

        "data: "u8.CopyTo(span[written..]);
        written += 6;
        data.CopyTo(span[written..]);
        written += data.Length;
        span[written] = (byte)'\n';
        span[written + 1] = (byte)'\n';
        writer.Advance(written + 2);
    }

    private static void Write(IBufferWriter<byte> writer, ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return;
        }

        var span = writer.GetSpan(bytes.Length);
        bytes.CopyTo(span);
        writer.Advance(bytes.Length);
    }
}
