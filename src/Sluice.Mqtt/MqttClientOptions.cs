namespace Sluice.Mqtt;

/// <summary>How an <see cref="MqttClient"/> connects.</summary>
public sealed class MqttClientOptions
{
    /// <summary>Broker host name or address.</summary>
    public required string Host { get; init; }

    /// <summary>Broker port (1883 is MQTT's; 8883 is MQTT over TLS).</summary>
    public int Port { get; init; } = 1883;

    /// <summary>
    /// Speak TLS to the broker (<c>mqtts://</c>). The broker's certificate must be valid for <see cref="TlsServerName"/>
    /// and chain to a trusted root: the system's, or only the CA(s) in <see cref="CaFile"/> when it is set.
    /// </summary>
    public bool UseTls { get; init; }

    /// <summary>
    /// A PEM file with the CA certificate(s) that signed the broker's certificate — for a private CA. When set, only
    /// these are trusted as roots (the system's roots are not). Requires <see cref="UseTls"/>.
    /// </summary>
    public string? CaFile { get; init; }

    /// <summary>The name the broker's certificate must carry (default: <see cref="Host"/>).</summary>
    public string? TlsServerName { get; init; }

    /// <summary>Client identifier; unique per broker. Required (non-empty) when <see cref="CleanSession"/> is false.</summary>
    public required string ClientId { get; init; }

    /// <summary>User name, if the broker wants one.</summary>
    public string? Username { get; init; }

    /// <summary>Password (requires <see cref="Username"/> in MQTT 3.1.1).</summary>
    public string? Password { get; init; }

    /// <summary>Keep-alive interval; zero turns keep-alive off. At most 65535 seconds.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Start every connection with a fresh session (the broker forgets subscriptions and queued messages).</summary>
    public bool CleanSession { get; init; } = true;

    /// <summary>Time allowed for the TCP connection plus CONNACK, and for a SUBACK.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>First delay before reconnecting; doubles (with jitter) up to <see cref="ReconnectMaxDelay"/>.</summary>
    public TimeSpan ReconnectMinDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Longest delay between reconnection attempts.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest packet accepted from the broker; a larger one is a protocol error that closes the connection.</summary>
    public int MaxIncomingPacketBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>Most QoS 1 messages awaiting PUBACK at once; further publishes wait for a slot.</summary>
    public int MaxInflight { get; init; } = 64;

    /// <summary>Received messages buffered for the application; when full, reading from the broker pauses.</summary>
    public int ReceiveBufferMessages { get; init; } = 256;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(Host))
        {
            throw new ArgumentException("MQTT broker host is empty.");
        }

        if (Port is < 1 or > 65535)
        {
            throw new ArgumentException($"MQTT broker port {Port} is out of range 1–65535.");
        }

        if (KeepAlive < TimeSpan.Zero || KeepAlive.TotalSeconds > ushort.MaxValue)
        {
            throw new ArgumentException("MQTT keep-alive must be between 0 and 65535 seconds.");
        }

        if (!CleanSession && string.IsNullOrEmpty(ClientId))
        {
            throw new ArgumentException("A persistent MQTT session (clean session off) needs a client id.");
        }

        if (Password is not null && Username is null)
        {
            throw new ArgumentException("MQTT 3.1.1 does not allow a password without a user name.");
        }

        if (CaFile is not null && !UseTls)
        {
            throw new ArgumentException("An MQTT CA file only applies to TLS connections: use an mqtts:// broker address, or drop the CA file.");
        }

        if (CaFile is not null && !File.Exists(CaFile))
        {
            throw new ArgumentException($"The MQTT CA file '{CaFile}' does not exist. Give the path of the PEM file holding the broker's CA certificate.");
        }

        if (MaxInflight < 1 || ReceiveBufferMessages < 1 || MaxIncomingPacketBytes < 16)
        {
            throw new ArgumentException("MaxInflight and ReceiveBufferMessages must be at least 1, MaxIncomingPacketBytes at least 16.");
        }
    }
}
