namespace Sluice.Mqtt;

/// <summary>An application message received from the broker.</summary>
/// <param name="Topic">The topic it was published to.</param>
/// <param name="Payload">Its bytes (owned by the message).</param>
/// <param name="Qos">The QoS it was delivered with.</param>
/// <param name="Retain">True when the broker sent a retained message because of a new subscription.</param>
/// <param name="Duplicate">True when the broker marked it as a possible redelivery.</param>
public sealed record MqttMessage(string Topic, ReadOnlyMemory<byte> Payload, MqttQos Qos, bool Retain, bool Duplicate);
