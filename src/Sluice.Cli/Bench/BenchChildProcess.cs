using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Sluice.Cli.Bench;

/// <summary>
/// One <c>sluice</c> sub-command run as a child process of the bench (the mock upstream, the bare proxy or the
/// gateway). Its output is drained continuously (a full pipe would block the child) and the last lines are kept
/// for error messages. Disposal kills it; every child still alive when the bench process exits is killed too.
/// </summary>
internal sealed class BenchChildProcess : IAsyncDisposable
{
    private const int KeptLines = 20;

    // Children to kill if the bench process exits without disposing them (an unhandled exception, Environment.Exit).
    private static readonly ConcurrentDictionary<int, Process> Live = new();
    private static int _exitHookInstalled;

    private readonly Process _process;
    private readonly Queue<string> _lastLines = new();
    private readonly Lock _linesGate = new();
    private readonly Task _stdoutPump;
    private readonly Task _stderrPump;

    private BenchChildProcess(string name, Process process)
    {
        Name = name;
        _process = process;
        Id = process.Id;
        _stdoutPump = PumpAsync(process.StandardOutput);
        _stderrPump = PumpAsync(process.StandardError);
    }

    /// <summary>What the child is, for progress and errors (<c>mock upstream</c>, <c>gateway</c>, …).</summary>
    public string Name { get; }

    /// <summary>The process id (still known after disposal, for the closing progress line).</summary>
    public int Id { get; }

    public bool HasExited => _process.HasExited;

    /// <summary>The last lines the child wrote (stdout and stderr interleaved).</summary>
    public string LastOutput
    {
        get
        {
            lock (_linesGate)
            {
                return string.Join(Environment.NewLine, _lastLines);
            }
        }
    }

    /// <summary>Starts <c>sluice <paramref name="args"/></c> with the same runtime and entry point as this process.</summary>
    /// <param name="name">What the child is, for messages.</param>
    /// <param name="args">The sub-command and its options.</param>
    /// <param name="workingDirectory">Its working directory (so it reads no <c>sluice.json</c> lying around).</param>
    public static BenchChildProcess Start(string name, IEnumerable<string> args, string workingDirectory)
    {
        InstallExitHook();
        var info = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
        };
        var (fileName, prefix) = SelfCommand();
        info.FileName = fileName;
        foreach (var arg in prefix.Concat(args))
        {
            info.ArgumentList.Add(arg);
        }

        // The children are configured by their arguments and config file only: SLUICE_ variables of the calling
        // shell (a port, a master key, models) would silently change what is measured.
        foreach (var variable in info.Environment.Keys.Where(k => k.StartsWith(Sluice.Gateway.Hosting.GatewayConfiguration.EnvironmentPrefix, StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(variable);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start the {name} ({info.FileName}).");
        Live[process.Id] = process;
        return new BenchChildProcess(name, process);
    }

    /// <summary>
    /// Loopback ports that were free a moment ago, all distinct. Another process could take one before the child
    /// binds it; the child then fails to start and the bench says so.
    /// </summary>
    public static int[] FreePorts(int count)
    {
        var listeners = new List<TcpListener>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                var listener = new TcpListener(IPAddress.Loopback, 0);
                listener.Start();
                listeners.Add(listener);
            }

            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var listener in listeners)
            {
                listener.Stop();
            }
        }
    }

    /// <summary>Polls <paramref name="probe"/> until it answers 200, the child exits, or <paramref name="timeout"/> passes.</summary>
    /// <exception cref="InvalidOperationException">The child exited or never became ready; the message carries its last output.</exception>
    public async Task WaitReadyAsync(Uri probe, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_process.HasExited)
            {
                await DrainAsync();
                throw new InvalidOperationException(
                    $"The {Name} (pid {Id}) exited with code {_process.ExitCode} before it was ready. Its last output:{Environment.NewLine}{LastOutput}");
            }

            try
            {
                using var response = await http.GetAsync(probe, cancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // The probe timed out: the child is still starting (JIT, store migrations).
            }

            if (Stopwatch.GetElapsedTime(started) > timeout)
            {
                throw new InvalidOperationException(
                    $"The {Name} (pid {Id}) did not answer {probe} within {timeout.TotalSeconds:0} s. Its last output:{Environment.NewLine}{LastOutput}");
            }

            await Task.Delay(50, cancellationToken);
        }
    }

    /// <summary>Kills the child (and anything it started) and waits, bounded, for it to be gone.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(bound.Token);
            await DrainAsync();
        }
        catch (InvalidOperationException)
        {
            // Exited between the check and the kill.
        }
        catch (OperationCanceledException)
        {
            // Still not gone after SIGKILL and 10 s: nothing more can be done from here.
        }
        finally
        {
            Live.TryRemove(Id, out _);
            _process.Dispose();
        }
    }

    /// <summary>How to run this very <c>sluice</c>: the apphost itself, or <c>dotnet sluice.dll</c>.</summary>
    private static (string FileName, string[] Prefix) SelfCommand()
    {
        var processPath = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is unknown; run the bench through the sluice executable.");
        var host = Path.GetFileNameWithoutExtension(processPath);
        if (string.Equals(host, "dotnet", StringComparison.OrdinalIgnoreCase))
        {
            // Under "dotnet sluice.dll" (never a single-file app, whose assemblies have no location).
            var dll = Path.Combine(AppContext.BaseDirectory, "sluice.dll");
            return (processPath, [dll]);
        }

        return (processPath, []);
    }

    private static void InstallExitHook()
    {
        if (Interlocked.Exchange(ref _exitHookInstalled, 1) == 0)
        {
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                foreach (var process in Live.Values)
                {
                    try
                    {
                        process.Kill(entireProcessTree: true);
                    }
                    catch (InvalidOperationException)
                    {
                        // Already gone.
                    }
                }
            };
        }
    }

    private async Task DrainAsync()
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await Task.WhenAll(_stdoutPump, _stderrPump).WaitAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            // A grandchild may hold the pipe open; the lines so far are enough.
        }
    }

    private async Task PumpAsync(StreamReader reader)
    {
        try
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                lock (_linesGate)
                {
                    _lastLines.Enqueue(line);
                    if (_lastLines.Count > KeptLines)
                    {
                        _lastLines.Dequeue();
                    }
                }
            }
        }
        catch (IOException)
        {
            // The pipe broke with the child.
        }
        catch (ObjectDisposedException)
        {
            // Disposed while reading.
        }
    }

    /// <summary>For progress lines: <c>gateway (pid 1234) on http://127.0.0.1:40001/</c>.</summary>
    public string Describe(Uri address) => string.Create(CultureInfo.InvariantCulture, $"{Name} (pid {Id}) on {address}");
}
