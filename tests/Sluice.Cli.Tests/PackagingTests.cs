using System.Diagnostics;
using System.Net;
using System.Text;
using Sluice.Testing;

namespace Sluice.Cli.Tests;

/// <summary>
/// The ways a user gets a <c>sluice</c> command: the .NET tool (packed, installed into a tool path, run from another
/// directory) and the self-contained single-file executable (run with no .NET on PATH). Real dotnet pack, tool
/// install and publish; real processes.
/// </summary>
public sealed class PackagingTests : IDisposable
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    // A bound, not the expected time: publishing compiles every project for linux-x64 (about a minute on an idle
    // 2-core machine), and much longer when the machine is shared.
    private static readonly TimeSpan DotnetTimeout = TimeSpan.FromMinutes(8);

    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-packaging-");

    public void Dispose() => _root.Delete(recursive: true);

    [Fact]
    public async Task Tool_packs_installs_into_a_tool_path_and_runs_serve_chat_and_admin_from_another_directory()
    {
        var feed = Dir("feed");

        // The test project has just built src/Sluice.Cli in this configuration: pack those binaries as they are.
        await DotnetAsync(["pack", Path.Combine(Fixtures.RepositoryRoot, "src", "Sluice.Cli"), "-c", Configuration, "--no-build", "-o", feed, "-nologo"]);
        var package = Assert.Single(Directory.GetFiles(feed, "Sluice.Cli.*.nupkg"));
        var version = Path.GetFileNameWithoutExtension(package)["Sluice.Cli.".Length..];

        // Only the local feed: the install must not depend on (or pick up a same-named package from) a remote source.
        var nugetConfig = Path.Combine(_root.FullName, "nuget.config");
        await File.WriteAllTextAsync(nugetConfig, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /><add key="local" value="{feed}" /></packageSources></configuration>
            """);
        var tools = Dir("tools");
        await DotnetAsync(["tool", "install", "Sluice.Cli", "--tool-path", tools, "--version", version, "--configfile", nugetConfig]);
        var sluice = Path.Combine(tools, "sluice");
        Assert.True(File.Exists(sluice), $"no {sluice}");

        var elsewhere = Dir("elsewhere");
        await using var server = await ServeProcess.StartAsync(["--data", Dir("data")], workingDirectory: elsewhere, executable: sluice);

        var chat = await CliProcess.RunAsync(["chat", "Hello from the tool", "--url", server.Url, "--model", "sim-fast", "--max-tokens", "5"], workingDirectory: elsewhere, executable: sluice);
        Assert.True(chat.ExitCode == 0, chat.ToString());
        Assert.StartsWith("[sim-fast] 5 tokens", chat.StderrLines[^1], StringComparison.Ordinal);

        var admin = await CliProcess.RunAsync(["admin", "orgs", "create", "Tool Org", "--id", "org_tool", "--url", server.Url, "--json"], workingDirectory: elsewhere, executable: sluice);
        Assert.True(admin.ExitCode == 0, admin.ToString());
        Assert.Contains("org_tool", admin.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Self_contained_single_file_starts_and_serves_with_no_dotnet_on_path()
    {
        var output = Dir("publish");
        await DotnetAsync([
            "publish", Path.Combine(Fixtures.RepositoryRoot, "src", "Sluice.Cli"), "-c", Configuration, "-r", "linux-x64", "--self-contained",
            "-p:PublishSingleFile=true", "-o", output, "-nologo",
        ]);
        var executable = Path.Combine(output, "sluice");
        Assert.True(File.Exists(executable), $"no {executable}");

        // No dotnet anywhere it could look: an empty PATH, no DOTNET_ROOT, a fresh HOME (the default store goes there).
        var home = Dir("home");
        var noDotnet = new Dictionary<string, string>
        {
            ["PATH"] = Dir("empty-path"),
            ["DOTNET_ROOT"] = string.Empty,
            ["DOTNET_HOST_PATH"] = string.Empty,
            ["HOME"] = home,
            ["XDG_DATA_HOME"] = string.Empty,
        };
        var started = Stopwatch.GetTimestamp();
        await using var server = await ServeProcess.StartAsync([], noDotnet, workingDirectory: Dir("cwd"), executable: executable);
        var startUp = Stopwatch.GetElapsedTime(started);
        Assert.Contains(Path.Combine(home, ".local", "share", "sluice", "sluice.db"), server.Log, StringComparison.Ordinal);

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var content = new StringContent("""{"model": "sim-fast", "prompt": "Hello", "stream": true, "max_tokens": 8}""", Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(new Uri(server.Url + "/v1/chat/completions"), content);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        Assert.Contains("data: [DONE]", body, StringComparison.Ordinal);

        // Recorded for docs/install.md (size and start-up time), not asserted: both depend on the machine.
        Console.WriteLine($"single-file sluice: {new FileInfo(executable).Length / (1024.0 * 1024):F1} MiB, serve ready in {startUp.TotalMilliseconds:F0} ms");
    }

    private string Dir(string name) => Directory.CreateDirectory(Path.Combine(_root.FullName, name)).FullName;

    private async Task DotnetAsync(string[] args)
    {
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
        var info = new ProcessStartInfo(dotnet, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _root.FullName,
        };

        // Keep the child out of the tests' own MSBuild and tool settings.
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(info) ?? throw new InvalidOperationException("Could not start dotnet.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(DotnetTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', args)} did not finish within {DotnetTimeout}.\n{await stdout}\n{await stderr}");
        }

        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', args)} exited {process.ExitCode}\n{await stdout}\n{await stderr}");
    }
}
