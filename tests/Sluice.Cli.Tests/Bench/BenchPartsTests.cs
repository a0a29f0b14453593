using System.Text;
using System.Text.Json;
using Sluice.Cli.Bench;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

public sealed class BenchPartsTests
{
    [Fact]
    public void Scanner_reads_a_recorded_OpenAI_stream()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed(Fixtures.Read("openai/text-a.sse"), events);
        parser.Complete(events);

        var data = events.Where(e => !e.IsDone).Select(e => ChunkScanner.Scan(e.Data.Span)).ToList();
        var expectedContent = events.Where(e => !e.IsDone).Count(e =>
        {
            using var doc = JsonDocument.Parse(e.Data);
            var choices = doc.RootElement.GetProperty("choices");
            return choices.GetArrayLength() > 0
                && choices[0].GetProperty("delta").TryGetProperty("content", out var c)
                && c.GetString()!.Length > 0;
        });

        Assert.False(data[0].HasContent); // the role chunk has content ""
        Assert.Equal(expectedContent, data.Count(d => d.HasContent));
        Assert.Equal(14, data[^1].CompletionTokens);
        Assert.All(data, d => Assert.False(d.IsError));
    }

    [Fact]
    public void Scanner_counts_tool_call_deltas_as_content()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed(Fixtures.Read("openai/tool-call-a.sse"), events);
        parser.Complete(events);

        var data = events.Where(e => !e.IsDone).Select(e => ChunkScanner.Scan(e.Data.Span)).ToList();
        Assert.True(data.Count(d => d.HasContent) >= 2);
    }

    [Theory]
    [InlineData("""{"error":{"message":"boom","type":"server_error"}}""", true)]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}],"error":null}""", false)]
    public void Scanner_recognises_error_frames(string json, bool isError)
    {
        var chunk = ChunkScanner.Scan(Encoding.UTF8.GetBytes(json));
        Assert.Equal(isError, chunk.IsError);
    }

    [Fact]
    public void Scanner_rejects_data_that_is_not_an_object() =>
        Assert.ThrowsAny<JsonException>(() => ChunkScanner.Scan("[1,2]"u8));

    [Fact]
    public void Histogram_percentiles_stay_within_one_percent_of_exact()
    {
        var random = new Random(7);
        var histogram = new LatencyHistogram();
        var values = new long[10_000];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (long)Math.Exp(random.NextDouble() * 16); // 1 µs … ~9 s
            histogram.Record(values[i]);
        }

        Array.Sort(values);
        foreach (var p in new[] { 50.0, 95.0, 99.0, 99.9 })
        {
            var exact = values[(int)Math.Ceiling(p / 100 * values.Length) - 1];
            var approx = histogram.Percentile(p);
            Assert.InRange(approx, exact, (long)(exact * 1.01) + 1);
        }

        Assert.Equal(values[^1], histogram.Max);
        Assert.Equal(values.Length, histogram.Count);
    }

    [Fact]
    public void Histogram_buckets_are_contiguous_and_cover_their_values()
    {
        for (long v = 0; v < 1_000_000; v += 7)
        {
            var index = LatencyHistogram.IndexOf(v);
            Assert.True(LatencyHistogram.UpperEdge(index) >= v);
            Assert.True(index == 0 || LatencyHistogram.UpperEdge(index - 1) < v);
        }
    }

    [Fact]
    public void Histogram_merge_adds_counts()
    {
        var a = new LatencyHistogram();
        var b = new LatencyHistogram();
        a.Record(10);
        b.Record(1_000);
        b.Record(2_000);
        a.Add(b);
        Assert.Equal(3, a.Count);
        Assert.Equal(2_000, a.Max);
        Assert.Equal(10, a.Percentile(30));
    }

    [Theory]
    [InlineData("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/chat/completions")]
    [InlineData("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/chat/completions")]
    [InlineData("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/chat/completions")]
    [InlineData("https://example.com/proxy/", "https://example.com/proxy/v1/chat/completions")]
    public void Endpoint_appends_the_chat_path(string baseUrl, string expected) =>
        Assert.Equal(expected, new BenchSettings { BaseUrl = new Uri(baseUrl) }.Endpoint.ToString());

    [Fact]
    public void Invalid_settings_are_explained()
    {
        Assert.Contains("--concurrency", new BenchSettings { Concurrency = 0 }.Validate(), StringComparison.Ordinal);
        Assert.Contains("--requests", new BenchSettings { Requests = 0 }.Validate(), StringComparison.Ordinal);
        Assert.Contains("--duration", new BenchSettings { Duration = TimeSpan.Zero }.Validate(), StringComparison.Ordinal);
        Assert.Null(new BenchSettings().Validate());
    }

    [Fact]
    public void Exact_percentiles_use_nearest_rank()
    {
        var values = Enumerable.Range(1, 100).Select(i => (long)i * 1000).Reverse().ToArray();
        var summary = LatencySummary.FromExact(values);
        Assert.Equal(50, summary.P50);
        Assert.Equal(95, summary.P95);
        Assert.Equal(99, summary.P99);
        Assert.Equal(100, summary.Max);
    }
}
