using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Routing;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Http;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Sessions;
using Sluice.Providers;
using Sluice.Providers.Routing;

namespace Sluice.Gateway.Hosting;

/// <summary>Builds and starts the Sluice gateway on Kestrel.</summary>
public static class SluiceGateway
{
    /// <summary>
    /// Builds the web application (not started) and opens its store (<see cref="GatewayOptions.Store"/>),
    /// applying migrations and loading the model groups created through the API.
    /// </summary>
    /// <param name="options">Validated options (see <see cref="GatewayConfiguration"/>).</param>
    /// <param name="configureServices">Extra services, e.g. additional <see cref="IUsageSink"/>s or a <see cref="TimeProvider"/>.</param>
    /// <param name="configureLogging">Logging set-up; defaults to single-line console logs.</param>
    /// <param name="cancellationToken">Cancels opening the store.</param>
    /// <exception cref="ModelConfigurationException">A model entry is invalid.</exception>
    /// <exception cref="GatewayConfigurationException">The store cannot be opened.</exception>
    public static async Task<WebApplication> BuildAsync(
        GatewayOptions options,
        Action<IServiceCollection>? configureServices = null,
        Action<ILoggingBuilder>? configureLogging = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var retryLog = new RetryLog();
        var catalog = new ModelCatalog(options.Models, options.ModelGroups, options.Retry, retryLog.Write);

        // No configuration reload: Sluice reads its own options once, and the host's default reload of appsettings.json
        // watches the whole working directory tree — with the data directory inside it, every SQLite write woke a file
        // watcher thread that stat'ed the changed file (bench/cpu-per-stream.sh: ~1 lstat per 4 streams).
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = "Sluice",
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.AddSluiceLogging(configureLogging, options.Observability);

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.Limits.MaxRequestBodyBytes;
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(options.Limits.RequestHeadersTimeoutSeconds);
            var maxConnections = options.Limits.MaxConnections ?? Http.OpenFileLimit.DefaultMaxConnections(Http.OpenFileLimit.Current);
            kestrel.Limits.MaxConcurrentConnections = maxConnections;
            var perClient = options.Limits.MaxConnectionsPerClient ?? Http.ConnectionsPerClient.DefaultLimit(maxConnections);
            var limit = perClient > 0
                ? new Http.ConnectionsPerClient(
                    perClient,
                    kestrel.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Connections"),
                    TimeProvider.System,
                    kestrel.ApplicationServices.GetService<Observability.GatewayMetrics>())
                : null;
            Listen(kestrel, options.Host, options.Port, limit);
        });

        // Kestrel's default accept backlog (512) overflows when thousands of clients connect at once (measured with
        // bench/proxied-streams.sh): the dropped SYNs are retried seconds later. The kernel caps it at somaxconn.
        // Streaming:IoQueues 0 sends socket completions straight to the thread pool (side by side with bench/overhead-wrk.sh
        // --b-dll: within a few percent of Kestrel's queues on two cores); unset keeps Kestrel's queues.
        builder.Services.Configure<Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions>(o =>
        {
            o.Backlog = 4096;
            if (options.Streaming.IoQueues is { } queues)
            {
                o.IOQueueCount = queues;
            }
        });

        // TCP listeners whose accept loop waits instead of spinning when the process is out of file descriptors.
        builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IConnectionListenerFactory, Http.GuardedSocketTransportFactory>();

        var origins = options.Cors.AllowedOrigins.Where(o => !string.IsNullOrWhiteSpace(o)).ToArray();
        var services = builder.Services;
        services.AddSluiceCore(options, catalog).AddSluiceHttp();
        if (origins.Length > 0)
        {
            services.AddCors(cors => cors.AddDefaultPolicy(policy =>
            {
                if (origins.Contains("*"))
                {
                    policy.AllowAnyOrigin();
                }
                else
                {
                    policy.WithOrigins(origins);
                }

                // Preflights are answered for every API path; the stream and request ids are readable by scripts.
                policy.WithMethods("GET", "POST", "DELETE")
                    .WithHeaders("content-type", "authorization", "last-event-id", "x-api-key", "x-sluice-resume", "anthropic-version")
                    .WithExposedHeaders(HttpStreamSink.StreamIdHeader, SessionEndpoints.SessionIdHeader, SessionEndpoints.DroppedTurnsHeader, "x-request-id", "retry-after")
                    .SetPreflightMaxAge(TimeSpan.FromHours(1));
            }));
        }

        services.AddSluiceOpenTelemetry(options.Observability.Otlp);
        configureServices?.Invoke(services);
        services.TryAddSingleton(TimeProvider.System);
        if (options.Mqtt.Enabled)
        {
            services.AddSluiceMqtt();
        }

        var app = builder.Build();
        try
        {
            // The store is open (and the stored model groups routable) before the first request can arrive.
            await app.Services.StartSluiceCoreAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        retryLog.Logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Routing");
        retryLog.Telemetry = app.Services.GetRequiredService<Observability.CallTelemetry>();
        app.UseSluice(cors: origins.Length > 0);
        app.MapSluiceOpenAI();
        app.MapSluiceAnthropic();
        app.MapSluiceOllama();
        app.MapSluicePortal();
        app.MapSluiceApi();
        app.MapSluiceMetrics();
        app.MapSluicePublic();

        // Fail closed: a route that declares no key policy stops the start, rather than serving without one.
        EndpointPolicies.Verify(((IEndpointRouteBuilder)app).DataSources.SelectMany(d => d.Endpoints));
        return app;
    }

    /// <summary>Builds and starts the gateway; the returned handle knows the bound address (useful with port 0).</summary>
    public static async Task<RunningGateway> StartAsync(
        GatewayOptions options,
        Action<IServiceCollection>? configureServices = null,
        Action<ILoggingBuilder>? configureLogging = null,
        CancellationToken cancellationToken = default)
    {
        var app = await BuildAsync(options, configureServices, configureLogging, cancellationToken);
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var gateway = new RunningGateway(app, new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal)));
        try
        {
            // On a shared store the others can now forward to this instance: it listens, at this address.
            await app.Services.GetRequiredService<ClusterNode>().JoinAsync(new Uri(address), cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await gateway.DisposeAsync();
            throw new GatewayConfigurationException(
                $"Cluster: this instance could not register in the shared store ({ex.GetType().Name}: {ex.Message}). Check that the PostgreSQL server is reachable.");
        }

        return gateway;
    }

    private static void Listen(Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions kestrel, string host, int port, Http.ConnectionsPerClient? limit)
    {
        void Configure(Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions listen)
        {
            // First the limit per address (a connection over it costs nothing more), then: requests Kestrel rejects
            // itself (bad request line or headers, limits) get a JSON body like every other error.
            limit?.Apply(listen);
            listen.UseProtocolErrorBodies();
        }

        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            kestrel.Listen(IPAddress.Loopback, port, Configure);
        }
        else if (host is "*" or "+" or "0.0.0.0")
        {
            kestrel.ListenAnyIP(port, Configure);
        }
        else if (IPAddress.TryParse(host, out var address))
        {
            kestrel.Listen(address, port, Configure);
        }
        else
        {
            throw new GatewayConfigurationException($"Host '{host}' is not an IP address. Use 127.0.0.1 (local only), 0.0.0.0 (all interfaces) or localhost.");
        }
    }
}

/// <summary>Logs retry and fallback decisions; the catalog exists before the logger does.</summary>
internal sealed partial class RetryLog
{
    public ILogger? Logger { get; set; }

    public Observability.CallTelemetry? Telemetry { get; set; }

    public void Write(RetryNotice notice)
    {
        Telemetry?.Retried(notice);
        if (Logger is { } logger)
        {
            LogRetry(logger, notice.Failed, notice.Attempt, notice.Reason, notice.Next, notice.Delay.TotalMilliseconds);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Failed} failed before the first token (attempt {Attempt}: {Reason}); trying {Next} in {DelayMs:F0} ms")]
    private static partial void LogRetry(ILogger logger, string failed, int attempt, string reason, string next, double delayMs);
}

/// <summary>A started gateway. Dispose to stop it.</summary>
public sealed class RunningGateway(WebApplication app, Uri baseAddress) : IAsyncDisposable
{
    /// <summary>The application.</summary>
    public WebApplication App { get; } = app;

    /// <summary>Where it listens, e.g. <c>http://127.0.0.1:8080/</c>.</summary>
    public Uri BaseAddress { get; } = baseAddress;

    /// <summary>Resolves a service from the running gateway.</summary>
    public T GetRequiredService<T>()
        where T : notnull => App.Services.GetRequiredService<T>();

    /// <summary>
    /// Stops at once: answers still running end with a <c>gateway_shutting_down</c> error frame (usage recorded). A
    /// graceful stop with the grace period is the host's own (SIGTERM, Ctrl+C, <c>StopApplication</c>).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        App.Services.GetRequiredService<GatewayDrain>().Begin(immediately: true);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await App.StopAsync(timeout.Token);
        await App.DisposeAsync();
    }
}
