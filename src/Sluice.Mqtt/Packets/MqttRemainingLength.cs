using System.Buffers;

namespace Sluice.Mqtt.Packets;

/// <summary>
/// The "remaining length" of the fixed header: 7 bits per byte, least significant group first, the high bit
/// set when another byte follows; at most 4 bytes (MQTT 3.1.1 §2.2.3).
/// </summary>
internal static class MqttRemainingLength
{
    /// <summary>The largest encodable value (0xFF 0xFF 0xFF 0x7F).</summary>
    public const int Max = 268_435_455;

    /// <summary>Bytes needed to encode <paramref name="value"/>.</summary>
    public static int SizeOf(int value) => value switch
    {
        < 0 or > Max => throw new ArgumentOutOfRangeException(nameof(value), value, $"Remaining length must be 0–{Max}."),
        < 128 => 1,
        < 16_384 => 2,
        < 2_097_152 => 3,
        _ => 4,
    };

    /// <summary>Writes <paramref name="value"/> and returns the bytes written.</summary>
    public static int Write(Span<byte> destination, int value)
    {
        var size = SizeOf(value);
        for (var i = 0; i < size; i++)
        {
            var digit = (byte)(value % 128);
            value /= 128;
            destination[i] = value > 0 ? (byte)(digit | 0x80) : digit;
        }

        return size;
    }

    /// <summary>Appends the encoding of <paramref name="value"/>.</summary>
    public static void Write(IBufferWriter<byte> writer, int value)
    {
        var span = writer.GetSpan(4);
        writer.Advance(Write(span, value));
    }

    /// <summary>
    /// Reads a remaining length. <see cref="OperationStatus.NeedMoreData"/> leaves the reader where it was;
    /// <see cref="OperationStatus.InvalidData"/> means a fifth byte would be needed (a malformed packet).
    /// </summary>
    public static OperationStatus TryRead(ref SequenceReader<byte> reader, out int value)
    {
        value = 0;
        var start = reader.Consumed;
        var multiplier = 1;
        for (var i = 0; i < 4; i++)
        {
            if (!reader.TryRead(out var digit))
            {
                reader.Rewind(reader.Consumed - start);
                value = 0;
                return OperationStatus.NeedMoreData;
            }

            value += (digit & 0x7F) * multiplier;
            if ((digit & 0x80) == 0)
            {
                return OperationStatus.Done;
            }

            multiplier *= 128;
        }

        value = 0;
        return OperationStatus.InvalidData;
    }
}
