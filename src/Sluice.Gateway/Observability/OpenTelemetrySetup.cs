using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Sluice.Gateway.Hosting;
using Sluice.Providers;

namespace Sluice.Gateway.Observability;

/// <summary>
/// OpenTelemetry for the gateway: the sources and meters to collect (<see cref="AddSluiceInstrumentation(TracerProviderBuilder, bool)"/>,
/// also for hosts and tests that bring their own exporter) and the OTLP export when <c>Observability:Otlp:Endpoint</c> is set.
/// </summary>
public static class OpenTelemetrySetup
{
    /// <summary>
    /// Collects the gateway's spans (<c>Sluice.Gateway</c>: one per call), the upstream spans (<c>Sluice.Providers</c>), and
    /// the ASP.NET Core server and HttpClient spans around them (which carry <c>traceparent</c> in and out).
    /// </summary>
    public static TracerProviderBuilder AddSluiceInstrumentation(this TracerProviderBuilder builder, bool aspNetCore = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddSource(CallTelemetry.ActivitySourceName, ProviderTelemetry.ActivitySourceName).AddHttpClientInstrumentation();
        if (aspNetCore)
        {
            builder.AddAspNetCoreInstrumentation();
        }

        return builder;
    }

    /// <summary>Collects the gateway's meter and the runtime's (<c>System.Runtime</c>).</summary>
    public static MeterProviderBuilder AddSluiceInstrumentation(this MeterProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddMeter(GatewayMetrics.MeterName, "System.Runtime");
    }

    /// <summary>Registers OTLP export of traces and metrics when <paramref name="otlp"/> names an endpoint; nothing otherwise.</summary>
    internal static IServiceCollection AddSluiceOpenTelemetry(this IServiceCollection services, OtlpOptions otlp, bool aspNetCore = true)
    {
        if (string.IsNullOrWhiteSpace(otlp.Endpoint) || (!otlp.Traces && !otlp.Metrics))
        {
            return services;
        }

        var endpoint = new Uri(otlp.Endpoint);
        var protocol = otlp.Protocol == "http/protobuf" ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
        var headers = ExporterHeaders(otlp.Headers);
        void Configure(OtlpExporterOptions exporter, string path)
        {
            exporter.Endpoint = protocol == OtlpExportProtocol.HttpProtobuf ? SignalEndpoint(endpoint, path) : endpoint;
            exporter.Protocol = protocol;
            if (headers is not null)
            {
                exporter.Headers = headers;
            }
        }

        var telemetry = services.AddOpenTelemetry().ConfigureResource(r => r.AddService(otlp.ServiceName));
        if (otlp.Traces)
        {
            telemetry.WithTracing(t => t
                .SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(otlp.SampleRatio)))
                .AddSluiceInstrumentation(aspNetCore)
                .AddOtlpExporter(o => Configure(o, "v1/traces")));
        }

        if (otlp.Metrics)
        {
            telemetry.WithMetrics(m => m.AddSluiceInstrumentation().AddOtlpExporter(o => Configure(o, "v1/metrics")));
        }

        return services;
    }

    /// <summary>
    /// The exporter's <c>Headers</c> string (<c>k1=v1,k2=v2</c>, the <c>OTEL_EXPORTER_OTLP_HEADERS</c> format) with every value
    /// percent-encoded, which the exporter decodes: a value may hold commas, equals signs and spaces. Null for none.
    /// </summary>
    internal static string? ExporterHeaders(IReadOnlyDictionary<string, string> headers) =>
        headers.Count == 0 ? null : string.Join(",", headers.Select(h => h.Key + "=" + Uri.EscapeDataString(h.Value)));

    /// <summary>
    /// Where one signal goes with http/protobuf: its path appended to the collector's base address, as
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> does — <c>https://otlp.example.com/otlp</c> sends traces to
    /// <c>/otlp/v1/traces</c>. (Resolving the path against the base instead would replace its last segment and send
    /// hosted collectors' traffic to <c>/v1/traces</c>, a 404.)
    /// </summary>
    internal static Uri SignalEndpoint(Uri endpoint, string path)
    {
        var builder = new UriBuilder(endpoint);
        builder.Path = builder.Path.TrimEnd('/') + "/" + path;
        return builder.Uri;
    }
}
