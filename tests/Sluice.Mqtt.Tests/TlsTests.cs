using System.Diagnostics;
using System.Text;

namespace Sluice.Mqtt.Tests;

/// <summary>
/// <c>mqtts://</c>: the client against a real mosquitto with a TLS listener whose certificate is signed by a test CA
/// made here with openssl. The right CA file connects and carries messages; a wrong one, none (the system's roots)
/// and a wrong host name are refused with a message that says what to change.
/// </summary>
public sealed class TlsTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private readonly DirectoryInfo _pki = Directory.CreateTempSubdirectory("sluice-mqtt-tls-");
    private MosquittoProcess? _broker;

    private string CaFile => Path.Combine(_pki.FullName, "ca.pem");

    private string OtherCaFile => Path.Combine(_pki.FullName, "other-ca.pem");

    public async Task InitializeAsync()
    {
        // A test CA, a broker certificate it signs for 127.0.0.1 and localhost, and an unrelated CA.
        await OpenSslAsync("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Sluice Test CA");
        await OpenSslAsync("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=sluice-test-broker");
        await File.WriteAllTextAsync(
            Path.Combine(_pki.FullName, "server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n");
        await OpenSslAsync("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext");
        await OpenSslAsync("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=Some Other CA");

        _broker = await MosquittoProcess.StartAsync(persistence: false,
        [
            $"certfile {Path.Combine(_pki.FullName, "server.pem")}",
            $"keyfile {Path.Combine(_pki.FullName, "server.key")}",
        ]);
    }

    public async Task DisposeAsync()
    {
        if (_broker is not null)
        {
            await _broker.DisposeAsync();
        }

        _pki.Delete(recursive: true);
    }

    [Fact]
    public async Task With_the_ca_file_it_connects_and_messages_go_both_ways_over_tls()
    {
        await using var client = new MqttClient(Options("tls-ok", CaFile));
        client.Start();
        await client.WaitConnectedAsync().WaitAsync(Wait);

        await client.SubscribeAsync("tls/echo").WaitAsync(Wait);
        await client.PublishAsync("tls/echo", Encoding.UTF8.GetBytes("over TLS"), MqttQos.AtLeastOnce).WaitAsync(Wait);
        var message = await client.Messages.ReadAsync().AsTask().WaitAsync(Wait);

        Assert.Equal("tls/echo", message.Topic);
        Assert.Equal("over TLS", Encoding.UTF8.GetString(message.Payload.Span));
    }

    [Fact]
    public async Task The_listener_speaks_only_tls_so_a_plain_client_does_not_connect()
    {
        var reason = await FirstFailureAsync(new MqttClientOptions
        {
            Host = "127.0.0.1",
            Port = _broker!.Port,
            ClientId = "plain",
            ConnectTimeout = TimeSpan.FromSeconds(3),
            ReconnectMinDelay = TimeSpan.FromMilliseconds(100),
            ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
        });

        Assert.IsType<MqttConnectionException>(reason);
    }

    [Fact]
    public async Task A_wrong_ca_file_is_refused_with_a_message_naming_the_file()
    {
        var reason = await FirstFailureAsync(Options("tls-wrong-ca", OtherCaFile));

        Assert.IsType<MqttConnectionException>(reason);
        Assert.StartsWith($"TLS with the MQTT broker at 127.0.0.1:{_broker!.Port} failed: the broker's certificate (CN=sluice-test-broker, issued by CN=Sluice Test CA) does not chain to the CA file's certificate(s)", reason.Message, StringComparison.Ordinal);
        Assert.Contains($"Check that the CA file '{OtherCaFile}' (Mqtt:CaFile) holds the CA that signed the broker's certificate.", reason.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_ca_file_a_private_ca_is_not_trusted_and_the_message_says_to_give_one()
    {
        var reason = await FirstFailureAsync(Options("tls-system-roots", caFile: null));

        Assert.Contains("is not trusted by this system", reason.Message, StringComparison.Ordinal);
        Assert.Contains("give its certificate with Mqtt:CaFile (sluice mqtt --ca-file)", reason.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_host_name_the_certificate_does_not_name_is_refused()
    {
        var options = Options("tls-wrong-name", CaFile);
        var reason = await FirstFailureAsync(new MqttClientOptions
        {
            Host = options.Host,
            Port = options.Port,
            ClientId = options.ClientId,
            UseTls = true,
            CaFile = CaFile,
            TlsServerName = "broker.example",
            ReconnectMinDelay = options.ReconnectMinDelay,
            ReconnectMaxDelay = options.ReconnectMaxDelay,
        });

        Assert.Contains("is not issued for the host name used to connect", reason.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_ca_file_without_tls_or_that_does_not_exist_is_refused_up_front()
    {
        Assert.Contains("mqtts://", Assert.Throws<ArgumentException>(() => new MqttClient(new MqttClientOptions { Host = "127.0.0.1", ClientId = "x", CaFile = CaFile })).Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", Assert.Throws<ArgumentException>(() => new MqttClient(new MqttClientOptions { Host = "127.0.0.1", ClientId = "x", UseTls = true, CaFile = "/nonexistent/ca.pem" })).Message, StringComparison.Ordinal);
    }

    private MqttClientOptions Options(string clientId, string? caFile) => new()
    {
        Host = "127.0.0.1",
        Port = _broker!.Port,
        ClientId = clientId,
        UseTls = true,
        CaFile = caFile,
        ReconnectMinDelay = TimeSpan.FromMilliseconds(100),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Starts a client that must not connect; returns why its first attempt failed.</summary>
    private static async Task<Exception> FirstFailureAsync(MqttClientOptions options)
    {
        var failed = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var connected = false;
        await using var client = new MqttClient(options);
        client.Connected += (_, _) => connected = true;
        client.Disconnected += (_, e) => failed.TrySetResult(e.Reason);
        client.Start();
        var reason = await failed.Task.WaitAsync(Wait);
        Assert.False(connected);
        Assert.False(client.IsConnected);
        return reason;
    }

    private async Task OpenSslAsync(params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo("openssl", args)
        {
            WorkingDirectory = _pki.FullName,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("openssl did not start; install it (apt-get install -y openssl).");
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Wait);
        Assert.True(process.ExitCode == 0, $"openssl {string.Join(' ', args)} failed: {await stderr}");
    }
}
