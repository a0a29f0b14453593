using System.Diagnostics;
using System.Text;

namespace Sluice.Cli.Tests;

/// <summary>
/// Runs the built <c>sluice</c> CLI (<c>dotnet sluice.dll ...</c>, copied next to the test assembly) as a real
/// child process, capturing stdout and stderr as they arrive. Every wait is bounded; disposal kills the process.
/// </summary>
internal sealed class CliProcess : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Lock _gate = new();
    private readonly Task _stdoutPump;
    private readonly Task _stderrPump;

    private CliProcess(Process process)
    {
        _process = process;
        _stdoutPump = PumpAsync(process.StandardOutput, _stdout);
        _stderrPump = PumpAsync(process.StandardError, _stderr);
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Stdout
    {
        get
        {
            lock (_gate)
            {
                return _stdout.ToString();
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_gate)
            {
                return _stderr.ToString();
            }
        }
    }

    public StreamWriter Stdin => _process.StandardInput;

    /// <summary>Starts <c>sluice</c> with <paramref name="args"/>.</summary>
    /// <param name="defaultSigInt">
    /// Make sure SIGINT has its default disposition in the child. A process started with SIGINT ignored (a
    /// background job of a non-interactive shell, as CI runners often are) passes that on, and .NET respects
    /// ignored signals — so Ctrl+C tests reset it with <c>env --default-signal=INT</c> when needed.
    /// </param>
    /// <param name="environment">Extra environment variables for the child (an empty value removes the variable).</param>
    /// <param name="workingDirectory">The child's working directory (default: the test's).</param>
    /// <param name="executable">Run this executable instead of <c>dotnet sluice.dll</c> (an installed tool, a published binary).</param>
    public static CliProcess Start(
        IEnumerable<string> args,
        bool defaultSigInt = false,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null,
        string? executable = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "sluice.dll");
        if (executable is null && !File.Exists(dll))
        {
            throw new FileNotFoundException($"sluice.dll not found at {dll}: the test project must reference src/Sluice.Cli.", dll);
        }

        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
        var info = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
        };
        var program = executable ?? dotnet;
        if (defaultSigInt && OperatingSystem.IsLinux() && SigIntIgnoredHere())
        {
            info.FileName = "env";
            info.ArgumentList.Add("--default-signal=INT");
            info.ArgumentList.Add(program);
        }
        else
        {
            info.FileName = program;
        }

        if (executable is null)
        {
            info.ArgumentList.Add(dll);
        }

        if (workingDirectory is not null)
        {
            info.WorkingDirectory = workingDirectory;
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        // The child must not pick up an API key or settings from the machine running the tests: no key, and the
        // per-user config and data directories point at an empty place (a test may set its own).
        info.Environment.Remove("SLUICE_API_KEY");
        info.Environment["XDG_CONFIG_HOME"] = IsolatedHome.Config;
        info.Environment["XDG_DATA_HOME"] = IsolatedHome.Data;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            if (value.Length == 0)
            {
                info.Environment.Remove(name);
            }
            else
            {
                info.Environment[name] = value;
            }
        }

        return new CliProcess(Process.Start(info) ?? throw new InvalidOperationException("Could not start dotnet."));
    }

    /// <summary>Runs to completion with <paramref name="stdin"/> as input (closed afterwards).</summary>
    public static async Task<CliResult> RunAsync(
        IEnumerable<string> args,
        string? stdin = null,
        TimeSpan? timeout = null,
        IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null,
        string? executable = null)
    {
        await using var process = Start(args, environment: environment, workingDirectory: workingDirectory, executable: executable);
        if (stdin is not null)
        {
            await process.Stdin.WriteAsync(stdin);
        }

        process.Stdin.Close();
        var exitCode = await process.WaitForExitAsync(timeout ?? DefaultTimeout);
        return new CliResult(exitCode, process.Stdout, process.Stderr);
    }

    /// <summary>Waits until <paramref name="condition"/> holds for the output so far.</summary>
    public async Task WaitForOutputAsync(Func<string, string, bool> condition, TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!condition(Stdout, Stderr))
        {
            if (_process.HasExited)
            {
                await DrainAsync();
                if (condition(Stdout, Stderr))
                {
                    return;
                }

                throw new InvalidOperationException($"sluice exited ({_process.ExitCode}) before the expected output.\nstdout: {Stdout}\nstderr: {Stderr}");
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"Expected output did not appear within {timeout}.\nstdout: {Stdout}\nstderr: {Stderr}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Waits for the process to exit and for all of its output; fails (and kills it) after <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"sluice did not exit within {timeout}.\nstdout: {Stdout}\nstderr: {Stderr}");
        }

        await DrainAsync();
        return _process.ExitCode;
    }

    /// <summary>Sends SIGINT, as Ctrl+C in a terminal does.</summary>
    public async Task InterruptAsync()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-INT", Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("Could not start kill.");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await kill.WaitForExitAsync(cts.Token);
        Assert.Equal(0, kill.ExitCode);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await _process.WaitForExitAsync(cts.Token);
            }
        }
        finally
        {
            _process.Dispose();
        }
    }

    private static bool SigIntIgnoredHere()
    {
        // SigIgn is a hex mask; bit (n - 1) stands for signal n, and SIGINT is 2.
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 0x2) != 0;
    }

    private async Task DrainAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Task.WhenAll(_stdoutPump, _stderrPump).WaitAsync(cts.Token);
    }

    private async Task PumpAsync(StreamReader reader, StringBuilder target)
    {
        var buffer = new char[4096];
        int read;
        while ((read = await reader.ReadAsync(buffer.AsMemory())) > 0)
        {
            lock (_gate)
            {
                target.Append(buffer, 0, read);
            }
        }
    }
}

/// <summary>Empty per-user config and data directories for child processes (one pair per test run).</summary>
internal static class IsolatedHome
{
    private static readonly string Root = Directory.CreateTempSubdirectory("sluice-cli-home-").FullName;

    public static string Config { get; } = Directory.CreateDirectory(Path.Combine(Root, "config")).FullName;

    public static string Data { get; } = Directory.CreateDirectory(Path.Combine(Root, "data")).FullName;
}

/// <summary>A finished run.</summary>
internal sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
}
