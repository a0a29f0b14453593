namespace Sluice.Gateway.Hosting;

/// <summary>Metrics, traces and the access log (<c>Observability</c> in <c>sluice.json</c>).</summary>
public sealed class ObservabilityOptions
{
    /// <summary><c>GET /metrics</c> in the Prometheus text format.</summary>
    public MetricsOptions Metrics { get; set; } = new();

    /// <summary>One log line per call.</summary>
    public AccessLogOptions AccessLog { get; set; } = new();

    /// <summary>OpenTelemetry export (traces and metrics over OTLP).</summary>
    public OtlpOptions Otlp { get; set; } = new();

    /// <summary>
    /// <c>simple</c> (default): one human-readable line per log entry; <c>json</c>: one JSON object per line, with every
    /// field of structured entries (the access log's included) as its own property — for log shippers.
    /// </summary>
    public string LogFormat { get; set; } = "simple";
}

/// <summary>The Prometheus endpoint.</summary>
public sealed class MetricsOptions
{
    /// <summary>Serve <c>GET /metrics</c> (default true).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// A token for scrapers (<c>Authorization: Bearer TOKEN</c>), so Prometheus does not need the master key. The master
    /// key is always accepted; without a master key and without a token (open local mode) the endpoint is open, like
    /// every other endpoint then. Team keys are never accepted: metrics span every team. <c>SLUICE_Observability__Metrics__ScrapeToken</c>.
    /// </summary>
    public string? ScrapeToken { get; set; }

    /// <summary>Add a <c>team</c> label to requests, tokens, rate-limit rejections and credits (one series per team).</summary>
    public bool TeamLabels { get; set; }

    /// <summary>Label sets kept per metric; more are counted in one series labelled <c>_overflow</c>.</summary>
    public int MaxSeriesPerMetric { get; set; } = 2_000;
}

/// <summary>The access log: category <c>Sluice.AccessLog</c>, level Information.</summary>
public sealed class AccessLogOptions
{
    /// <summary>Write one line per call (default true).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Debugging only: add the last user message (up to 1,000 characters) to each line. Off by default: prompts are
    /// the tenants' data. Keys are never logged, only key ids.
    /// </summary>
    public bool IncludePrompts { get; set; }
}

/// <summary>OTLP export; off unless <see cref="Endpoint"/> is set.</summary>
public sealed class OtlpOptions
{
    /// <summary>The collector, e.g. <c>http://127.0.0.1:4317</c> (gRPC) or <c>http://127.0.0.1:4318</c> (with <see cref="Protocol"/> <c>http/protobuf</c>).</summary>
    public string? Endpoint { get; set; }

    /// <summary><c>grpc</c> (default) or <c>http/protobuf</c>.</summary>
    public string Protocol { get; set; } = "grpc";

    /// <summary>
    /// Headers sent with every export, e.g. <c>{"Authorization": "Basic …"}</c> or <c>{"x-honeycomb-team": "…"}</c> for a
    /// hosted collector. Values are sent as given (commas and spaces included).
    /// </summary>
    public Dictionary<string, string> Headers { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Export traces (a span per call, one per upstream request, ASP.NET Core and HttpClient spans).</summary>
    public bool Traces { get; set; } = true;

    /// <summary>Export the gateway's and the runtime's metrics.</summary>
    public bool Metrics { get; set; } = true;

    /// <summary>The <c>service.name</c> resource attribute.</summary>
    public string ServiceName { get; set; } = "sluice";

    /// <summary>Fraction of calls traced, 0–1 (parent-based: a caller's sampled <c>traceparent</c> is always followed).</summary>
    public double SampleRatio { get; set; } = 1.0;
}
