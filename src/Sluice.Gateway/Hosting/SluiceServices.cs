using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Endpoints;
using Sluice.Gateway.Http;
using Sluice.Gateway.Mqtt;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Responses;
using Sluice.Gateway.Sessions;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Gateway.WebChat;
using Sluice.Gateway.WebSockets;
using Sluice.Providers;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// The gateway's composition, one feature per method: the HTTP server (<see cref="SluiceGateway"/>) and the stand-alone
/// MQTT bridge (<see cref="MqttBridgeHost"/>) are both built from these, so no host copies part of another's
/// registration.
/// </summary>
internal static class SluiceServices
{
    /// <summary>
    /// The transport-neutral core: options, models, usage reporting, the store and tenancy (keys, admission, ledger),
    /// model resolution and the call pipeline with its relay.
    /// </summary>
    public static IServiceCollection AddSluiceCore(this IServiceCollection services, GatewayOptions options, ModelCatalog catalog)
    {
        services.AddSingleton(options);

        // Through a factory, so the container disposes the catalog with the host: local models unmap their files.
        services.AddSingleton(_ => catalog);
        services.AddMetrics();
        services.AddSingleton<GatewayMetrics>();
        services.AddSingleton(new Responses.StoredResponseRetention(
            options.Responses.MaxStoredPerTeam, options.Responses.StoreDays > 0 ? TimeSpan.FromDays(options.Responses.StoreDays) : null));
        services.AddSingleton(new Http.RequestBodyBudget(
            options.Limits.MaxBodyBytesPerClient,
            options.Limits.MaxBodyBytes ?? Math.Max(4 * options.Limits.MaxBodyBytesPerClient, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4)));
        services.AddSingleton<CallTelemetry>();
        services.AddSingleton(sp => new PrometheusExporter(sp.GetRequiredService<GatewayMetrics>().Meter, options.Observability.Metrics.MaxSeriesPerMetric));
        services.AddSingleton<UsageTotals>();
        services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<UsageTotals>());
        services.AddSingleton<ModelActivity>();
        services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<ModelActivity>());
        services.AddSingleton<UsageReporter>();
        services.AddSingleton<TenancyRuntime>();
        services.AddSingleton<TenantDirectory>();
        services.AddSingleton<KeyAuthenticator>();
        services.AddSingleton<CallAdmission>();
        services.AddSingleton<ModelGroupRegistry>();
        services.AddSingleton<ModelResolver>();
        services.AddSingleton<LedgerUsageSink>();
        services.AddSingleton<IUsageSink>(sp => sp.GetRequiredService<LedgerUsageSink>());
        services.AddSingleton<StreamRelay>();
        services.AddSingleton<CallPipeline>();

        // Drain first among the hosted services: its StoppingAsync holds the stop until running answers are done.
        services.AddSingleton<GatewayDrain>();
        services.AddHostedService(sp => sp.GetRequiredService<GatewayDrain>());
        services.AddSingleton<ClusterNode>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterNode>());
        services.AddHostedService<Responses.StoredResponseSweeper>();
        services.Configure<HostOptions>(host =>
        {
            // The host's whole stop (drain included) must outlast the grace, or it would cut the answers early.
            host.ShutdownTimeout = TimeSpan.FromSeconds(Math.Max(0, options.Streaming.ShutdownGraceSeconds) + 15);
        });
        return services;
    }

    /// <summary>The HTTP and WebSocket transports: every endpoint, resumable streams, the web chat.</summary>
    public static IServiceCollection AddSluiceHttp(this IServiceCollection services)
    {
        services.AddSingleton<StreamRegistry>();
        services.AddSingleton<StreamForwarder>();
        services.AddSingleton<HttpCalls>();
        services.AddSingleton<StreamsEndpoint>();
        services.AddSingleton<ChatCompletionsEndpoint>();
        services.AddSingleton<EmbeddingsEndpoint>();
        services.AddSingleton<CompletionsEndpoint>();
        services.AddSingleton<ResponsesEndpoints>();
        services.AddSingleton<AnthropicMessagesEndpoint>();
        services.AddSingleton<OllamaEndpoints>();
        services.AddSingleton<PortalEndpoints>();
        services.AddSingleton<SessionEndpoints>();
        services.AddSingleton<JobEndpoints>();
        services.AddSingleton<TenancyEndpoints>();
        services.AddSingleton<InfoEndpoints>();
        services.AddSingleton<WebSocketKeyLimiter>();
        services.AddSingleton<WebSocketEndpoint>();
        services.AddSingleton<WebChatEndpoints>();
        return services;
    }

    /// <summary>The MQTT bridge, as a hosted service on the call pipeline.</summary>
    public static IServiceCollection AddSluiceMqtt(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<MqttBridge>();
        services.AddHostedService(sp => sp.GetRequiredService<MqttBridge>());
        return services;
    }

    /// <summary>
    /// Single-line console logs (Microsoft's own at warnings only), or one JSON object per line
    /// (<c>Observability:LogFormat</c> <c>json</c>), written to standard output in batches, unless the host configures its own. The access log
    /// (<c>Sluice.AccessLog</c>) is silenced when <c>Observability:AccessLog:Enabled</c> is false.
    /// </summary>
    public static void AddSluiceLogging(this ILoggingBuilder logging, Action<ILoggingBuilder>? configure, ObservabilityOptions? observability = null)
    {
        logging.ClearProviders();
        if (observability?.AccessLog.Enabled == false)
        {
            logging.AddFilter("Sluice.AccessLog", LogLevel.None);
        }

        if (configure is not null)
        {
            configure(logging);
            return;
        }

        if (observability?.LogFormat == "json")
        {
            logging.AddJsonConsole(o =>
            {
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.UseUtcTimestamp = true;
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss ";
            });
        }

        // Microsoft's formatters and their options, written in batches by Sluice's own console provider (one system
        // call per batch instead of per line, and no thread wake per line): see BatchingConsoleLoggerProvider.
        foreach (var console in logging.Services.Where(d => d.ServiceType == typeof(ILoggerProvider) && d.ImplementationType == typeof(ConsoleLoggerProvider)).ToList())
        {
            logging.Services.Remove(console);
        }

        logging.Services.AddSingleton<ILoggerProvider, BatchingConsoleLoggerProvider>();
        logging.SetMinimumLevel(LogLevel.Information);
        logging.AddFilter("Microsoft", LogLevel.Warning);

        // Kestrel warns once per connection over Limits:MaxConnections — a flood of connections would be a flood of
        // lines; GuardedSocketTransportFactory logs them as a count instead.
        logging.AddFilter(Http.GuardedSocketTransportFactory.KestrelConnectionsCategory, LogLevel.Error);

        // ASP.NET Core starts an Activity for every request while this category is enabled at any level (for log
        // scopes), and HttpClient then starts one of its own under it and writes trace headers upstream: ~1 KB and a
        // few µs per call for nothing, since Sluice's access log replaces its lines and startup errors reach the
        // console through the serve command. With OpenTelemetry tracing on, its listeners start them as before.
        logging.AddFilter(HostingDiagnosticsCategory, LogLevel.None);
    }

    private const string HostingDiagnosticsCategory = "Microsoft.AspNetCore.Hosting.Diagnostics";

    /// <summary>
    /// Opens the store (migrations), loads the model groups created through the API and the local models' weights (with
    /// progress in the log): before any call can arrive.
    /// </summary>
    public static async Task StartSluiceCoreAsync(this IServiceProvider services, CancellationToken cancellationToken)
    {
        // The exporter listens from the start, so no call goes uncounted.
        _ = services.GetRequiredService<PrometheusExporter>();
        await services.GetRequiredService<TenancyRuntime>().OpenAsync(cancellationToken);
        await services.GetRequiredService<ModelGroupRegistry>().LoadAllAsync(cancellationToken);
        var log = services.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Models");
        await services.GetRequiredService<ModelCatalog>().PreloadAsync((model, message) => ModelLoadLog.Progress(log, model, message), cancellationToken);
    }

    /// <summary>
    /// The middleware every request passes, in order: a request id (every response carries it, 401s included), the net
    /// for unhandled exceptions (a JSON error in the endpoint's dialect), CORS, the endpoint's key policy (fail closed),
    /// WebSockets. Routing runs first so the policy is known.
    /// </summary>
    public static void UseSluice(this WebApplication app, bool cors)
    {
        app.UseRouting();
        app.Use(HttpCallContext.AssignRequestIdAsync);
        app.Use(UnhandledErrors.HandleAsync);
        if (cors)
        {
            app.UseCors();
        }

        app.Use(next => EndpointPolicies.Authenticate(next, app.Services));
        app.UseWebSockets();
    }

    /// <summary>OpenAI: chat completions, the Responses API, models, resumable streams (resume, replay, cancel).</summary>
    public static void MapSluiceOpenAI(this IEndpointRouteBuilder app)
    {
        var chat = app.ServiceProvider.GetRequiredService<ChatCompletionsEndpoint>();
        var info = app.ServiceProvider.GetRequiredService<InfoEndpoints>();
        var streams = app.ServiceProvider.GetRequiredService<StreamsEndpoint>();
        var embeddings = app.ServiceProvider.GetRequiredService<EmbeddingsEndpoint>();
        app.MapPost("/v1/chat/completions", chat.HandleAsync).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/v1/embeddings", embeddings.OpenAIAsync).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/v1/completions", app.ServiceProvider.GetRequiredService<CompletionsEndpoint>().HandleAsync).WithPolicy(EndpointPolicy.Key);
        app.ServiceProvider.GetRequiredService<ResponsesEndpoints>().Map(app);
        app.MapGet("/v1/models", info.ListModelsAsync).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/v1/models/{id}", info.GetModelAsync).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/v1/streams/{id}", streams.ResumeAsync).WithPolicy(EndpointPolicy.Key);
        app.MapDelete("/v1/streams/{id}", streams.CancelAsync).WithPolicy(EndpointPolicy.Key);
    }

    /// <summary>Anthropic Messages.</summary>
    public static void MapSluiceAnthropic(this IEndpointRouteBuilder app)
    {
        var anthropic = app.ServiceProvider.GetRequiredService<AnthropicMessagesEndpoint>();
        app.MapPost("/v1/messages", anthropic.HandleAsync).WithPolicy(EndpointPolicy.AnthropicKey);
        app.MapPost("/v1/messages/count_tokens", anthropic.CountTokensAsync).WithPolicy(EndpointPolicy.AnthropicKey);
    }

    /// <summary>The Ollama API.</summary>
    public static void MapSluiceOllama(this IEndpointRouteBuilder app)
    {
        var ollama = app.ServiceProvider.GetRequiredService<OllamaEndpoints>();
        app.MapPost("/api/chat", ollama.ChatAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapPost("/api/generate", ollama.GenerateAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapPost("/api/show", ollama.ShowAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapGet("/api/tags", ollama.TagsAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapGet("/api/version", OllamaEndpoints.VersionAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapGet("/api/ps", ollama.RunningAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapPost("/api/pull", ollama.PullAsync).WithPolicy(EndpointPolicy.OllamaKey);
        foreach (var (method, path) in OllamaEndpoints.ModelManagement)
        {
            app.MapMethods(path, [method], OllamaEndpoints.RefuseModelManagementAsync).WithPolicy(EndpointPolicy.OllamaKey);
        }

        var embeddings = app.ServiceProvider.GetRequiredService<EmbeddingsEndpoint>();
        app.MapPost("/api/embed", embeddings.OllamaEmbedAsync).WithPolicy(EndpointPolicy.OllamaKey);
        app.MapPost("/api/embeddings", embeddings.OllamaEmbeddingsAsync).WithPolicy(EndpointPolicy.OllamaKey);
    }

    /// <summary>The portal stream and WebSocket chat.</summary>
    public static void MapSluicePortal(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/llm/chat/stream", app.ServiceProvider.GetRequiredService<PortalEndpoints>().StreamAsync).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/llm/ws", app.ServiceProvider.GetRequiredService<WebSocketEndpoint>().HandleAsync).WithPolicy(EndpointPolicy.Key);
    }

    /// <summary>Sessions, jobs and the tenancy API.</summary>
    public static void MapSluiceApi(this IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetRequiredService<SessionEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<JobEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<TenancyEndpoints>().Map(app);
    }

    /// <summary><c>GET /metrics</c> (Prometheus text), guarded by the scrape policy, when <c>Observability:Metrics:Enabled</c>.</summary>
    public static void MapSluiceMetrics(this IEndpointRouteBuilder app)
    {
        var options = app.ServiceProvider.GetRequiredService<GatewayOptions>();
        if (options.Observability.Metrics.Enabled)
        {
            app.MapGet("/metrics", MetricsEndpoint.ScrapeAsync).WithPolicy(EndpointPolicy.Scrape);
        }
    }

    /// <summary>The public endpoints: the web chat page, health, liveness and readiness, and the JSON 404 for every unknown path.</summary>
    public static void MapSluicePublic(this IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetRequiredService<WebChatEndpoints>().Map(app);
        var info = app.ServiceProvider.GetRequiredService<InfoEndpoints>();
        app.MapGet("/health", info.HealthAsync).WithPolicy(EndpointPolicy.Public);

        // For load balancers and orchestrators: live = the process answers; ready = it takes new streams (not draining).
        app.MapGet("/health/live", InfoEndpoints.LiveAsync).WithPolicy(EndpointPolicy.Public);
        app.MapGet("/health/ready", info.ReadyAsync).WithPolicy(EndpointPolicy.Public);

        // "{*path}", not the default "{*path:nonfile}": paths that look like files (/favicon.ico, /x.js) get the JSON 404 too.
        app.MapFallback("{*path}", InfoEndpoints.NotFoundAsync).WithPolicy(EndpointPolicy.Public);
    }
}

/// <summary>Model loading lines of the start-up log.</summary>
internal static partial class ModelLoadLog
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model}: {Message}")]
    public static partial void Progress(ILogger logger, string model, string message);
}
