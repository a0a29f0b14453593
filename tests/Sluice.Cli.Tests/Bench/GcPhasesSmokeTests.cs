using System.Text;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// Keeps bench/gc-phases.sh working: with SLUICE_GC_OUT set, the startup hook (bench/alloc-hook) reads the runtime's GC
/// events in the process named by SLUICE_ALLOC_COMMAND and writes what its blocking collections' pauses were made of,
/// generation by generation.
/// </summary>
public sealed class GcPhasesSmokeTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task The_startup_hook_writes_pause_phases_by_generation_and_marking_by_root_kind()
    {
        var hook = BenchTools.Built("alloc-hook", "Sluice.AllocHook.dll");
        var output = Path.Combine(Path.GetTempPath(), $"sluice-gc-{Guid.NewGuid():N}.txt");
        var (started, baseAddress) = await BenchTools.StartMockAsync(64, new Dictionary<string, string>
        {
            ["DOTNET_STARTUP_HOOKS"] = hook,
            ["SLUICE_GC_OUT"] = output,
            ["SLUICE_ALLOC_COMMAND"] = "mock-upstream",
            ["DOTNET_GCgen0size"] = "100000", // 1 MiB (hex): collections come after a few hundred streams
        });
        await using var mock = started;
        try
        {
            var text = string.Empty;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            var body = """{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}""";
            while (DateTime.UtcNow < deadline && !text.Contains("marked from", StringComparison.Ordinal))
            {
                // Streams allocate in the mock until gen-0 collections happen; the hook writes every 2 s.
                for (var i = 0; i < 50; i++)
                {
                    try
                    {
                        using var content = new StringContent(body, Encoding.UTF8, "application/json");
                        using var response = await Http.PostAsync(new Uri(baseAddress, "v1/chat/completions"), content);
                        _ = await response.Content.ReadAsByteArrayAsync();
                    }
                    catch (HttpRequestException)
                    {
                        await Task.Delay(100); // not listening yet
                    }
                }

                text = File.Exists(output) ? await File.ReadAllTextAsync(output) : string.Empty;
            }

            Assert.StartsWith("blocking collections over ", text, StringComparison.Ordinal);
            Assert.Matches(@"gen 0 \d+, gen 1 \d+, gen 2 \d+\n", text);
            Assert.Matches(@"\ngen-[012] collections [1-9]\d*: pause p50 \d+\.\d{3} ms, p90 \d+\.\d{3}, max \d+\.\d{3}", text);
            Assert.Matches(@"suspending threads \d+\.\d{3} ms, collecting \d+\.\d{3} ms, restarting \d+\.\d{3} ms; survivors promoted \d+ KB", text);
            Assert.Contains("marked from stacks: ", text, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(output);
            File.Delete(output + ".tmp");
        }
    }
}
