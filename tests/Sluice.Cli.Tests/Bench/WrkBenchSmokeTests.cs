using System.Globalization;
using System.Text.RegularExpressions;
using Npgsql;
using Sluice.Cli.Tests.ScaleOut;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// Keeps the benchmarks behind BENCHMARKS.md's figures working — <c>bench/overhead-wrk.sh</c> (throughput ratios, time
/// to first token), <c>bench/cpu-per-stream.sh</c> (CPU per proxied stream), <c>bench/soak.sh</c> (100,000 streams on
/// SQLite and PostgreSQL), <c>bench/cold-start.sh</c> (a gateway's first seconds), <c>bench/gc-memory.sh</c> (resident
/// memory per GC configuration) and <c>bench/cluster.sh --quick</c> (three instances behind nginx): each runs briefly
/// through real gateways, prints every figure it reports, and stops with a message on bad input.
/// Figures are not judged (a shared test machine's numbers mean nothing); that the script measured is.
/// </summary>
public sealed class WrkBenchSmokeTests
{
    private static readonly string Bench = Path.Combine(Fixtures.RepositoryRoot, "bench");
    private static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "sluice.dll");
    private static readonly Dictionary<string, string> Environment = new() { ["SLUICE_DLL"] = Dll };

    [Fact]
    public async Task Overhead_wrk_measures_direct_bare_proxy_and_gateway_with_a_virtual_key()
    {
        var run = await CliProcess.RunAsync(
            [Path.Combine(Bench, "overhead-wrk.sh"), "--auth", "--duration", "1", "--rounds", "1", "--warmup", "1", "--requests", "20", "--chunks", "4"],
            timeout: TimeSpan.FromMinutes(3), environment: Environment, executable: "bash");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains("gateway with a virtual key (auth + ledger)", run.Stdout, StringComparison.Ordinal);
        foreach (var target in new[] { "direct", "bare-proxy", "gateway" })
        {
            // One round: streams/s, their mean, the share of direct, TTFT p50/p99 and whole-stream p99, all measured.
            var row = Regex.Match(run.Stdout, $@"^{target} +(\d+) +(\d+) +([\d.]+)% +([\d.]+) +([\d.]+) +([\d.]+)$", RegexOptions.Multiline);
            Assert.True(row.Success, $"no row for {target}:\n{run.Stdout}");
            Assert.True(int.Parse(row.Groups[1].Value, CultureInfo.InvariantCulture) > 0, row.Value);
            Assert.True(double.Parse(row.Groups[4].Value, CultureInfo.InvariantCulture) > 0, row.Value);
        }

        Assert.Matches(@"gateway / bare proxy [\d.]+% \(budget >= 85 %\)", run.Stdout);
        Assert.Matches(@"CPU per stream in the target's own process .*gateway \d+ µs", run.Stdout);
        Assert.Matches(@"context switches per stream in the target's own process .*gateway [\d.]+ / [\d.]+", run.Stdout);
        Assert.Matches(@"added time to first token at C=1 .*p50 bare proxy -?[\d.]+, gateway -?[\d.]+", run.Stdout);

        await AssertRefusedAsync("overhead-wrk.sh", ["--upstream", "python"], "--upstream must be sluice or node");
    }

    [Fact]
    public async Task Cpu_per_stream_prints_cpu_allocations_and_context_switches_per_stream()
    {
        var run = await CliProcess.RunAsync(
            [Path.Combine(Bench, "cpu-per-stream.sh"), Dll],
            timeout: TimeSpan.FromMinutes(3),
            environment: new Dictionary<string, string> { ["WARMUP"] = "1", ["MEASURE"] = "2", ["CONNECTIONS"] = "4" },
            executable: "bash");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        var line = Regex.Match(run.Stdout, @"streams/s ([\d.]+) +CPU µs/stream ([\d.]+)");
        Assert.True(line.Success, run.Stdout);
        Assert.True(double.Parse(line.Groups[1].Value, CultureInfo.InvariantCulture) > 0, line.Value);
        Assert.True(double.Parse(line.Groups[2].Value, CultureInfo.InvariantCulture) > 0, line.Value);
        Assert.Matches(@"allocated B/stream [\d,]+ +GCs per 1,000 streams gen0", run.Stdout);
        Assert.Matches(@"thread-pool work items per stream [\d.]+", run.Stdout);
        Assert.Contains("context switches per stream", run.Stdout, StringComparison.Ordinal);

        // Not a sluice build: a message and the gateway's output, not figures from failed calls.
        var bad = await CliProcess.RunAsync(
            [Path.Combine(Bench, "cpu-per-stream.sh"), Path.Combine(Fixtures.RepositoryRoot, "README.md")],
            timeout: TimeSpan.FromMinutes(2),
            environment: new Dictionary<string, string> { ["WARMUP"] = "1", ["MEASURE"] = "1" },
            executable: "bash");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("cpu-per-stream.sh: the gateway did not answer", bad.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("CPU µs/stream", bad.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Soak_streams_in_rounds_and_checks_the_ledger_memory_fds_and_threads(string store)
    {
        var run = await CliProcess.RunAsync(
            [Path.Combine(Bench, "soak.sh"), "--store", store, "--streams", "200", "--every", "100", "--warmup", "100", "--chunks", "4", "--concurrency", "8"],
            timeout: TimeSpan.FromMinutes(4), environment: Environment, executable: "bash");

        // 0 when every target is met, 1 when one is not (memory judged over 200 streams is noise); 2 is a set-up error.
        Assert.True(run.ExitCode is 0 or 1, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Matches(@"soak: 100 streams \(\d+ s\): round 1 100 ok, 0 failed, 0 cut", run.Stdout);
        Assert.Matches(@"soak: 200 streams \(\d+ s\): round 2 100 ok, 0 failed, 0 cut", run.Stdout);
        Assert.Contains($"soak result ({store}, 200 streams", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("errors 0; ledger rows 200 for 200 calls", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("met: the ledger holds exactly 200 calls", run.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"(met|NOT met): RSS", run.Stdout);
        Assert.Matches(@"met: no growth in fds|NOT met: fds grew", run.Stdout);

        if (store == "postgres" && System.Environment.GetEnvironmentVariable("SLUICE_TEST_POSTGRES") is { Length: > 0 } admin)
        {
            // The run had a database of its own on the server it was given, and dropped it.
            var database = Regex.Match(run.Stdout, @"Store: postgresql://[^/]+/(sluice_soak_\w+)");
            Assert.True(database.Success, run.Stdout);
            await using var connection = new NpgsqlConnection(admin);
            await connection.OpenAsync();
            await using var exists = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname = @name", connection);
            exists.Parameters.AddWithValue("name", database.Groups[1].Value);
            Assert.Equal(0L, (long)(await exists.ExecuteScalarAsync())!);
        }

        await AssertRefusedAsync("soak.sh", ["--store", "mysql"], "--store is sqlite or postgres");
    }

    [Fact]
    public async Task Cold_start_times_health_the_first_answer_and_the_first_seconds_of_load()
    {
        var run = await CliProcess.RunAsync(
            [Path.Combine(Bench, "cold-start.sh"), "--rounds", "1", "--load-seconds", "1", "--build", $"a={Dll}", "--build", $"b={Dll}"],
            timeout: TimeSpan.FromMinutes(3), executable: "bash");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        foreach (var build in new[] { "a", "b" })
        {
            var line = Regex.Match(run.Stdout, $@"cold-start: {build} +round 1 +health +(\d+) ms +first answer TTFB +([\d.]+) ms +first 1s of load: +([\d.]+) streams/s +p50 +([\d.]+) ms +p99 +([\d.]+) ms");
            Assert.True(line.Success, $"no round for {build}:\n{run.Stdout}");
            Assert.True(int.Parse(line.Groups[1].Value, CultureInfo.InvariantCulture) > 0, line.Value);
            Assert.True(double.Parse(line.Groups[3].Value, CultureInfo.InvariantCulture) > 0, line.Value);
            Assert.Matches($@"(?m)^{build} +\d+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+$", run.Stdout);
        }

        await AssertRefusedAsync("cold-start.sh", ["--build", "x=/nonexistent/sluice.dll"], "--build x: '/nonexistent/sluice.dll' not found");
    }

    [Fact]
    public async Task Gc_memory_reports_throughput_and_resident_memory_per_configuration()
    {
        var run = await CliProcess.RunAsync(
            [Path.Combine(Bench, "gc-memory.sh"), "shipped"],
            timeout: TimeSpan.FromMinutes(3),
            environment: new Dictionary<string, string>
            {
                ["SLUICE_DLL"] = Dll, ["PORT"] = NginxProcess.FreePort().ToString(CultureInfo.InvariantCulture), ["ROUNDS"] = "1", ["STREAMS"] = "10",
                ["CONCURRENCY"] = "10", ["IDLE"] = "1", ["IDLE_END"] = "1", ["THROUGHPUT"] = "200",
            },
            executable: "bash");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Matches(@"shipped: [\d.]+ streams/s \(sim-fast, C=32\)", run.Stdout);
        Assert.Matches(@"shipped round 1: RSS \d+ MB \(managed heap \d+ MB\) after 10 streams at C=10, [\d.]+ streams/s", run.Stdout);
        Assert.Matches(@"(?m)^\| shipped \| [\d.]+ \| \d+ \| \d+ \| \d+ \| \d+ \|$", run.Stdout);

        await AssertRefusedAsync("gc-memory.sh", ["nosuch"], "no such configuration: nosuch");
    }

    [Fact]
    public async Task Cluster_quick_runs_three_instances_behind_nginx_on_one_postgres()
    {
        var run = await CliProcess.RunAsync(
            [Path.Combine(Bench, "cluster.sh"), "--quick", "--no-build"],
            timeout: TimeSpan.FromMinutes(5), environment: Environment, executable: "bash");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains("(--quick: smoke check, not a measurement)", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("credits: 100 jobs completed twice each at once", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("charged 100, balance 100 → 0 (exact)", run.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"\| 3 instances via nginx \| 1 \| 2000 \|", run.Stdout);
        Assert.Matches(@"\| 1 instance direct \| 1 \| 2000 \|", run.Stdout);
        Assert.Contains("Result: bench cluster passed; every throughput stream succeeded.", run.Stdout, StringComparison.Ordinal);
    }

    // A bench script given bad input stops at once with exit code 2 and says what is wrong.
    private static async Task AssertRefusedAsync(string script, string[] args, string message)
    {
        var bad = await CliProcess.RunAsync([Path.Combine(Bench, script), .. args], environment: Environment, executable: "bash");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains(message, bad.Stderr, StringComparison.Ordinal);
    }
}
