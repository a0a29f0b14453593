using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Sluice.Cli.Tests;

/// <summary>
/// One client opening more connections than the process has file descriptors: <c>sluice serve</c> must neither spin
/// nor grow nor die, and must answer again once they close. Before the guarded accept loop, Kestrel retried the failed
/// accept at once: a core at 100 % and ~30 MB more memory a second until the process died with "Out of memory."
/// </summary>
public sealed class ConnectionFloodTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-flood-");

    public void Dispose() => _root.Delete(recursive: true);

    [Fact]
    public async Task Out_of_file_descriptors_the_gateway_waits_logs_what_to_do_and_recovers()
    {
        // A low open-file limit for the gateway alone, and no connection limits, so the flood reaches the descriptors.
        var script = Path.Combine(_root.FullName, "serve-with-400-files.sh");
        var dll = Path.Combine(AppContext.BaseDirectory, "sluice.dll");
        await File.WriteAllTextAsync(script, $"#!/bin/bash\nulimit -n 400 || exit 9\nexec dotnet '{dll}' \"$@\"\n");
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("This test reads /proc.");
        }

        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var environment = new Dictionary<string, string>
        {
            ["SLUICE_Limits__MaxConnections"] = "100000",
            ["SLUICE_Limits__MaxConnectionsPerClient"] = "0",
        };

        await using var server = await ServeProcess.StartAsync(["--data", _root.CreateSubdirectory("data").FullName], environment, executable: script);
        var port = server.Address.Port;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(server.Address, "v1/models"))).StatusCode);

        var flood = new List<Socket>();
        try
        {
            // More connections than the gateway has descriptors; the kernel queues the rest in the listen backlog.
            for (var i = 0; i < 600; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                flood.Add(socket);
                using var connect = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), connect.Token);
            }

            await server.Process.WaitForOutputAsync((stdout, stderr) => (stdout + stderr).Contains("out of file descriptors", StringComparison.Ordinal), TimeSpan.FromSeconds(20));

            // Out of descriptors for three seconds: no spinning, no growth.
            var (cpuBefore, rssBefore) = Usage(server.Process.Id);
            await Task.Delay(TimeSpan.FromSeconds(3));
            var (cpuAfter, rssAfter) = Usage(server.Process.Id);
            Assert.False(server.Process.HasExited, server.Log);
            Assert.True(cpuAfter - cpuBefore < 1.0, $"the gateway used {cpuAfter - cpuBefore:F2} s of CPU in 3 s while out of descriptors (a spinning accept loop)");
            Assert.True(rssAfter - rssBefore < 40L * 1024 * 1024, $"resident memory grew {(rssAfter - rssBefore) / 1024 / 1024} MB in 3 s while out of descriptors");
            Assert.Contains("Raise the limit (ulimit -n", server.Log, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        // The flood gone, the gateway answers again.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                var response = await http.GetAsync(new Uri(server.Address, "v1/models"));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                break;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }

        Assert.False(server.Process.HasExited, server.Log);
        Assert.DoesNotContain("Out of memory", server.Log, StringComparison.Ordinal);
    }

    /// <summary>CPU seconds (user + system) and resident bytes of a process, from /proc.</summary>
    private static (double CpuSeconds, long ResidentBytes) Usage(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        var rssPages = long.Parse(File.ReadAllText($"/proc/{pid}/statm").Split(' ')[1], CultureInfo.InvariantCulture);
        return (ticks / 100.0, rssPages * Environment.SystemPageSize);
    }
}
