using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Sluice.Providers;

namespace Sluice.Gateway.Mqtt;

/// <summary>Runs the MQTT bridge on its own, without the HTTP server (<c>sluice mqtt</c>).</summary>
/// <remarks>
/// Built from the same composition as the gateway (<c>AddSluiceCore</c> + <c>AddSluiceMqtt</c>): the same store, keys,
/// admission, limits and usage ledger, so a request over MQTT is resolved, admitted and billed exactly as over HTTP.
/// </remarks>
public static class MqttBridgeHost
{
    /// <summary>Builds a host with the core and the bridge (not started) and opens its store.</summary>
    /// <param name="options">Validated options with an <c>Mqtt</c> section that names a broker.</param>
    /// <param name="configureServices">Extra services, e.g. <see cref="IUsageSink"/>s or a <see cref="TimeProvider"/>.</param>
    /// <param name="configureLogging">Logging set-up; defaults to single-line console logs.</param>
    /// <param name="cancellationToken">Cancels opening the store.</param>
    /// <exception cref="GatewayConfigurationException">The <c>Mqtt</c> section is missing or invalid, or the store cannot be opened.</exception>
    /// <exception cref="ModelConfigurationException">A model entry is invalid.</exception>
    public static async Task<IHost> BuildAsync(
        GatewayOptions options,
        Action<IServiceCollection>? configureServices = null,
        Action<ILoggingBuilder>? configureLogging = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Mqtt.Enabled)
        {
            throw new GatewayConfigurationException("No MQTT broker is configured. Pass --broker mqtt://host:1883 or set Mqtt:Broker in the config.");
        }

        options.Mqtt.Validate();
        var retryLog = new RetryLog();
        var catalog = new ModelCatalog(options.Models, options.ModelGroups, options.Retry, retryLog.Write);
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings { ApplicationName = "Sluice", DisableDefaults = true });
        builder.Logging.AddSluiceLogging(configureLogging, options.Observability);

        var services = builder.Services;
        services.AddSluiceCore(options, catalog);
        services.AddSluiceOpenTelemetry(options.Observability.Otlp, aspNetCore: false);
        configureServices?.Invoke(services);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSluiceMqtt();

        var host = builder.Build();
        try
        {
            await host.Services.StartSluiceCoreAsync(cancellationToken);
        }
        catch
        {
            host.Dispose();
            throw;
        }

        retryLog.Logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Routing");
        retryLog.Telemetry = host.Services.GetRequiredService<Observability.CallTelemetry>();
        return host;
    }
}
