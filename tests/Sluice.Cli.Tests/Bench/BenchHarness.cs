using Sluice.Cli.Bench;
using Sluice.Gateway.Hosting;
using Sluice.Providers;

namespace Sluice.Cli.Tests.Bench;

/// <summary>Starts in-process servers on loopback port 0 and runs the bench against them, bounded in time.</summary>
internal static class BenchHarness
{
    /// <summary>Every run in these tests is small; a hung run fails the test instead of hanging it.</summary>
    public static readonly TimeSpan TestBound = TimeSpan.FromSeconds(60);

    public static Task<RunningGateway> StartGatewayAsync(params ModelOptions[] models) =>
        SluiceGateway.StartAsync(new GatewayOptions { Port = 0, Models = [.. models] }, configureLogging: _ => { });

    public static Task<MockUpstream> StartMockAsync(int chunks, int chunkDelayMs = 0, int firstDelayMs = 0, string chunkText = " hi") =>
        MockUpstream.StartAsync(new MockUpstreamOptions
        {
            Port = 0,
            Chunks = chunks,
            ChunkDelayMs = chunkDelayMs,
            FirstDelayMs = firstDelayMs,
            ChunkText = chunkText,
        });

    public static async Task<BenchResult> RunAsync(BenchSettings settings)
    {
        using var bound = new CancellationTokenSource(TestBound);
        return await BenchRunner.RunAsync(settings, progress: null, progressInPlace: false, bound.Token).WaitAsync(TestBound);
    }

    public static void AssertOrdered(LatencySummary summary)
    {
        Assert.True(summary.P50 <= summary.P95, $"p50 {summary.P50} > p95 {summary.P95}");
        Assert.True(summary.P95 <= summary.P99, $"p95 {summary.P95} > p99 {summary.P99}");
        Assert.True(summary.P99 <= summary.Max, $"p99 {summary.P99} > max {summary.Max}");
        Assert.True(summary.P50 >= 0);
    }
}
