using System.Globalization;
using Sluice.Gateway.Hosting;
using Sluice.Mqtt;

namespace Sluice.Gateway.Mqtt;

/// <summary>
/// The <c>Mqtt</c> section: a bridge that takes chat requests from an MQTT broker and streams the answers back.
/// The bridge runs when <see cref="Broker"/> is set (<c>sluice serve</c>) or with <c>sluice mqtt --broker</c>.
/// </summary>
public sealed class MqttBridgeOptions
{
    /// <summary>
    /// The broker, <c>mqtt://host:1883</c> or over TLS <c>mqtts://host:8883</c> (the ports are the defaults). Empty = no bridge.
    /// </summary>
    public string? Broker { get; set; }

    /// <summary>
    /// For <c>mqtts://</c>: a PEM file with the CA certificate(s) that signed the broker's certificate, when it is not
    /// signed by a CA the system trusts. Only these are then trusted.
    /// </summary>
    public string? CaFile { get; set; }

    /// <summary>MQTT client id; default <c>sluice-</c> plus random characters. Set a stable one with <see cref="CleanSession"/> off.</summary>
    public string? ClientId { get; set; }

    /// <summary>User name for the broker.</summary>
    public string? Username { get; set; }

    /// <summary>Password for the broker (prefer <see cref="PasswordEnv"/>, which keeps it out of files).</summary>
    public string? Password { get; set; }

    /// <summary>Name of an environment variable holding the password.</summary>
    public string? PasswordEnv { get; set; }

    /// <summary>Keep-alive interval in seconds (0 = off).</summary>
    public int KeepAliveSeconds { get; set; } = 30;

    /// <summary>
    /// Start each connection with a fresh session. Off (with a fixed <see cref="ClientId"/>) the broker keeps the
    /// subscription while the bridge is away and delivers the QoS 1 requests that arrived meanwhile.
    /// </summary>
    public bool CleanSession { get; set; } = true;

    /// <summary>Topic prefix: requests arrive on <c>{Prefix}/requests/#</c>, answers go to <c>{Prefix}/responses/{id}</c>.</summary>
    public string Prefix { get; set; } = "sluice";

    /// <summary>Largest answer message payload, in bytes; chunks are cut to fit.</summary>
    public int MaxMessageBytes { get; set; } = 1024;

    /// <summary>Least time between two messages of one answer, in milliseconds; text arriving meanwhile is coalesced.</summary>
    public int MinIntervalMs { get; set; } = 100;

    /// <summary>Largest request message, in bytes (larger ones get a <c>request_too_large</c> error).</summary>
    public int MaxRequestBytes { get; set; } = 64 * 1024;

    /// <summary>Answers generated at once; further requests wait their turn.</summary>
    public int MaxConcurrentRequests { get; set; } = 16;

    /// <summary>QoS of the request subscription (0 or 1).</summary>
    public int RequestQos { get; set; } = 1;

    /// <summary>QoS of content chunks (0 or 1); done and error messages always use QoS 1.</summary>
    public int ChunkQos { get; set; }

    /// <summary>First delay before reconnecting to the broker, in milliseconds; doubles up to <see cref="ReconnectMaxDelayMs"/>.</summary>
    public int ReconnectMinDelayMs { get; set; } = 500;

    /// <summary>Longest delay between reconnection attempts, in milliseconds.</summary>
    public int ReconnectMaxDelayMs { get; set; } = 30_000;

    /// <summary>Time allowed to connect (TCP plus CONNACK), in seconds.</summary>
    public int ConnectTimeoutSeconds { get; set; } = 10;

    /// <summary>Whether the bridge is configured.</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(Broker);

    /// <summary>The filter the bridge subscribes to.</summary>
    internal string RequestFilter => Prefix + "/requests/#";

    /// <summary>The default answer topic of request <paramref name="id"/>.</summary>
    internal string ResponseTopic(string id) => Prefix + "/responses/" + id;

    /// <summary>Checks every value; the message names the key and the fix.</summary>
    /// <exception cref="GatewayConfigurationException">A value is invalid.</exception>
    public void Validate()
    {
        var (_, _, tls) = ParseBroker();
        if (!string.IsNullOrWhiteSpace(CaFile))
        {
            if (!tls)
            {
                throw Invalid($"Mqtt:CaFile is set but Mqtt:Broker \"{Broker}\" is not a TLS address. Use mqtts://host:8883, or remove CaFile.");
            }

            if (!File.Exists(CaFile))
            {
                throw Invalid($"Mqtt:CaFile '{CaFile}' does not exist. Give the path of the PEM file holding the CA certificate that signed the broker's certificate.");
            }
        }

        if (string.IsNullOrEmpty(Prefix) || Prefix.EndsWith('/') || !MqttTopic.IsValidTopicName(Prefix))
        {
            throw Invalid($"Mqtt:Prefix \"{Prefix}\" is not usable: it must be a non-empty topic without '+', '#' or a trailing '/' (default \"sluice\").");
        }

        if (ClientId is { Length: > 0 } clientId && (clientId.Length > 128 || clientId.Any(char.IsControl)))
        {
            throw Invalid("Mqtt:ClientId must be at most 128 printable characters.");
        }

        if (!CleanSession && string.IsNullOrEmpty(ClientId))
        {
            throw Invalid("Mqtt:CleanSession is false, which needs a fixed Mqtt:ClientId so the broker can find the session again. Set one.");
        }

        if (!string.IsNullOrEmpty(Password) && !string.IsNullOrEmpty(PasswordEnv))
        {
            throw Invalid("Set either Mqtt:Password or Mqtt:PasswordEnv, not both.");
        }

        if ((!string.IsNullOrEmpty(Password) || !string.IsNullOrEmpty(PasswordEnv)) && string.IsNullOrEmpty(Username))
        {
            throw Invalid("MQTT 3.1.1 sends a password only with a user name: set Mqtt:Username too.");
        }

        _ = ResolvePassword();
        if (KeepAliveSeconds is < 0 or > ushort.MaxValue)
        {
            throw Invalid($"Mqtt:KeepAliveSeconds {KeepAliveSeconds} is out of range 0–65535 (default 30).");
        }

        if (MaxMessageBytes is < 256 or > 16 * 1024 * 1024)
        {
            throw Invalid($"Mqtt:MaxMessageBytes {MaxMessageBytes} is out of range 256–16777216 (default 1024).");
        }

        if (MinIntervalMs is < 0 or > 60_000)
        {
            throw Invalid($"Mqtt:MinIntervalMs {MinIntervalMs} is out of range 0–60000 (default 100).");
        }

        if (MaxRequestBytes is < 256 or > 16 * 1024 * 1024)
        {
            throw Invalid($"Mqtt:MaxRequestBytes {MaxRequestBytes} is out of range 256–16777216 (default 65536).");
        }

        if (MaxConcurrentRequests is < 1 or > 10_000)
        {
            throw Invalid($"Mqtt:MaxConcurrentRequests {MaxConcurrentRequests} is out of range 1–10000 (default 16).");
        }

        if (RequestQos is not (0 or 1) || ChunkQos is not (0 or 1))
        {
            throw Invalid("Mqtt:RequestQos and Mqtt:ChunkQos must be 0 or 1 (QoS 2 is not supported).");
        }

        if (ReconnectMinDelayMs < 10 || ReconnectMaxDelayMs < ReconnectMinDelayMs || ConnectTimeoutSeconds < 1)
        {
            throw Invalid("Mqtt:ReconnectMinDelayMs must be at least 10, Mqtt:ReconnectMaxDelayMs at least ReconnectMinDelayMs, and Mqtt:ConnectTimeoutSeconds at least 1.");
        }
    }

    /// <summary>Host, port and whether to use TLS, from <see cref="Broker"/>.</summary>
    internal (string Host, int Port, bool Tls) ParseBroker()
    {
        var broker = Broker?.Trim();
        if (string.IsNullOrEmpty(broker))
        {
            throw Invalid("Mqtt:Broker is empty. Set it to the broker's address, e.g. mqtt://127.0.0.1:1883 (or mqtts://host:8883 for TLS).");
        }

        if (!Uri.TryCreate(broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "tcp" or "mqtts" or "ssl") || string.IsNullOrEmpty(uri.Host))
        {
            throw Invalid($"Mqtt:Broker \"{broker}\" is not a broker address. Use mqtt://host:port, e.g. mqtt://127.0.0.1:1883, or mqtts://host:8883 for TLS.");
        }

        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            throw Invalid("Mqtt:Broker must not carry credentials; set Mqtt:Username and Mqtt:PasswordEnv instead.");
        }

        if (uri.AbsolutePath is not ("/" or "") || !string.IsNullOrEmpty(uri.Query))
        {
            throw Invalid($"Mqtt:Broker \"{broker}\" has a path or query; use just mqtt://host:port.");
        }

        var tls = uri.Scheme is "mqtts" or "ssl";
        var port = uri.IsDefaultPort || uri.Port < 0 ? (tls ? 8883 : 1883) : uri.Port;
        return (uri.IdnHost.Trim('[', ']'), port, tls);
    }

    /// <summary>The password, from <see cref="Password"/> or the variable named by <see cref="PasswordEnv"/>.</summary>
    internal string? ResolvePassword()
    {
        if (string.IsNullOrEmpty(PasswordEnv))
        {
            return string.IsNullOrEmpty(Password) ? null : Password;
        }

        var value = Environment.GetEnvironmentVariable(PasswordEnv)?.Trim();
        return string.IsNullOrEmpty(value)
            ? throw Invalid($"Mqtt:PasswordEnv names the environment variable {PasswordEnv}, which is not set. Export it, or remove PasswordEnv.")
            : value;
    }

    /// <summary>The client options these settings describe.</summary>
    internal MqttClientOptions ToClientOptions()
    {
        var (host, port, tls) = ParseBroker();
        return new MqttClientOptions
        {
            Host = host,
            Port = port,
            UseTls = tls,
            CaFile = tls && !string.IsNullOrWhiteSpace(CaFile) ? CaFile : null,
            ClientId = string.IsNullOrEmpty(ClientId) ? "sluice-" + Guid.NewGuid().ToString("N")[..10] : ClientId,
            Username = string.IsNullOrEmpty(Username) ? null : Username,
            Password = ResolvePassword(),
            KeepAlive = TimeSpan.FromSeconds(KeepAliveSeconds),
            CleanSession = CleanSession,
            ConnectTimeout = TimeSpan.FromSeconds(ConnectTimeoutSeconds),
            ReconnectMinDelay = TimeSpan.FromMilliseconds(ReconnectMinDelayMs),
            ReconnectMaxDelay = TimeSpan.FromMilliseconds(ReconnectMaxDelayMs),
            // Oversized requests must still be read whole to answer them with an error; anything far beyond is hostile.
            MaxIncomingPacketBytes = Math.Max(1024 * 1024, MaxRequestBytes * 4),
        };
    }

    /// <summary>The broker address without credentials, for logs.</summary>
    internal string Describe()
    {
        var (host, port, tls) = ParseBroker();
        return string.Create(CultureInfo.InvariantCulture, $"{(tls ? "mqtts" : "mqtt")}://{host}:{port}");
    }

    private static GatewayConfigurationException Invalid(string message) => new(message);
}
