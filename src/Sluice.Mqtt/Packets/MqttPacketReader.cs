using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Text;

namespace Sluice.Mqtt.Packets;

/// <summary>
/// Decodes control packets from a byte stream. Packets may arrive split anywhere (even one byte at a time) or
/// several in one read; nothing is decoded until a whole packet is buffered.
/// </summary>
internal static class MqttPacketReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Takes one packet from the front of <paramref name="buffer"/> if it is complete, and slices it off.
    /// </summary>
    /// <returns>False when more bytes are needed (<paramref name="buffer"/> is unchanged).</returns>
    /// <exception cref="MqttProtocolException">The bytes are not a valid packet, or it exceeds <paramref name="maxPacketBytes"/>.</exception>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, int maxPacketBytes, [NotNullWhen(true)] out MqttPacket? packet)
    {
        packet = null;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out var first))
        {
            return false;
        }

        switch (MqttRemainingLength.TryRead(ref reader, out var length))
        {
            case OperationStatus.NeedMoreData:
                return false;
            case OperationStatus.InvalidData:
                throw new MqttProtocolException("Malformed remaining length: more than 4 bytes.");
        }

        var headerLength = (int)reader.Consumed;
        if ((long)headerLength + length > maxPacketBytes)
        {
            throw new MqttProtocolException($"A packet of {headerLength + (long)length} bytes exceeds the limit of {maxPacketBytes} bytes.");
        }

        if (reader.Remaining < length)
        {
            return false;
        }

        var body = buffer.Slice(headerLength, length);
        packet = Decode((MqttPacketType)(first >> 4), (byte)(first & 0x0F), body);
        buffer = buffer.Slice(headerLength + length);
        return true;
    }

    /// <summary>
    /// Reads the next packet from <paramref name="reader"/>, waiting for more bytes as needed.
    /// </summary>
    /// <returns>The packet, or null when the stream ended cleanly between packets.</returns>
    /// <exception cref="MqttProtocolException">Malformed data, or the stream ended inside a packet.</exception>
    public static async ValueTask<MqttPacket?> ReadAsync(PipeReader reader, int maxPacketBytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            MqttPacket? packet;
            try
            {
                if (TryRead(ref buffer, maxPacketBytes, out packet))
                {
                    reader.AdvanceTo(buffer.Start);
                    return packet;
                }
            }
            catch (MqttProtocolException)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                throw;
            }

            if (result.IsCompleted)
            {
                var leftover = buffer.Length;
                reader.AdvanceTo(buffer.End);
                return leftover == 0
                    ? null
                    : throw new MqttProtocolException($"The connection ended in the middle of a packet ({leftover} bytes of it received).");
            }

            if (result.IsCanceled)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                throw new OperationCanceledException("Reading was cancelled.");
            }

            // Incomplete: keep everything, and wait for more than what has been examined.
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static MqttPacket Decode(MqttPacketType type, byte flags, ReadOnlySequence<byte> body)
    {
        var reader = new SequenceReader<byte>(body);
        switch (type)
        {
            case MqttPacketType.ConnAck:
            {
                ExpectFlags(type, flags, 0);
                ExpectLength(type, body, 2);
                reader.TryRead(out var acknowledge);
                reader.TryRead(out var code);
                if ((acknowledge & 0xFE) != 0)
                {
                    throw new MqttProtocolException("CONNACK has reserved flag bits set.");
                }

                return new ConnAckPacket((acknowledge & 0x01) != 0, code);
            }

            case MqttPacketType.Publish:
            {
                var qos = (flags >> 1) & 0x03;
                if (qos > 1)
                {
                    throw new MqttProtocolException(qos == 2
                        ? "Received a QoS 2 PUBLISH; this client subscribes with QoS 0 or 1 only."
                        : "PUBLISH has the invalid QoS value 3.");
                }

                var topic = ReadString(ref reader, "PUBLISH topic");
                if (!MqttTopic.IsValidTopicName(topic))
                {
                    throw new MqttProtocolException($"PUBLISH topic '{topic}' is not a valid topic name.");
                }

                ushort packetId = 0;
                if (qos > 0)
                {
                    packetId = ReadPacketId(ref reader, type);
                }

                var payload = body.Slice(reader.Position).ToArray();
                return new PublishPacket(topic, payload, (MqttQos)qos, (flags & 0x01) != 0, (flags & 0x08) != 0, packetId);
            }

            case MqttPacketType.PubAck:
                ExpectFlags(type, flags, 0);
                ExpectLength(type, body, 2);
                return new PubAckPacket(ReadPacketId(ref reader, type));

            case MqttPacketType.SubAck:
            {
                ExpectFlags(type, flags, 0);
                if (body.Length < 3)
                {
                    throw new MqttProtocolException("SUBACK must carry a packet id and at least one return code.");
                }

                var packetId = ReadPacketId(ref reader, type);
                var codes = body.Slice(reader.Position).ToArray();
                foreach (var code in codes)
                {
                    if (code is not (0 or 1 or 2 or 0x80))
                    {
                        throw new MqttProtocolException($"SUBACK has the invalid return code 0x{code:X2}.");
                    }
                }

                return new SubAckPacket(packetId, codes);
            }

            case MqttPacketType.PingResp:
                ExpectFlags(type, flags, 0);
                ExpectLength(type, body, 0);
                return new PingRespPacket();

            case MqttPacketType.Subscribe or MqttPacketType.Unsubscribe or MqttPacketType.PubRel:
                ExpectFlags(type, flags, 0x02);
                return new RawPacket(type, flags, body.ToArray());

            case MqttPacketType.Connect or MqttPacketType.PubRec or MqttPacketType.PubComp or MqttPacketType.UnsubAck
                or MqttPacketType.PingReq or MqttPacketType.Disconnect:
                ExpectFlags(type, flags, 0);
                return new RawPacket(type, flags, body.ToArray());

            default:
                throw new MqttProtocolException($"Unknown packet type {(int)type}.");
        }
    }

    private static void ExpectFlags(MqttPacketType type, byte flags, byte expected)
    {
        if (flags != expected)
        {
            throw new MqttProtocolException($"{type} has invalid fixed-header flags 0x{flags:X}.");
        }
    }

    private static void ExpectLength(MqttPacketType type, ReadOnlySequence<byte> body, int expected)
    {
        if (body.Length != expected)
        {
            throw new MqttProtocolException($"{type} must have a remaining length of {expected} (got {body.Length}).");
        }
    }

    private static ushort ReadPacketId(ref SequenceReader<byte> reader, MqttPacketType type)
    {
        if (!reader.TryReadBigEndian(out short value))
        {
            throw new MqttProtocolException($"{type} is too short for its packet id.");
        }

        return (ushort)value != 0 ? (ushort)value : throw new MqttProtocolException($"{type} has packet id 0, which is not allowed.");
    }

    private static string ReadString(ref SequenceReader<byte> reader, string what)
    {
        if (!reader.TryReadBigEndian(out short signedLength))
        {
            throw new MqttProtocolException($"{what} is truncated.");
        }

        var length = (ushort)signedLength;
        if (reader.Remaining < length)
        {
            throw new MqttProtocolException($"{what} claims {length} bytes but the packet has {reader.Remaining} left.");
        }

        var bytes = reader.UnreadSequence.Slice(0, length);
        reader.Advance(length);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new MqttProtocolException($"{what} is not valid UTF-8.");
        }
    }
}
