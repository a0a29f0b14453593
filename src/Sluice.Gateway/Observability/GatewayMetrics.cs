using System.Diagnostics.Metrics;

namespace Sluice.Gateway.Observability;

/// <summary>
/// The gateway's instruments, on one <see cref="Meter"/> (<see cref="MeterName"/>) made by the host's
/// <see cref="IMeterFactory"/>: exported at <c>GET /metrics</c> (<see cref="PrometheusExporter"/>) and, when configured,
/// through OpenTelemetry (OTLP). Each measurement is taken in one place of the call pipeline (<see cref="CallTelemetry"/>),
/// never per endpoint.
/// </summary>
/// <remarks>
/// Labels are bounded: <c>model</c> is the resolved model's configured name (empty for a name that did not resolve),
/// <c>dialect</c> and <c>outcome</c> are fixed sets, <c>status</c> is an HTTP status, error kinds come from
/// <c>ProviderTelemetry.ErrorKind</c>. A <c>team</c> label is added only when <c>Observability:Metrics:TeamLabels</c>
/// is on (one series per team: fine for tens of teams, not for thousands).
/// </remarks>
internal sealed class GatewayMetrics
{
    /// <summary>The meter's name (add it to an OpenTelemetry <c>MeterProvider</c>).</summary>
    public const string MeterName = "Sluice.Gateway";

    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    private static readonly double[] GapBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15];
    private static readonly double[] DurationBuckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];

    public GatewayMetrics(IMeterFactory factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Meter = factory.Create(new MeterOptions(MeterName));
        ActiveStreams = Meter.CreateUpDownCounter<long>("sluice.streams.active", "{stream}", "Answers being relayed now (every entry point and dialect).");
        Requests = Meter.CreateCounter<long>("sluice.requests", "{request}", "Chat calls by resolved model, dialect, status (what the client got: 200 once streaming started) and outcome (completed, failed, abandoned, refused).");
        TimeToFirstToken = Meter.CreateHistogram("sluice.time_to_first_token", "s", "From the call's arrival to its first answer token.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        InterTokenGap = Meter.CreateHistogram("sluice.inter_token_gap", "s", "Time between consecutive deliveries (flushes) of answer tokens to the client.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = GapBuckets });
        Duration = Meter.CreateHistogram("sluice.request.duration", "s", "From the call's arrival to its end.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        Tokens = Meter.CreateCounter<long>("sluice.tokens", "{token}", "Tokens by model and direction (input: prompt, output: completion); the backend's count, else Sluice's estimate.");
        UpstreamErrors = Meter.CreateCounter<long>("sluice.upstream.errors", "{error}", "Failed backend attempts by model and kind (retried attempts included).");
        Retries = Meter.CreateCounter<long>("sluice.retries", "{retry}", "Retries of the same model before the first token.");
        Fallbacks = Meter.CreateCounter<long>("sluice.fallbacks", "{fallback}", "Moves to the next model of a route before the first token.");
        RateLimitRejections = Meter.CreateCounter<long>("sluice.rate_limit.rejections", "{request}", "Calls refused by a rate or concurrency limit (429), by reason.");
        CreditsCharged = Meter.CreateCounter<long>("sluice.credits.charged", "{credit}", "Credits charged to teams (completed jobs).");
        Resumes = Meter.CreateCounter<long>("sluice.stream.resumes", "{request}", "Reads of a kept stream: resume (live or finished) and timed replay.");
        Pings = Meter.CreateCounter<long>("sluice.stream.pings", "{ping}", "Keep-alive frames sent while a backend was silent.");
        SlowClientDrops = Meter.CreateCounter<long>("sluice.slow_client.drops", "{stream}", "Streams dropped because the client stopped reading.");
        AuthFailures = Meter.CreateCounter<long>("sluice.auth.failures", "{request}", "Requests refused before any call began: missing, invalid or unusable key (401/403/503).");
        ConnectionsRefused = Meter.CreateCounter<long>("sluice.connections.refused", "{connection}", "Connections closed as soon as accepted, by reason: per_client (Limits:MaxConnectionsPerClient) or max_connections (Limits:MaxConnections).");
        ProcessMetrics.Register(Meter);
    }

    public Meter Meter { get; }

    public UpDownCounter<long> ActiveStreams { get; }

    public Counter<long> Requests { get; }

    public Histogram<double> TimeToFirstToken { get; }

    public Histogram<double> InterTokenGap { get; }

    public Histogram<double> Duration { get; }

    public Counter<long> Tokens { get; }

    public Counter<long> UpstreamErrors { get; }

    public Counter<long> Retries { get; }

    public Counter<long> Fallbacks { get; }

    public Counter<long> RateLimitRejections { get; }

    public Counter<long> CreditsCharged { get; }

    public Counter<long> Resumes { get; }

    public Counter<long> Pings { get; }

    public Counter<long> SlowClientDrops { get; }

    public Counter<long> AuthFailures { get; }

    public Counter<long> ConnectionsRefused { get; }
}

/// <summary>Process figures in Prometheus' conventional names: resident memory, CPU time, open descriptors, threads.</summary>
internal static class ProcessMetrics
{
    public static void Register(Meter meter)
    {
        meter.CreateObservableGauge("process.resident_memory", () => Environment.WorkingSet, "By", "Resident set size.");
        meter.CreateObservableCounter("process.cpu", () => Environment.CpuUsage.TotalTime.TotalSeconds, "s", "User and system CPU time.");
        meter.CreateObservableGauge("process.open_fds", OpenDescriptors, "{fd}", "Open file descriptors (sockets included); -1 where /proc is missing.");
        meter.CreateObservableGauge("process.threads", Threads, "{thread}", "Operating-system threads of the process.");
        meter.CreateObservableGauge("process.start_time", () => StartTime.Value, "s", "Start time of the process, Unix seconds.");
    }

    private static readonly Lazy<double> StartTime = new(() =>
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return new DateTimeOffset(process.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0;
    });

    /// <summary>Counted from <c>/proc/self/fd</c> (Linux); the scrape pays for it, never a call.</summary>
    internal static long OpenDescriptors()
    {
        try
        {
            return Directory.Exists("/proc/self/fd") ? Directory.EnumerateFileSystemEntries("/proc/self/fd").LongCount() : -1;
        }
        catch (IOException)
        {
            return -1;
        }
        catch (UnauthorizedAccessException)
        {
            return -1;
        }
    }

    /// <summary>From <c>/proc/self/status</c> on Linux, else the process object.</summary>
    internal static long Threads()
    {
        try
        {
            if (File.Exists("/proc/self/status"))
            {
                foreach (var line in File.ReadLines("/proc/self/status"))
                {
                    if (line.StartsWith("Threads:", StringComparison.Ordinal))
                    {
                        return long.Parse(line.AsSpan(8).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                    }
                }
            }

            using var process = System.Diagnostics.Process.GetCurrentProcess();
            return process.Threads.Count;
        }
        catch (IOException)
        {
            return -1;
        }
    }
}
