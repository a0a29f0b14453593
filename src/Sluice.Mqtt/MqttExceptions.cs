namespace Sluice.Mqtt;

/// <summary>Base class of the MQTT client's failures.</summary>
public class MqttException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MqttException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>The broker or the client sent bytes that are not valid MQTT 3.1.1; the connection is closed.</summary>
public sealed class MqttProtocolException(string message) : MqttException(message);

/// <summary>
/// There is no connection to the broker right now (it was lost, or not yet made). QoS 0 messages fail with this;
/// QoS 1 messages wait for the next connection instead.
/// </summary>
public sealed class MqttConnectionException(string message, Exception? inner = null) : MqttException(message, inner);

/// <summary>The broker refused the connection (a CONNACK return code other than 0).</summary>
public sealed class MqttConnectRefusedException : MqttException
{
    /// <summary>Creates the exception for <paramref name="returnCode"/>.</summary>
    public MqttConnectRefusedException(byte returnCode)
        : base(Describe(returnCode)) => ReturnCode = returnCode;

    /// <summary>The CONNACK return code (1–5, or another value from a non-conforming broker).</summary>
    public byte ReturnCode { get; }

    private static string Describe(byte code) => code switch
    {
        1 => "The broker refused the connection: it does not support MQTT 3.1.1 (return code 1). Use a broker that does, such as mosquitto.",
        2 => "The broker refused the client id (return code 2). Set a different client id.",
        3 => "The broker is unavailable (return code 3). It will be retried; check the broker's logs.",
        4 => "The broker refused the user name or password (return code 4). Check the Username and Password settings.",
        5 => "The broker says this client is not authorized to connect (return code 5). Check the broker's access rules and the credentials.",
        _ => $"The broker refused the connection with return code {code}.",
    };
}

/// <summary>The broker refused a subscription (SUBACK return code 0x80), e.g. because of its access rules.</summary>
public sealed class MqttSubscribeRefusedException(string filter) : MqttException(
    $"The broker refused the subscription to '{filter}'. Check the broker's access rules for this client.")
{
    /// <summary>The refused filter.</summary>
    public string Filter { get; } = filter;
}
