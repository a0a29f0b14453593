using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// <c>sluice bench overhead --processes</c> as a real process: it starts the mock upstream, the bare proxy and the
/// gateway as its own children, measures, and leaves none of them running — after a run and after Ctrl+C.
/// </summary>
public sealed partial class BenchProcessesTests
{
    // Three .NET processes start one after another: on a loaded 2-core machine that alone can take half a minute.
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Tiny_run_with_auth_measures_all_three_and_stops_its_children()
    {
        var result = await CliProcess.RunAsync(
            ["bench", "overhead", "--processes", "--auth", "--chunks", "4", "-c", "2", "-n", "20", "--rounds", "1", "--warmup", "4", "--json"],
            timeout: Bound);

        // 15 = the budget was missed, which a tiny run on a busy machine may well do; the run itself worked.
        Assert.True(result.ExitCode is 0 or 15, result.ToString());
        using var json = JsonDocument.Parse(result.Stdout);
        var root = json.RootElement;
        Assert.True(root.GetProperty("processes").GetBoolean());
        Assert.True(root.GetProperty("auth").GetBoolean());
        foreach (var target in new[] { "direct", "bare_proxy", "gateway" })
        {
            Assert.True(root.GetProperty(target).GetProperty("StreamsPerSecond").GetDouble() > 0, $"{target}: {result}");
        }

        Assert.Contains("created organization org_bench and team team_bench", result.Stderr, StringComparison.Ordinal);
        var started = StartedPids(result.Stderr);
        Assert.Equal(3, started.Length);
        Assert.Equal(started.Order(), StoppedPids(result.Stderr).Order());
        AssertGone(started);
    }

    [Fact]
    public async Task Ctrl_c_mid_run_exits_130_and_stops_its_children()
    {
        await using var bench = CliProcess.Start(
            ["bench", "overhead", "--processes", "--chunks", "4", "-c", "2", "-n", "10000000", "--rounds", "1", "--warmup", "0"],
            defaultSigInt: true);
        await bench.WaitForOutputAsync((_, stderr) => stderr.Contains("round 1/1: direct", StringComparison.Ordinal), Bound);
        var started = StartedPids(bench.Stderr);
        Assert.Equal(3, started.Length);

        await bench.InterruptAsync();
        var exitCode = await bench.WaitForExitAsync(Bound);

        Assert.Equal(130, exitCode);
        Assert.Contains("cancelled", bench.Stderr, StringComparison.Ordinal);
        Assert.Equal(started.Order(), StoppedPids(bench.Stderr).Order());
        AssertGone(started);
    }

    private static int[] StartedPids(string stderr) =>
        [.. StartedPattern().Matches(stderr).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture))];

    private static int[] StoppedPids(string stderr)
    {
        var match = StoppedPattern().Match(stderr);
        Assert.True(match.Success, $"no 'stopped … child process(es)' line in:\n{stderr}");
        return [.. match.Groups[1].Value.Split(", ").Select(p => int.Parse(p, CultureInfo.InvariantCulture))];
    }

    private static void AssertGone(int[] pids)
    {
        // The bench waited for each child to exit before printing its "stopped" line, so none may be left.
        foreach (var pid in pids)
        {
            Assert.False(Directory.Exists($"/proc/{pid}"), $"child process {pid} is still running");
        }
    }

    [GeneratedRegex(@"^starting [a-z ]+ \(pid (\d+)\)", RegexOptions.Multiline)]
    private static partial Regex StartedPattern();

    [GeneratedRegex(@"stopped \d+ child process\(es\): ([\d, ]+)")]
    private static partial Regex StoppedPattern();
}
