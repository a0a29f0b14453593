using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Providers;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice serve</c>: runs the gateway.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var host = new Option<string?>("--host") { Description = "Address to listen on (default 127.0.0.1; env SLUICE_HOST)." };
        var port = new Option<int?>("--port", "-p") { Description = "Port to listen on (default 8080; env SLUICE_PORT)." };
        var config = new Option<string?>("--config", "-c") { Description = "JSON config file (default: sluice.json in the working directory, if present). See sluice.example.json." };
        var command = new Command("serve", "Run the gateway: OpenAI-compatible /v1/chat/completions with streaming.\n\nExample:\n  sluice serve --port 8080 --config sluice.json")
        {
            host,
            port,
            config,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(parse.GetValue(host), parse.GetValue(port), parse.GetValue(config), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string? host, int? port, string? configPath, CancellationToken cancellationToken)
    {
        GatewayOptions options;
        try
        {
            var overrides = new Dictionary<string, string?>();
            if (host is not null)
            {
                overrides["Host"] = host;
            }

            if (port is not null)
            {
                overrides["Port"] = port.Value.ToString(CultureInfo.InvariantCulture);
            }

            options = GatewayConfiguration.Bind(GatewayConfiguration.Build(configPath, overrides));
            await using var gateway = await SluiceGateway.StartAsync(options, cancellationToken: cancellationToken);
            var logger = gateway.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice");
            var catalog = gateway.GetRequiredService<ModelCatalog>();
            LogStarted(logger, gateway.BaseAddress, string.Join(", ", catalog.Models.Select(m => m.Name)));
            if (catalog.Models.All(m => m.Options.Provider is "sim" or "sim-embed"))
            {
                LogSimulated(logger);
            }

            await gateway.App.WaitForShutdownAsync(cancellationToken);
            return ExitCodes.Success;
        }
        catch (Exception ex) when (ex is GatewayConfigurationException or ModelConfigurationException)
        {
            await Console.Error.WriteLineAsync($"sluice serve: {ex.Message}");
            return ExitCodes.Config;
        }
        catch (IOException ex) when (ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            await Console.Error.WriteLineAsync($"sluice serve: {ex.Message}. Another process uses that port: stop it or pass --port.");
            return ExitCodes.Config;
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Success;
        }
    }

    private static void LogStarted(ILogger logger, Uri address, string models) =>
        logger.LogInformation("Sluice listening on {Address} — models: {Models}. Try: curl {Address}v1/chat/completions -d '{{\"model\":\"sim-fast\",\"prompt\":\"Hello\",\"stream\":true}}'", address, models, address);

    private static void LogSimulated(ILogger logger) =>
        logger.LogInformation("Serving simulated models only (they write plausible text, not real answers). Add real providers in sluice.json.");
}
