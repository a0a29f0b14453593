using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Providers;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice serve</c>: runs the gateway.</summary>
internal static partial class ServeCommand
{
    private const string ErrorPrefix = "sluice serve: ";

    public static Command Create()
    {
        var host = new Option<string?>("--host") { Description = "Address to listen on (default 127.0.0.1; env SLUICE_HOST)." };
        var port = new Option<int?>("--port", "-p") { Description = "Port to listen on (default 8080, 0 = any free port; env SLUICE_PORT)." };
        var config = new Option<string?>("--config", "-c") { Description = "JSON config file (default: sluice.json in the working directory, if present). See sluice.example.json." };
        var data = new Option<string?>("--data")
        {
            Description = "Directory of the SQLite store (default: the per-user data directory, $XDG_DATA_HOME/sluice or ~/.local/share/sluice; config DataDirectory, env SLUICE_DataDirectory). Ignored when Store is set.",
            HelpName = "dir",
        };
        var command = new Command("serve", "Run the gateway: OpenAI-compatible /v1/chat/completions with streaming.\n\nExample:\n  sluice serve --port 8080 --config sluice.json")
        {
            host,
            port,
            config,
            data,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(parse.GetValue(host), parse.GetValue(port), parse.GetValue(config), parse.GetValue(data), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string? host, int? port, string? configPath, string? dataDirectory, CancellationToken cancellationToken)
    {
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

            if (dataDirectory is not null)
            {
                overrides["DataDirectory"] = Path.GetFullPath(dataDirectory);
            }

            var options = GatewayConfiguration.Bind(GatewayConfiguration.Build(configPath, overrides));
            if (PortInUse(options.Host, options.Port) is { } busy)
            {
                // Checked before the host starts: Kestrel's own failure arrives after the host has logged it with a stack trace.
                await Console.Error.WriteLineAsync(ErrorPrefix + busy);
                return ExitCodes.Config;
            }

            await using var gateway = await SluiceGateway.StartAsync(options, cancellationToken: cancellationToken);
            var logger = gateway.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice");
            var catalog = gateway.GetRequiredService<ModelCatalog>();
            LogStarted(logger, gateway.BaseAddress, Describe(catalog), TryHint(gateway.BaseAddress, catalog, options));
            if (catalog.MissingKeys.Count > 0)
            {
                LogMissingKeys(logger, catalog.MissingKeys.Count, string.Join(", ", catalog.MissingKeys.Select(k => $"{k.Model} ({k.Variable})")),
                    string.Join(' ', catalog.MissingKeys.Select(k => k.Variable).Distinct(StringComparer.Ordinal).Select(v => $"{v}=…")));
            }

            if (catalog.Models.All(m => m.Options.Provider is "sim" or "sim-embed"))
            {
                LogSimulated(logger);
            }

            await gateway.App.WaitForShutdownAsync(cancellationToken);
            return ExitCodes.Success;
        }
        catch (Exception ex) when (ex is GatewayConfigurationException or ModelConfigurationException)
        {
            await Console.Error.WriteLineAsync(ErrorPrefix + ex.Message);
            return ExitCodes.Config;
        }
        catch (IOException ex) when (ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            // Someone took the port between the check and the bind.
            await Console.Error.WriteLineAsync(ErrorPrefix + Sentences.Join(ex.Message, "Another process uses that port: stop it, or pass another --port (0 picks a free one)."));
            return ExitCodes.Config;
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Success;
        }
    }

    /// <summary>Why the gateway could not listen on host:port, or null when the port is free (or 0, or the host is not an address).</summary>
    internal static string? PortInUse(string host, int port)
    {
        if (port == 0)
        {
            return null;
        }

        var address = host switch
        {
            _ when string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) => IPAddress.Loopback,
            "*" or "+" or "0.0.0.0" => IPAddress.Any,
            _ => IPAddress.TryParse(host, out var parsed) ? parsed : null,
        };
        if (address is null)
        {
            return null; // the gateway reports a bad Host itself
        }

        var probe = new TcpListener(address, port);
        try
        {
            probe.Start();
            return null;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            return $"port {port} on {host} is already in use. Stop the other process, or pass another --port (0 picks a free one).";
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AccessDenied)
        {
            return $"not allowed to listen on port {port} ({host}): ports below 1024 need privileges. Pass --port 8080, or another port above 1023.";
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressNotAvailable)
        {
            return $"cannot listen on {host}: this machine has no such address. Pass --host 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces).";
        }
        finally
        {
            probe.Stop();
        }
    }

    /// <summary>The models, unavailable ones marked, e.g. <c>sim-realistic, gpt-4o (unavailable)</c>.</summary>
    private static string Describe(ModelCatalog catalog) =>
        string.Join(", ", catalog.Models.Select(m => m.UnavailableReason is null ? m.Name : m.Name + " (unavailable)"));

    /// <summary>
    /// A curl line that works as printed: the default model if it can be called (else the first one that can), and
    /// the key header when keys are required.
    /// </summary>
    internal static string TryHint(Uri address, ModelCatalog catalog, GatewayOptions options)
    {
        var model = catalog.Models.FirstOrDefault(m => m.UnavailableReason is null)?.Name;
        var header = options.MasterKey is null
            ? string.Empty
            : Environment.GetEnvironmentVariable("SLUICE_MASTER_KEY") is { Length: > 0 }
                ? " -H \"Authorization: Bearer $SLUICE_MASTER_KEY\""
                : " -H 'Authorization: Bearer <your master key>'";
        var body = model is null ? "{\"prompt\":\"Hello\",\"stream\":true}" : $"{{\"model\":\"{model}\",\"prompt\":\"Hello\",\"stream\":true}}";
        return $"curl -N {address}v1/chat/completions{header} -d '{body}'";
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Sluice listening on {Address} — models: {Models}. Try: {Hint}")]
    private static partial void LogStarted(ILogger logger, Uri address, string models, string hint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} model(s) unavailable until their environment variable (API key or model file) is set: {Models}. Export {Assignments} and restart; until then they answer 503 model_unavailable naming the variable.")]
    private static partial void LogMissingKeys(ILogger logger, int count, string models, string assignments);

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving simulated models only (they write plausible text, not real answers). Add real providers in sluice.json (see sluice.example.json).")]
    private static partial void LogSimulated(ILogger logger);
}
