using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// Keeps bench/proxied-streams.sh working: a tiny run (20 streams of 3 chunks) through a real gateway and mock prints
/// the held and whole-run delays and judges them, and a bad option stops it with a message.
/// </summary>
public sealed class ProxiedStreamsSmokeTests
{
    private static readonly string Script = Path.Combine(Fixtures.RepositoryRoot, "bench", "proxied-streams.sh");

    [Fact]
    public async Task A_tiny_run_reports_held_and_whole_run_delays_and_every_target()
    {
        var environment = new Dictionary<string, string> { ["SLUICE_DLL"] = Path.Combine(AppContext.BaseDirectory, "sluice.dll") };
        var run = await CliProcess.RunAsync(
            [Script, "--streams", "20", "--chunks", "3", "--pace-ms", "20", "--ramp", "200", "--quick", "--settle", "0"],
            timeout: TimeSpan.FromMinutes(3), environment: environment, executable: "bash");

        // 0 when every target is met, 1 when one is not (a 2-core test machine rarely meets 5 ms); 2 is the script failing.
        Assert.True(run.ExitCode is 0 or 1, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains("20 ok, 0 failed", run.Stdout, StringComparison.Ordinal);
        var held = System.Text.RegularExpressions.Regex.Match(run.Stdout, @"all streams held \(ms, (\d+) chunks from 0 s after the last stream opened\): p50 [\d.]+, p90 [\d.]+, p99 [\d.]+");
        Assert.True(held.Success, run.Stdout);
        Assert.InRange(int.Parse(held.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 1, 60);
        Assert.Contains("whole run with the ramp (ms, 60 chunks)", run.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"(met|NOT met): added delay per chunk while held p99", run.Stdout);
        Assert.Matches(@"(met|NOT met): added delay per chunk over the whole run, the ramp of 200 new streams/s included", run.Stdout);
        // --quick samples only 5 s after the streams, when idle upstream connections are still pooled: not a verdict.
        Assert.Contains("not judged (--quick): fds, threads and RSS back near baseline 90 s after", run.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("met: fds and threads", run.Stdout, StringComparison.Ordinal);

        var bad = await CliProcess.RunAsync([Script, "--settle", "soon"], environment: environment, executable: "bash");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--settle takes whole seconds", bad.Stderr, StringComparison.Ordinal);
    }
}
