using System.Globalization;
using System.Text.RegularExpressions;
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

    /// <summary>
    /// Starts <c>sluice mock-upstream</c> on a loopback port the OS picks as it binds (with <paramref name="environment"/>)
    /// and waits until it says where it listens; returns it and that base URL. Port 0 rather than a port found free
    /// beforehand: tests in this assembly open hundreds of client sockets at once, and one of them can take a
    /// pre-picked port before the mock binds it.
    /// </summary>
    public static async Task<(CliProcess Mock, Uri BaseAddress)> StartMockAsync(int chunks, IReadOnlyDictionary<string, string>? environment = null)
    {
        var mock = CliProcess.Start(
            ["mock-upstream", "--host", "127.0.0.1", "--port", "0", "--chunks", chunks.ToString(CultureInfo.InvariantCulture), "--model", "m"],
            environment: environment);
        try
        {
            await mock.WaitForOutputAsync((stdout, _) => ListeningOn.IsMatch(stdout), TimeSpan.FromSeconds(60));
            return (mock, new Uri(ListeningOn.Match(mock.Stdout).Groups[1].Value));
        }
        catch
        {
            await mock.DisposeAsync();
            throw;
        }
    }

    private static readonly Regex ListeningOn = new(@"Mock upstream listening on (\S+/)", RegexOptions.CultureInvariant);
}
