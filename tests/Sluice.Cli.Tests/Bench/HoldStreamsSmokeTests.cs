using System.Globalization;
using System.Text.Json;
using Sluice.Cli.Tests.ScaleOut;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// <c>bench/hold-streams.c</c>, the many-streams client of <c>bench/proxied-streams.sh</c>: built with cc, it holds
/// streams from <c>sluice mock-upstream --timestamp-chunks</c> to their end and reports every stamped chunk's delay and
/// the gaps between them; a refused connection is counted by kind, not lost.
/// </summary>
public sealed class HoldStreamsSmokeTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-hold-streams-");

    [Fact]
    public async Task Holds_streams_to_their_end_and_times_every_stamped_chunk()
    {
        var client = await BenchTools.BuildCAsync("hold-streams.c", _root.FullName);

        var port = NginxProcess.FreePort().ToString(CultureInfo.InvariantCulture);
        await using var mock = CliProcess.Start(
            ["mock-upstream", "--host", "127.0.0.1", "--port", port, "--chunks", "3", "--chunk-delay-ms", "20", "--timestamp-chunks", "--model", "mock"]);
        await BenchTools.WaitUntilAnswersAsync(new Uri($"http://127.0.0.1:{port}/v1/models"), mock);

        var run = await CliProcess.RunAsync(["--url", $"http://127.0.0.1:{port}", "--streams", "20", "--ramp", "200", "--ramp-step-ms", "50", "--max-tokens", "3", "--settle-ms", "0"], executable: client);
        Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
        using (var result = JsonDocument.Parse(run.Stdout))
        {
            var r = result.RootElement;
            Assert.Equal((20, 0, 60), (r.GetProperty("ok").GetInt32(), r.GetProperty("failed").GetInt32(), r.GetProperty("chunks").GetInt32()));
            var delay = r.GetProperty("added_delay_ms");
            Assert.Equal(60, delay.GetProperty("count").GetInt32());
            Assert.InRange(delay.GetProperty("p50").GetDouble(), 0, 1_000);
            Assert.True(delay.GetProperty("p50").GetDouble() <= delay.GetProperty("max").GetDouble(), run.Stdout);

            // Three chunks 20 ms apart: two gaps per stream, each about the pacing.
            var gap = r.GetProperty("gap_ms");
            Assert.Equal(40, gap.GetProperty("count").GetInt32());
            Assert.InRange(gap.GetProperty("p50").GetDouble(), 15, 1_000);
            Assert.Equal(20, r.GetProperty("ttfb_ms").GetProperty("count").GetInt32());

            // Held: the chunks received after the last stream opened (--ramp-step-ms 50: two batches of 10, 50 ms apart: at least the
            // second batch's 30 chunks, never more than all).
            Assert.InRange(r.GetProperty("held_delay_ms").GetProperty("count").GetInt32(), 30, 60);
            // And the gaps that end after it: at least the second batch's two per stream, never more than all 40.
            Assert.InRange(r.GetProperty("held_gap_ms").GetProperty("count").GetInt32(), 20, 40);
        }

        // The default ramp opens one stream every 5 ms (1 ms steps at 200/s) instead of ten every 50 ms: the last opens
        // ~95 ms after the first, so only the later streams' last chunks come after it — fewer than the 30 held above.
        // Each held chunk is also written to HOLD_STREAMS_DUMP as "receive-ms delay-ms".
        var dump = Path.Combine(_root.FullName, "held.txt");
        var spread = await CliProcess.RunAsync(
            ["--url", $"http://127.0.0.1:{port}", "--streams", "20", "--ramp", "200", "--max-tokens", "3", "--settle-ms", "0"],
            executable: client, environment: new Dictionary<string, string> { ["HOLD_STREAMS_DUMP"] = dump });
        Assert.True(spread.ExitCode == 0, spread.Stdout + spread.Stderr);
        using (var result = JsonDocument.Parse(spread.Stdout))
        {
            var held = result.RootElement.GetProperty("held_delay_ms").GetProperty("count").GetInt32();
            Assert.InRange(held, 1, 29);
            var lines = await File.ReadAllLinesAsync(dump);
            Assert.Equal(held, lines.Length);
            Assert.All(lines, line => Assert.Matches(@"^\d+\.\d{3} -?\d+\.\d{3}$", line));
        }

        // A settle time longer than the run: no chunk counts as held.
        var unsettled = await CliProcess.RunAsync(
            ["--url", $"http://127.0.0.1:{port}", "--streams", "5", "--ramp", "100", "--max-tokens", "3", "--settle-ms", "60000"], executable: client);
        Assert.True(unsettled.ExitCode == 0, unsettled.Stdout + unsettled.Stderr);
        using (var result = JsonDocument.Parse(unsettled.Stdout))
        {
            Assert.Equal(15, result.RootElement.GetProperty("added_delay_ms").GetProperty("count").GetInt32());
            Assert.Equal(JsonValueKind.Null, result.RootElement.GetProperty("held_delay_ms").ValueKind);
        }

        // Unstamped (a model without stamps): every non-empty content chunk counts for the gaps, no delay is computed.
        var unstamped = await CliProcess.RunAsync(
            ["--url", $"http://127.0.0.1:{port}", "--streams", "5", "--ramp", "100", "--max-tokens", "3", "--unstamped", "1"], executable: client);
        Assert.True(unstamped.ExitCode == 0, unstamped.Stdout + unstamped.Stderr);
        using (var result = JsonDocument.Parse(unstamped.Stdout))
        {
            var r = result.RootElement;
            Assert.Equal((5, 15), (r.GetProperty("ok").GetInt32(), r.GetProperty("chunks").GetInt32()));
            Assert.Equal(10, r.GetProperty("gap_ms").GetProperty("count").GetInt32());
            Assert.Equal(JsonValueKind.Null, r.GetProperty("added_delay_ms").ValueKind);
        }

        // Nothing listens: every stream fails as a refused connection.
        var refused = await CliProcess.RunAsync(
            ["--url", $"http://127.0.0.1:{NginxProcess.FreePort()}", "--streams", "5", "--ramp", "100", "--max-tokens", "3"], executable: client);
        Assert.Equal(0, refused.ExitCode);
        using (var result = JsonDocument.Parse(refused.Stdout))
        {
            Assert.Equal(0, result.RootElement.GetProperty("ok").GetInt32());
            Assert.Equal(5, result.RootElement.GetProperty("errors").GetProperty("connect_ECONNREFUSED").GetInt32());
        }
    }

    public void Dispose() => _root.Delete(recursive: true);
}
