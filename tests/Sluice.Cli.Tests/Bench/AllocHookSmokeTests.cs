using System.Net;
using System.Net.Sockets;
using Sluice.Testing;

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
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var hook = Path.Combine(Fixtures.RepositoryRoot, "bench", "alloc-hook", "bin", configuration, "net10.0", "Sluice.AllocHook.dll");
        Assert.True(File.Exists(hook), $"{hook} is built with the test project");
        var output = Path.Combine(Path.GetTempPath(), $"sluice-alloc-{Guid.NewGuid():N}.txt");
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        await using var mock = CliProcess.Start(
            ["mock-upstream", "--host", "127.0.0.1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--chunks", "4", "--model", "m"],
            environment: new Dictionary<string, string>
            {
                ["DOTNET_STARTUP_HOOKS"] = hook,
                ["SLUICE_ALLOC_OUT"] = output,
                ["SLUICE_ALLOC_COMMAND"] = "mock-upstream",
                ["SLUICE_ALLOC_INTERVAL"] = "0.2",
            });
        try
        {
            var text = string.Empty;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (DateTime.UtcNow < deadline && !text.Contains("System.", StringComparison.Ordinal))
            {
                try
                {
                    (await Http.GetAsync(new Uri($"http://127.0.0.1:{port}/v1/models"))).Dispose();
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }

                await Task.Delay(200);
                text = File.Exists(output) ? await File.ReadAllTextAsync(output) : string.Empty;
            }

            // The runtime's randomized sampling (unbiased by object size), not the allocation tick.
            Assert.StartsWith("estimated bytes ", text, StringComparison.Ordinal);
            Assert.Contains("(AllocationSampled, unbiased)", text, StringComparison.Ordinal);
            Assert.Contains(" %  ", text, StringComparison.Ordinal);
            Assert.Contains("System.", text, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(output);
        }
    }
}
