namespace Sluice.Mqtt;

/// <summary>MQTT quality of service levels this client supports (QoS 2 is not implemented).</summary>
public enum MqttQos : byte
{
    /// <summary>At most once: fire and forget.</summary>
    AtMostOnce = 0,

    /// <summary>At least once: acknowledged with PUBACK, retransmitted after a reconnect until it is.</summary>
    AtLeastOnce = 1,
}
