using System.Diagnostics;
using System.Diagnostics.Tracing;
using Microsoft.Diagnostics.NETCore.Client;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// Keeps bench/alloc-stacks.sh working: a trace of the runtime's allocation sampling with stacks (recorded here the way
/// dotnet-trace records it, from a running Sluice process) is read by bench/alloc-stacks, which names the allocating
/// methods.
/// </summary>
public sealed class AllocStacksSmokeTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task The_reader_prints_the_allocating_stacks_of_a_recorded_sluice_process()
    {
        var tool = BenchTools.Built("alloc-stacks", "Sluice.AllocStacks.dll");
        var trace = Path.Combine(Path.GetTempPath(), $"sluice-alloc-{Guid.NewGuid():N}.nettrace");
        var (started, baseAddress) = await BenchTools.StartMockAsync(16);
        await using var mock = started;
        try
        {
            var models = new Uri(baseAddress, "v1/models");
            var ready = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (true)
            {
                try
                {
                    (await Http.GetAsync(models)).Dispose();
                    break;
                }
                catch (HttpRequestException) when (DateTime.UtcNow < ready)
                {
                    await Task.Delay(100);
                }
            }

            // The providers bench/alloc-stacks.sh gives dotnet-trace: allocation sampling, plus JIT and loader for the rundown's method names.
            var client = new DiagnosticsClient(mock.Id);
            using (var session = client.StartEventPipeSession(
                [new EventPipeProvider("Microsoft-Windows-DotNETRuntime", EventLevel.Verbose, 0x80000000018)], requestRundown: true))
            {
                var copy = Task.Run(async () =>
                {
                    await using var file = File.Create(trace);
                    await session.EventStream.CopyToAsync(file);
                });

                // Enough traffic for a few dozen samples (one per ~100 KB allocated).
                var until = Stopwatch.GetTimestamp() + (2 * Stopwatch.Frequency);
                while (Stopwatch.GetTimestamp() < until)
                {
                    using var body = new StringContent("""{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}""", System.Text.Encoding.UTF8, "application/json");
                    (await Http.PostAsync(new Uri(baseAddress, "v1/chat/completions"), body)).Dispose();
                }

                await session.StopAsync(CancellationToken.None);
                await copy.WaitAsync(TimeSpan.FromSeconds(60));
            }

            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in new[] { tool, trace, "", "0", "6" })
            {
                start.ArgumentList.Add(argument);
            }

            using var reader = Process.Start(start)!;
            var output = reader.StandardOutput.ReadToEndAsync();
            var errors = reader.StandardError.ReadToEndAsync();
            Assert.True(reader.WaitForExit(TimeSpan.FromSeconds(120)), "bench/alloc-stacks finished");
            var text = await output;
            Assert.True(reader.ExitCode == 0, $"exit {reader.ExitCode}: {await errors}");

            Assert.StartsWith("estimated bytes ", text, StringComparison.Ordinal);
            Assert.DoesNotContain("no AllocationSampled events", text, StringComparison.Ordinal);

            // Stacks with managed method names (the rundown resolved them), e.g. Kestrel's or System.Text.Json's.
            Assert.Matches(@"(?m)^\s+\d+\.\d\d %\s+[\d,]+\s+System\.", text);
            Assert.Matches(@"(?m)^    [A-Za-z][\w.`+<>|\[\],!]*\.[\w<>|`]+\(", text);
        }
        finally
        {
            File.Delete(trace);
        }
    }
}
