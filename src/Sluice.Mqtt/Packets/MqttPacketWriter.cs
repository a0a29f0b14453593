using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Sluice.Mqtt.Packets;

/// <summary>The CONNECT packet's fields.</summary>
internal sealed record ConnectFields(string ClientId, ushort KeepAliveSeconds, bool CleanSession, string? Username, byte[]? Password);

/// <summary>Encodes MQTT 3.1.1 control packets. Every method writes one complete packet.</summary>
internal static class MqttPacketWriter
{
    /// <summary>Longest string field (a 16-bit length prefix).</summary>
    public const int MaxStringBytes = 65_535;

    private static readonly byte[] ProtocolName = "MQTT"u8.ToArray();
    private const byte ProtocolLevel = 4;

    public static void WriteConnect(IBufferWriter<byte> writer, ConnectFields fields)
    {
        if (fields.Password is not null && fields.Username is null)
        {
            // MQTT 3.1.1 §3.1.2.9: a password flag without a user name flag is a protocol violation.
            throw new ArgumentException("MQTT 3.1.1 does not allow a password without a user name. Set a user name as well.", nameof(fields));
        }

        var clientId = Utf8(fields.ClientId, "client id");
        var username = fields.Username is null ? null : Utf8(fields.Username, "user name");
        if (fields.Password is { Length: > MaxStringBytes })
        {
            throw new ArgumentException($"The password is longer than {MaxStringBytes} bytes.", nameof(fields));
        }

        var length = 2 + ProtocolName.Length + 1 + 1 + 2 + 2 + clientId.Length;
        byte flags = 0;
        if (fields.CleanSession)
        {
            flags |= 0x02;
        }

        if (username is not null)
        {
            flags |= 0x80;
            length += 2 + username.Length;
        }

        if (fields.Password is not null)
        {
            flags |= 0x40;
            length += 2 + fields.Password.Length;
        }

        WriteFixedHeader(writer, (byte)((byte)MqttPacketType.Connect << 4), length);
        WriteBinary(writer, ProtocolName);
        WriteByte(writer, ProtocolLevel);
        WriteByte(writer, flags);
        WriteUInt16(writer, fields.KeepAliveSeconds);
        WriteBinary(writer, clientId);
        if (username is not null)
        {
            WriteBinary(writer, username);
        }

        if (fields.Password is not null)
        {
            WriteBinary(writer, fields.Password);
        }
    }

    public static void WriteSubscribe(IBufferWriter<byte> writer, ushort packetId, IReadOnlyList<(string Filter, MqttQos Qos)> filters)
    {
        if (filters.Count == 0)
        {
            throw new ArgumentException("SUBSCRIBE needs at least one topic filter.", nameof(filters));
        }

        var encoded = new byte[filters.Count][];
        var length = 2;
        for (var i = 0; i < filters.Count; i++)
        {
            encoded[i] = Utf8(filters[i].Filter, "topic filter");
            length += 2 + encoded[i].Length + 1;
        }

        // SUBSCRIBE's fixed-header flags are reserved as 0b0010 (§3.8.1).
        WriteFixedHeader(writer, (byte)(((byte)MqttPacketType.Subscribe << 4) | 0x02), length);
        WriteUInt16(writer, packetId);
        for (var i = 0; i < filters.Count; i++)
        {
            WriteBinary(writer, encoded[i]);
            WriteByte(writer, (byte)filters[i].Qos);
        }
    }

    public static void WritePublish(IBufferWriter<byte> writer, string topic, ReadOnlySpan<byte> payload, MqttQos qos, bool retain, bool duplicate, ushort packetId)
    {
        var topicBytes = Utf8(topic, "topic");
        var length = 2 + topicBytes.Length + (qos == MqttQos.AtMostOnce ? 0 : 2) + payload.Length;
        if (length > MqttRemainingLength.Max)
        {
            throw new ArgumentException($"The message is larger than MQTT allows ({MqttRemainingLength.Max} bytes).", nameof(payload));
        }

        var first = (byte)((byte)MqttPacketType.Publish << 4 | (byte)qos << 1);
        if (retain)
        {
            first |= 0x01;
        }

        if (duplicate)
        {
            first |= 0x08;
        }

        WriteFixedHeader(writer, first, length);
        WriteBinary(writer, topicBytes);
        if (qos != MqttQos.AtMostOnce)
        {
            WriteUInt16(writer, packetId);
        }

        writer.Write(payload);
    }

    public static void WritePubAck(IBufferWriter<byte> writer, ushort packetId)
    {
        WriteFixedHeader(writer, (byte)MqttPacketType.PubAck << 4, 2);
        WriteUInt16(writer, packetId);
    }

    public static void WritePingReq(IBufferWriter<byte> writer) => WriteFixedHeader(writer, (byte)MqttPacketType.PingReq << 4, 0);

    public static void WriteDisconnect(IBufferWriter<byte> writer) => WriteFixedHeader(writer, (byte)MqttPacketType.Disconnect << 4, 0);

    /// <summary>Encodes one packet into a new array.</summary>
    public static byte[] ToArray(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        write(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteFixedHeader(IBufferWriter<byte> writer, byte first, int remainingLength)
    {
        WriteByte(writer, first);
        MqttRemainingLength.Write(writer, remainingLength);
    }

    private static byte[] Utf8(string value, string what)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        if (bytes.Length > MaxStringBytes)
        {
            throw new ArgumentException($"The {what} is longer than {MaxStringBytes} bytes of UTF-8.", nameof(value));
        }

        return bytes;
    }

    private static void WriteByte(IBufferWriter<byte> writer, byte value)
    {
        writer.GetSpan(1)[0] = value;
        writer.Advance(1);
    }

    private static void WriteUInt16(IBufferWriter<byte> writer, ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(writer.GetSpan(2), value);
        writer.Advance(2);
    }

    private static void WriteBinary(IBufferWriter<byte> writer, ReadOnlySpan<byte> value)
    {
        WriteUInt16(writer, (ushort)value.Length);
        writer.Write(value);
    }
}
