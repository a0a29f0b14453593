using System.Buffers;

namespace Sluice.Protocol.Sse;

/// <summary>
/// The field grammar of one SSE line (WHATWG "Server-sent events"), shared by every SSE reader in Sluice: the
/// browser-facing <see cref="SseParser"/> and the upstream-facing reader of the provider adapters, which differ only in
/// what they do at the end of a body and with lines that are not fields.
/// </summary>
public static class SseLine
{
    /// <summary>
    /// Splits a non-empty line into its field and value (one space after the colon dropped; a line without a colon is a
    /// field with an empty value). False for a comment line (starting with <c>:</c>).
    /// </summary>
    public static bool TrySplit(ReadOnlySpan<byte> line, out ReadOnlySpan<byte> field, out ReadOnlySpan<byte> value)
    {
        if (!line.IsEmpty && line[0] == (byte)':')
        {
            field = default;
            value = line[1..];
            return false;
        }

        var colon = line.IndexOf((byte)':');
        field = colon < 0 ? line : line[..colon];
        value = colon < 0 ? [] : line[(colon + 1)..];
        if (!value.IsEmpty && value[0] == (byte)' ')
        {
            value = value[1..];
        }

        return true;
    }

    /// <summary>Appends a <c>data</c> value to the event's data: several data lines are joined with <c>\n</c>.</summary>
    public static void AppendData(ArrayBufferWriter<byte> data, ref bool hasData, ReadOnlySpan<byte> value)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (hasData)
        {
            data.Write("\n"u8);
        }

        data.Write(value);
        hasData = true;
    }
}
