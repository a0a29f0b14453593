using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Providers;

namespace Sluice.Gateway.Mqtt;

/// <summary>Runs the MQTT bridge on its own, without the HTTP server (<c>sluice mqtt</c>).</summary>
public static class MqttBridgeHost
{
    /// <summary>Builds a host with the model catalog, the usage hook and the bridge (not started).</summary>
    /// <param name="options">Validated options with an <c>Mqtt</c> section that names a broker.</param>
    /// <param name="configureServices">Extra services, e.g. <see cref="IUsageSink"/>s or an <see cref="IMqttRequestAuthenticator"/>.</param>
    /// <param name="configureLogging">Logging set-up; defaults to single-line console logs.</param>
    /// <exception cref="GatewayConfigurationException">The <c>Mqtt</c> section is missing or invalid.</exception>
    /// <exception cref="ModelConfigurationException">A model entry is invalid.</exception>
    public static IHost Build(
        GatewayOptions options,
        Action<IServiceCollection>? configureServices = null,
        Action<ILoggingBuilder>? configureLogging = null)
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
        builder.Logging.ClearProviders();
        if (configureLogging is null)
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss ";
            });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        }
        else
        {
            configureLogging(builder.Logging);
        }

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(catalog);
        services.AddSingleton<UsageTotals>();
        services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<UsageTotals>());
        services.AddSingleton<UsageReporter>();
        configureServices?.Invoke(services);
        services.TryAddSingleton(TimeProvider.System);
        AddBridge(services);

        var host = builder.Build();
        retryLog.Logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Routing");
        return host;
    }

    /// <summary>Registers the bridge as a hosted service, with the allow-all authenticator unless one is registered.</summary>
    internal static void AddBridge(IServiceCollection services)
    {
        services.TryAddSingleton<IMqttRequestAuthenticator, AllowAllMqttAuthenticator>();
        services.AddSingleton<MqttBridge>();
        services.AddHostedService(sp => sp.GetRequiredService<MqttBridge>());
    }
}
