using System.Text.Json;
using Sluice.Cli.Bench;
using Sluice.Providers;

namespace Sluice.Cli.Tests.Bench;

public sealed class BenchGatewayTests
{
    [Fact]
    public async Task Bench_against_gateway_sim_fast_succeeds_with_exact_token_totals()
    {
        await using var gateway = await BenchHarness.StartGatewayAsync();
        const int requests = 40;
        const int maxTokens = 16;

        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = gateway.BaseAddress,
            Model = "sim-fast",
            Concurrency = 4,
            Requests = requests,
            MaxTokens = maxTokens,
            Warmup = 4,
        });

        Assert.Equal(requests, result.Succeeded);
        Assert.Equal(0, result.Failed);
        Assert.Equal(0, result.Cut);
        Assert.Empty(result.Errors);
        Assert.Equal("requests", result.StoppedBy);
        Assert.Equal(requests * maxTokens, result.CompletionTokens);
        Assert.Equal(requests, result.TtftMs.Count);
        Assert.Equal(requests, result.LatencyMs.Count);
        BenchHarness.AssertOrdered(result.TtftMs);
        BenchHarness.AssertOrdered(result.GapMs);
        BenchHarness.AssertOrdered(result.LatencyMs);
        Assert.True(result.TtftMs.P99 <= result.LatencyMs.Max, "TTFT cannot exceed the whole stream");
        Assert.True(result.StreamsPerSecond > 0);
        Assert.True(result.TokensPerSecond >= result.StreamsPerSecond, "each stream carries many tokens");
    }

    [Fact]
    public async Task Json_output_parses_and_carries_the_numbers()
    {
        await using var gateway = await BenchHarness.StartGatewayAsync();
        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = gateway.BaseAddress,
            Concurrency = 2,
            Requests = 10,
            MaxTokens = 8,
        });

        using var json = JsonDocument.Parse(result.ToJson());
        var root = json.RootElement;
        Assert.Equal(10, root.GetProperty("succeeded").GetInt32());
        Assert.Equal(0, root.GetProperty("failed").GetInt32());
        Assert.Equal(80, root.GetProperty("completion_tokens").GetInt64());
        Assert.Equal("requests", root.GetProperty("stopped_by").GetString());
        var ttft = root.GetProperty("ttft_ms");
        Assert.True(ttft.GetProperty("p50").GetDouble() <= ttft.GetProperty("p99").GetDouble());
        Assert.Equal(JsonValueKind.Number, root.GetProperty("gap_ms").GetProperty("p99").ValueKind);
        Assert.Equal(JsonValueKind.Number, root.GetProperty("streams_per_second").ValueKind);
        Assert.Equal(JsonValueKind.Object, root.GetProperty("errors").ValueKind);
        Assert.EndsWith("/v1/chat/completions", root.GetProperty("url").GetString(), StringComparison.Ordinal);

        var table = result.ToTable();
        Assert.Contains("TTFT ms", table, StringComparison.Ordinal);
        Assert.Contains("10 ok, 0 failed", table, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_model_is_counted_as_http_404_errors_not_a_crash()
    {
        await using var gateway = await BenchHarness.StartGatewayAsync();
        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = gateway.BaseAddress,
            Model = "no-such-model",
            Concurrency = 3,
            Requests = 12,
        });

        Assert.Equal(0, result.Succeeded);
        Assert.Equal(12, result.Failed);
        Assert.Equal(12, Assert.Single(result.Errors, e => e.Key == "http_404").Value);
        Assert.Single(result.Errors);
        Assert.Equal(0, result.TtftMs.Count);
        Assert.Equal("requests", result.StoppedBy);
        Assert.Contains("http_404 12", result.ToTable(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mid_stream_failure_is_counted_as_error_frame()
    {
        await using var gateway = await BenchHarness.StartGatewayAsync(new ModelOptions { Name = "sim-broken", Provider = "sim", FailAfterTokens = 3 });
        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = gateway.BaseAddress,
            Model = "sim-broken",
            Concurrency = 2,
            Requests = 6,
            MaxTokens = 10,
        });

        Assert.Equal(0, result.Succeeded);
        Assert.Equal(6, result.Failed);
        Assert.Equal(6, result.Errors["error_frame"]);
    }

    [Fact]
    public async Task Status_failure_before_the_stream_is_counted_by_status()
    {
        await using var gateway = await BenchHarness.StartGatewayAsync(new ModelOptions { Name = "sim-down", Provider = "sim", FailStatus = 503 });
        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = gateway.BaseAddress,
            Model = "sim-down",
            Concurrency = 2,
            Requests = 5,
        });

        Assert.Equal(5, result.Errors["http_503"]);
        Assert.Equal(5, result.Failed);
    }
}
