using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Mqtt;
using Sluice.Providers;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice mqtt</c>: runs only the MQTT bridge (no HTTP server).</summary>
internal static class MqttCommand
{
    public static Command Create()
    {
        var broker = new Option<string?>("--broker", "-b") { Description = "The MQTT broker, mqtt://host:1883, or mqtts://host:8883 for TLS (or Mqtt:Broker in the config; env SLUICE_Mqtt__Broker)." };
        var caFile = new Option<string?>("--ca-file")
        {
            Description = "For mqtts://: PEM file with the CA certificate that signed the broker's certificate, when the system does not trust it (or Mqtt:CaFile).",
            HelpName = "pem",
        };
        var prefix = new Option<string?>("--prefix") { Description = "Topic prefix: requests on PREFIX/requests/#, answers on PREFIX/responses/ID (default sluice)." };
        var clientId = new Option<string?>("--client-id") { Description = "MQTT client id (default sluice-<random>)." };
        var username = new Option<string?>("--username", "-u") { Description = "User name for the broker." };
        var passwordEnv = new Option<string?>("--password-env") { Description = "Name of an environment variable that holds the broker password." };
        var config = new Option<string?>("--config", "-c") { Description = "JSON config file (default: sluice.json in the working directory, if present): models and the Mqtt section. See sluice.example.json." };
        var command = new Command(
            "mqtt",
            "Run only the MQTT bridge: chat requests published to PREFIX/requests/# are answered on PREFIX/responses/ID, " +
            "streamed in coalesced chunks, with the built-in or configured models.\n\nExample:\n" +
            "  sluice mqtt --broker mqtt://127.0.0.1:1883\n" +
            "  mosquitto_pub -t sluice/requests/demo -m '{\"id\":\"1\",\"model\":\"sim-fast\",\"prompt\":\"Hello\"}'")
        {
            broker,
            caFile,
            prefix,
            clientId,
            username,
            passwordEnv,
            config,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(
            new Dictionary<string, string?>
            {
                ["Mqtt:Broker"] = parse.GetValue(broker),
                ["Mqtt:CaFile"] = parse.GetValue(caFile) is { } pem ? Path.GetFullPath(pem) : null,
                ["Mqtt:Prefix"] = parse.GetValue(prefix),
                ["Mqtt:ClientId"] = parse.GetValue(clientId),
                ["Mqtt:Username"] = parse.GetValue(username),
                ["Mqtt:PasswordEnv"] = parse.GetValue(passwordEnv),
            },
            parse.GetValue(config),
            cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(Dictionary<string, string?> overrides, string? configPath, CancellationToken cancellationToken)
    {
        try
        {
            var options = GatewayConfiguration.Bind(GatewayConfiguration.Build(configPath, overrides));
            if (!options.Mqtt.Enabled)
            {
                await Console.Error.WriteLineAsync("sluice mqtt: no broker given. Pass --broker mqtt://host:1883 (mqtts://host:8883 for TLS) or set Mqtt:Broker in the config file.");
                return ExitCodes.Usage;
            }

            using var host = await MqttBridgeHost.BuildAsync(options, cancellationToken: cancellationToken);
            var catalog = host.Services.GetRequiredService<ModelCatalog>();
            var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice");
            LogModels(logger, string.Join(", ", catalog.Models.Select(m => m.Name)), options.Mqtt.Prefix);
            await host.StartAsync(cancellationToken);
            await host.WaitForShutdownAsync(cancellationToken);
            return ExitCodes.Success;
        }
        catch (Exception ex) when (ex is GatewayConfigurationException or ModelConfigurationException)
        {
            await Console.Error.WriteLineAsync($"sluice mqtt: {ex.Message}");
            return ExitCodes.Config;
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Success;
        }
    }

    private static void LogModels(ILogger logger, string models, string prefix) =>
        logger.LogInformation("Sluice MQTT bridge — models: {Models}. Publish {{\"id\":\"1\",\"model\":\"sim-fast\",\"prompt\":\"Hello\"}} to {Prefix}/requests/demo and read {Prefix}/responses/1", models, prefix, prefix);
}
