namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// Keeps bench/alloc-profile.sh working: its startup hook (bench/alloc-hook) loads into a Sluice process named by
/// SLUICE_ALLOC_COMMAND and writes estimated allocation bytes by type to SLUICE_ALLOC_OUT.
/// </summary>
public sealed class AllocHookSmokeTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task The_startup_hook_writes_allocations_by_type_for_the_named_command()
    {
        var hook = BenchTools.Built("alloc-hook", "Sluice.AllocHook.dll");
        var output = Path.Combine(Path.GetTempPath(), $"sluice-alloc-{Guid.NewGuid():N}.txt");
        var (started, baseAddress) = await BenchTools.StartMockAsync(4, new Dictionary<string, string>
        {
            ["DOTNET_STARTUP_HOOKS"] = hook,
            ["SLUICE_ALLOC_OUT"] = output,
            ["SLUICE_ALLOC_COMMAND"] = "mock-upstream",
            ["SLUICE_ALLOC_INTERVAL"] = "0.2",
        });
        await using var mock = started;
        try
        {
            var text = string.Empty;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            // The tick fallback may be what the first write shows (it can fire before the first sampled event).
            while (DateTime.UtcNow < deadline
                && !(text.Contains("System.", StringComparison.Ordinal) && text.Contains("(AllocationSampled", StringComparison.Ordinal)))
            {
                try
                {
                    (await Http.GetAsync(new Uri(baseAddress, "v1/models"))).Dispose();
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }

                await Task.Delay(200);
                text = File.Exists(output) ? await File.ReadAllTextAsync(output) : string.Empty;
            }

            Assert.True(text.Length > 0, $"the hook wrote nothing in 30 s (mock exited: {mock.HasExited})\nstdout: {mock.Stdout}\nstderr: {mock.Stderr}");
            // The runtime's randomized sampling (unbiased by object size), not the allocation tick.
            Assert.StartsWith("estimated bytes ", text, StringComparison.Ordinal);
            Assert.Contains("(AllocationSampled, unbiased)", text, StringComparison.Ordinal);
            Assert.Contains(" %  ", text, StringComparison.Ordinal);
            Assert.Contains("System.", text, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(output);
            File.Delete(output + ".tmp");
        }
    }
}
