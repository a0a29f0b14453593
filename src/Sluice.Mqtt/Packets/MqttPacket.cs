namespace Sluice.Mqtt.Packets;

/// <summary>A decoded control packet.</summary>
internal abstract record MqttPacket(MqttPacketType Type);

/// <summary>CONNACK: the broker's answer to CONNECT.</summary>
internal sealed record ConnAckPacket(bool SessionPresent, byte ReturnCode) : MqttPacket(MqttPacketType.ConnAck);

/// <summary>PUBLISH: an application message (either direction).</summary>
internal sealed record PublishPacket(string Topic, ReadOnlyMemory<byte> Payload, MqttQos Qos, bool Retain, bool Duplicate, ushort PacketId)
    : MqttPacket(MqttPacketType.Publish);

/// <summary>PUBACK: acknowledges a QoS 1 PUBLISH.</summary>
internal sealed record PubAckPacket(ushort PacketId) : MqttPacket(MqttPacketType.PubAck);

/// <summary>SUBACK: one return code per requested filter (0–2 granted QoS, 0x80 failure).</summary>
internal sealed record SubAckPacket(ushort PacketId, byte[] ReturnCodes) : MqttPacket(MqttPacketType.SubAck);

/// <summary>PINGRESP.</summary>
internal sealed record PingRespPacket() : MqttPacket(MqttPacketType.PingResp);

/// <summary>
/// Any other well-framed packet (CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT, QoS 2 packets, …) with its body unparsed.
/// A client never expects these from a broker; tests use them to script a broker.
/// </summary>
internal sealed record RawPacket(MqttPacketType RawType, byte Flags, byte[] Body) : MqttPacket(RawType);
