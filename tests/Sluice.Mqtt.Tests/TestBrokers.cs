using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Sluice.Mqtt.Tests;

/// <summary>The brokers the tests use: the shared one from <c>scripts/test.sh</c>, or private mosquitto processes.</summary>
internal static class TestBrokers
{
    private const string RunTheScript =
        "Run the tests with `bash scripts/test.sh`, which installs mosquitto if needed (apt-get install -y mosquitto) and starts a throwaway broker";

    /// <summary>The shared broker from <c>SLUICE_TEST_MQTT</c>; fails (never skips) when it is not set.</summary>
    public static (string Host, int Port) Shared
    {
        get
        {
            var value = Environment.GetEnvironmentVariable("SLUICE_TEST_MQTT");
            if (string.IsNullOrWhiteSpace(value))
            {
                throw new InvalidOperationException(
                    $"SLUICE_TEST_MQTT is not set, so the MQTT bridge cannot be tested against a real broker. {RunTheScript}, " +
                    "or set SLUICE_TEST_MQTT=127.0.0.1:PORT of a broker that allows anonymous clients.");
            }

            var colon = value.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(value.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            {
                throw new InvalidOperationException($"SLUICE_TEST_MQTT '{value}' is not HOST:PORT, e.g. 127.0.0.1:1883.");
            }

            return (value[..colon], port);
        }
    }

    /// <summary>The mosquitto binary: <c>SLUICE_TEST_MOSQUITTO</c>, then PATH, then Debian's /usr/sbin.</summary>
    public static string MosquittoBinary()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("SLUICE_TEST_MOSQUITTO") is { Length: > 0 } configured)
        {
            candidates.Add(configured);
        }

        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            candidates.Add(Path.Combine(dir, "mosquitto"));
        }

        candidates.Add("/usr/sbin/mosquitto");
        candidates.Add("/usr/local/sbin/mosquitto");
        return candidates.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException($"The mosquitto binary was not found (SLUICE_TEST_MOSQUITTO, PATH, /usr/sbin). {RunTheScript}.");
    }

    public static MqttClientOptions ClientOptions((string Host, int Port) broker, string clientId, bool cleanSession = true) => new()
    {
        Host = broker.Host,
        Port = broker.Port,
        ClientId = clientId,
        CleanSession = cleanSession,
        KeepAlive = TimeSpan.FromSeconds(10),
        ReconnectMinDelay = TimeSpan.FromMilliseconds(50),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(300),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };
}

/// <summary>
/// A private mosquitto process on a free loopback port that a test can stop and start again on the same port.
/// With persistence on, sessions of clients that connected with clean session off survive the restart.
/// </summary>
internal sealed class MosquittoProcess : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly string _directory;
    private readonly string _binary;
    private Process? _process;

    private MosquittoProcess(string directory, string binary, int port)
    {
        _directory = directory;
        _binary = binary;
        Port = port;
    }

    public int Port { get; }

    public (string Host, int Port) Address => ("127.0.0.1", Port);

    public string Log => File.Exists(LogPath) ? File.ReadAllText(LogPath) : string.Empty;

    private string LogPath => Path.Combine(_directory, "broker.log");

    /// <param name="persistence">Keep sessions and queued messages across restarts.</param>
    /// <param name="listenerSettings">More lines for the listener, e.g. <c>certfile</c>/<c>keyfile</c> for TLS.</param>
    public static async Task<MosquittoProcess> StartAsync(bool persistence, IEnumerable<string>? listenerSettings = null)
    {
        var binary = TestBrokers.MosquittoBinary();
        var directory = Directory.CreateTempSubdirectory("sluice-mosquitto-").FullName;
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        var config = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"listener {port} 127.0.0.1\n")
            .Append(string.Concat((listenerSettings ?? []).Select(line => line + "\n")))
            .Append("allow_anonymous true\n")
            .Append(CultureInfo.InvariantCulture, $"persistence {(persistence ? "true" : "false")}\n")
            .Append(CultureInfo.InvariantCulture, $"persistence_location {directory}/\n")
            // Run as whoever runs the tests, so the broker can write its files here (as root it would switch to 'mosquitto').
            .Append(CultureInfo.InvariantCulture, $"user {Environment.UserName}\n")
            .Append(CultureInfo.InvariantCulture, $"log_dest file {directory}/broker.log\n")
            .Append("log_type all\n");
        await File.WriteAllTextAsync(Path.Combine(directory, "mosquitto.conf"), config.ToString());
        var broker = new MosquittoProcess(directory, binary, port);
        await broker.StartAgainAsync();
        return broker;
    }

    /// <summary>Starts the broker (again) on the same port and waits until it accepts connections.</summary>
    public async Task StartAgainAsync()
    {
        _process = Process.Start(new ProcessStartInfo(_binary, ["-c", Path.Combine(_directory, "mosquitto.conf")])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("mosquitto did not start.");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = Stopwatch.GetTimestamp() + (long)(Timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"mosquitto exited with code {_process.ExitCode} on port {Port}. Its log:\n{Log}");
            }

            try
            {
                using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (Stopwatch.GetTimestamp() < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Stops the broker with SIGTERM (it saves its sessions) and waits for it to exit.</summary>
    public async Task StopAsync()
    {
        if (_process is null || _process.HasExited)
        {
            return;
        }

        using (var kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false }))
        {
            await kill!.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _process?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
