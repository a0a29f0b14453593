using System.Globalization;
using System.Text;
using System.Text.Json;
using Sluice.Mqtt;

namespace Sluice.Cli.Tests;

/// <summary><c>sluice mqtt</c> as a real process (the shared broker comes from <c>scripts/test.sh</c>).</summary>
public sealed class MqttCommandTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Without_a_broker_it_says_how_to_give_one()
    {
        var result = await CliProcess.RunAsync(["mqtt"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--broker mqtt://host:1883", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_broker_url_it_cannot_use_is_a_configuration_error()
    {
        var result = await CliProcess.RunAsync(["mqtt", "--broker", "mqtts://broker:8883", "--ca-file", "/nonexistent/ca.pem"]);
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("Mqtt:CaFile '/nonexistent/ca.pem' does not exist", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task It_answers_requests_over_the_broker_and_stops_on_ctrl_c()
    {
        var (host, port) = SharedBroker();
        var prefix = "cli" + Guid.NewGuid().ToString("N")[..10];
        await using var bridge = CliProcess.Start(["mqtt", "--broker", $"mqtt://{host}:{port}", "--prefix", prefix], defaultSigInt: true);
        await bridge.WaitForOutputAsync((stdout, _) => stdout.Contains("MQTT bridge connected", StringComparison.Ordinal), Wait);

        await using var client = new MqttClient(new MqttClientOptions { Host = host, Port = port, ClientId = prefix + "-test" });
        client.Start();
        await client.SubscribeAsync(prefix + "/responses/#").WaitAsync(Wait);
        await client.PublishAsync(prefix + "/requests/cli", """{"id": "c1", "model": "sim-fast", "prompt": "Hello", "max_tokens": 12}"""u8.ToArray(), MqttQos.AtLeastOnce).WaitAsync(Wait);

        var text = new StringBuilder();
        using var timeout = new CancellationTokenSource(Wait);
        while (true)
        {
            var message = await client.Messages.ReadAsync(timeout.Token);
            using var json = JsonDocument.Parse(message.Payload);
            var root = json.RootElement;
            Assert.Equal("c1", root.GetProperty("id").GetString());
            if (root.TryGetProperty("done", out _))
            {
                Assert.Equal(12, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
                break;
            }

            text.Append(root.GetProperty("content").GetString());
        }

        Assert.NotEqual(0, text.Length);
        await bridge.InterruptAsync();
        Assert.Equal(0, await bridge.WaitForExitAsync(TimeSpan.FromSeconds(15)));
    }

    private static (string Host, int Port) SharedBroker()
    {
        var value = Environment.GetEnvironmentVariable("SLUICE_TEST_MQTT");
        var colon = value?.LastIndexOf(':') ?? -1;
        if (value is null || colon <= 0)
        {
            throw new InvalidOperationException(
                "SLUICE_TEST_MQTT is not set, so `sluice mqtt` cannot be tested against a real broker. Run the tests with " +
                "`bash scripts/test.sh`, which installs mosquitto if needed and starts a throwaway broker, or set SLUICE_TEST_MQTT=127.0.0.1:PORT.");
        }

        return (value[..colon], int.Parse(value.AsSpan(colon + 1), CultureInfo.InvariantCulture));
    }
}
