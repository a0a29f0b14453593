using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Sluice.Cli.Bench;

/// <summary>The outcome of one <c>sluice bench</c> run (also its <c>--json</c> output, in snake_case).</summary>
internal sealed record BenchResult
{
    public required string Url { get; init; }

    public required string Model { get; init; }

    public required int Concurrency { get; init; }

    /// <summary>Requests asked for (<c>--requests</c>).</summary>
    public required int Requests { get; init; }

    public required int MaxTokens { get; init; }

    public required int Warmup { get; init; }

    public required int Succeeded { get; init; }

    public required int Failed { get; init; }

    /// <summary>Streams still open when the run ended early; neither successes nor errors.</summary>
    public required int Cut { get; init; }

    /// <summary><c>requests</c> (all done), <c>duration</c> (time bound), <c>cancelled</c> (Ctrl+C) or <c>unreachable</c> (nothing listens).</summary>
    public required string StoppedBy { get; init; }

    /// <summary>Length of the measured phase (warm-up excluded).</summary>
    public required double DurationSeconds { get; init; }

    /// <summary>Successful streams per second.</summary>
    public required double StreamsPerSecond { get; init; }

    /// <summary>Completion tokens of successful streams per second.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Completion tokens of successful streams (from <c>usage</c>, or the chunk count without it).</summary>
    public required long CompletionTokens { get; init; }

    /// <summary>Content chunks of successful streams.</summary>
    public required long Chunks { get; init; }

    /// <summary>Request start to first content delta, successful streams only.</summary>
    public required LatencySummary TtftMs { get; init; }

    /// <summary>Time between consecutive content chunks of a stream.</summary>
    public required LatencySummary GapMs { get; init; }

    /// <summary>Request start to end of stream, successful streams only.</summary>
    public required LatencySummary LatencyMs { get; init; }

    /// <summary>Failures by kind: <c>http_404</c>, <c>error_frame</c>, <c>missing_done</c>, <c>bad_json</c>, <c>connect</c>, <c>transport</c>.</summary>
    public required SortedDictionary<string, int> Errors { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, BenchJsonContext.Default.BenchResult);

    public string ToTable()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine(c, $"sluice bench  {Url}  model {Model}  concurrency {Concurrency}  max_tokens {MaxTokens}  warmup {Warmup}");
        Row(text, "requests", string.Create(c, $"{Succeeded} ok, {Failed} failed, {Cut} cut  (asked {Requests}, stopped by {StoppedBy})"));
        Row(text, "duration", string.Create(c, $"{DurationSeconds:0.00} s"));
        Row(text, "streams/s", string.Create(c, $"{StreamsPerSecond:0.0}"));
        Row(text, "tokens/s", string.Create(c, $"{TokensPerSecond:0}  ({CompletionTokens} tokens, {Chunks} chunks)"));
        Row(text, "TTFT ms", TtftMs.ToText());
        Row(text, "gap ms", GapMs.ToText());
        Row(text, "latency ms", LatencyMs.ToText());
        Row(text, "errors", Errors.Count == 0 ? "none" : string.Join(", ", Errors.Select(e => string.Create(c, $"{e.Key} {e.Value}"))));
        return text.ToString();
    }

    private static void Row(StringBuilder text, string label, string value) =>
        text.Append("  ").Append(label.PadRight(12)).AppendLine(value);
}

/// <summary>Percentiles of a latency, in milliseconds.</summary>
internal sealed record LatencySummary(long Count, double P50, double P95, double P99, double Max)
{
    public static LatencySummary Empty { get; } = new(0, 0, 0, 0, 0);

    /// <summary>Exact nearest-rank percentiles of microsecond values (sorts <paramref name="microseconds"/>).</summary>
    public static LatencySummary FromExact(long[] microseconds)
    {
        ArgumentNullException.ThrowIfNull(microseconds);
        if (microseconds.Length == 0)
        {
            return Empty;
        }

        Array.Sort(microseconds);
        return new LatencySummary(
            microseconds.Length,
            Ms(Rank(microseconds, 50)),
            Ms(Rank(microseconds, 95)),
            Ms(Rank(microseconds, 99)),
            Ms(microseconds[^1]));
    }

    public static LatencySummary FromHistogram(LatencyHistogram histogram)
    {
        ArgumentNullException.ThrowIfNull(histogram);
        return histogram.Count == 0
            ? Empty
            : new LatencySummary(histogram.Count, Ms(histogram.Percentile(50)), Ms(histogram.Percentile(95)), Ms(histogram.Percentile(99)), Ms(histogram.Max));
    }

    public string ToText()
    {
        if (Count == 0)
        {
            return "-";
        }

        var c = CultureInfo.InvariantCulture;
        return string.Create(c, $"p50 {P50,9:0.000}   p95 {P95,9:0.000}   p99 {P99,9:0.000}   max {Max,9:0.000}");
    }

    private static long Rank(long[] sorted, double percent) =>
        sorted[Math.Clamp((int)Math.Ceiling(percent / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static double Ms(long microseconds) => Math.Round(microseconds / 1000.0, 3);
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(BenchResult))]
internal sealed partial class BenchJsonContext : JsonSerializerContext;
