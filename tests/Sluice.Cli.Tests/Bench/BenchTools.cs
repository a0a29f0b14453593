using System.Globalization;
using Sluice.Cli.Tests.ScaleOut;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>What the bench tools' smoke tests share: a tool built with this test project, and a mock upstream to load.</summary>
internal static class BenchTools
{
    /// <summary>The path of <paramref name="dll"/> built under bench/<paramref name="folder"/> in this test run's configuration.</summary>
    public static string Built(string folder, string dll)
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var path = Path.Combine(Fixtures.RepositoryRoot, "bench", folder, "bin", configuration, "net10.0", dll);
        Assert.True(File.Exists(path), $"{path} is built with the test project");
        return path;
    }

    /// <summary>
    /// Builds bench/<paramref name="source"/> (one C file) with <c>cc -O2 -Wall -Werror</c> into
    /// <paramref name="directory"/>, as its script does; returns the executable's path.
    /// </summary>
    public static async Task<string> BuildCAsync(string source, string directory)
    {
        var executable = Path.Combine(directory, Path.GetFileNameWithoutExtension(source));
        var build = await CliProcess.RunAsync(
            ["-O2", "-Wall", "-Werror", "-o", executable, Path.Combine(Fixtures.RepositoryRoot, "bench", source)],
            timeout: TimeSpan.FromSeconds(60),
            executable: "cc");
        Assert.True(build.ExitCode == 0, build.Stdout + build.Stderr);
        return executable;
    }

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    /// <summary>
    /// Polls <paramref name="url"/> until it answers with a success (up to ~30 s) and returns the body; fails at once if
    /// <paramref name="process"/>, the server being waited for, exits.
    /// </summary>
    public static async Task<string> WaitUntilAnswersAsync(Uri url, CliProcess process)
    {
        for (var i = 0; i < 300; i++)
        {
            try
            {
                using var response = await Http.GetAsync(url);
                if (response.IsSuccessStatusCode)
                {
                    return await response.Content.ReadAsStringAsync();
                }
            }
            catch (HttpRequestException)
            {
            }

            Assert.False(process.HasExited, $"the server exited: {process.Stderr}");
            await Task.Delay(100);
        }

        Assert.Fail($"nothing answered at {url}: {process.Stderr}");
        return "";
    }

    /// <summary>Starts <c>sluice mock-upstream</c> on a free loopback port (with <paramref name="environment"/>); returns it and its base URL.</summary>
    public static (CliProcess Mock, Uri BaseAddress) StartMock(int chunks, IReadOnlyDictionary<string, string>? environment = null)
    {
        var port = NginxProcess.FreePort().ToString(CultureInfo.InvariantCulture);
        var mock = CliProcess.Start(
            ["mock-upstream", "--host", "127.0.0.1", "--port", port, "--chunks", chunks.ToString(CultureInfo.InvariantCulture), "--model", "m"],
            environment: environment);
        return (mock, new Uri($"http://127.0.0.1:{port}/"));
    }
}
