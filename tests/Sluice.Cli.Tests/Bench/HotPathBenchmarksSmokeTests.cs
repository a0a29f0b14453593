using System.Text.RegularExpressions;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// Keeps bench/Sluice.Benchmarks (BenchmarkDotNet micro-benchmarks of the hot paths: SSE writing and reading, request
/// parsing) working: every benchmark runs once in process (<c>--job Dry --inProcess</c>) and reports a mean and its
/// allocations. Nothing is judged on the figures.
/// </summary>
public sealed class HotPathBenchmarksSmokeTests : IDisposable
{
    private readonly DirectoryInfo _artifacts = Directory.CreateTempSubdirectory("sluice-bdn-");

    public void Dispose() => _artifacts.Delete(recursive: true);

    [Fact]
    public async Task Every_hot_path_benchmark_runs_once_and_reports_time_and_allocations()
    {
        var run = await CliProcess.RunAsync(
            [BenchTools.Built("Sluice.Benchmarks", "Sluice.Benchmarks.dll"), "--filter", "*", "--job", "Dry", "--inProcess", "--artifacts", _artifacts.FullName],
            timeout: TimeSpan.FromMinutes(3), executable: "dotnet");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains("executed benchmarks: 4", run.Stdout, StringComparison.Ordinal);
        foreach (var method in new[] { "WriteTextChunk", "ParseSseStream", "ParseRequest", "ParseLargeRequest" })
        {
            Assert.Matches(new Regex($@"\| {method} +\| +[\d,.]+ (ns|us|μs|ms) \|"), run.Stdout);
        }
    }
}
