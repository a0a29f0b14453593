using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Sluice.Testing;

namespace Sluice.Cli.Tests.ScaleOut;

/// <summary>
/// Debian's nginx (<c>SLUICE_TEST_NGINX</c>, provided by <c>scripts/test-nginx.sh</c>) in the foreground, round-robin in
/// front of gateway instances, with the proxy settings of docs/deploy.md. Only the read timeout is shorter (seconds, not
/// an hour; still longer than a loaded CI machine needs to answer) so a test can show that pings keep a silent stream open past it. Disposal kills it.
/// </summary>
internal sealed class NginxProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;

    private NginxProcess(Process process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Address = new Uri($"http://127.0.0.1:{port}/");
    }

    public Uri Address { get; }

    public string ErrorLog => File.Exists(Path.Combine(_directory, "error.log")) ? File.ReadAllText(Path.Combine(_directory, "error.log")) : string.Empty;

    /// <summary>The proxy's read timeout in this test configuration.</summary>
    public static TimeSpan ReadTimeout { get; } = TimeSpan.FromSeconds(6);

    public static string Binary()
    {
        var binary = Environment.GetEnvironmentVariable("SLUICE_TEST_NGINX");
        if (string.IsNullOrEmpty(binary) || !File.Exists(binary))
        {
            throw new InvalidOperationException(
                "SLUICE_TEST_NGINX is not set (or names no file), so the scale-out tests have no load balancer. Run the tests with `bash scripts/test.sh` " +
                "(it installs nginx), or `apt-get install nginx-light` and set SLUICE_TEST_NGINX=/usr/sbin/nginx.");
        }

        return binary;
    }

    /// <summary>The configuration: docs/deploy.md's, with these upstream ports and this listening port.</summary>
    public static string Configuration(string directory, int port, IEnumerable<int> upstreams)
    {
        var servers = string.Concat(upstreams.Select(p => $"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"));
        var readTimeout = ((int)ReadTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        return $$"""
            worker_processes 1;
            daemon off;
            pid {{directory}}/nginx.pid;
            error_log {{directory}}/error.log warn;
            events { worker_connections 1024; }
            http {
                access_log off;
                client_body_temp_path {{directory}}/body;
                proxy_temp_path {{directory}}/proxy;
                fastcgi_temp_path {{directory}}/fastcgi;
                uwsgi_temp_path {{directory}}/uwsgi;
                scgi_temp_path {{directory}}/scgi;

                upstream sluice {
            {{servers}}        keepalive 32;
                }

                server {
                    listen 127.0.0.1:{{port}};
                    client_max_body_size 4m;

                    location / {
                        proxy_pass http://sluice;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $host;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                        proxy_set_header X-Forwarded-Proto $scheme;
                        proxy_buffering off;
                        proxy_request_buffering off;
                        proxy_cache off;
                        proxy_read_timeout {{readTimeout}}s;
                        proxy_send_timeout 3600s;
                        proxy_next_upstream error timeout http_503 non_idempotent;
                        proxy_next_upstream_tries 3;
                    }
                }
            }

            """;
    }

    public static async Task<NginxProcess> StartAsync(IReadOnlyList<int> upstreams)
    {
        var binary = Binary();
        var directory = Directory.CreateTempSubdirectory("sluice-nginx-").FullName;
        var port = FreePort();
        var config = Path.Combine(directory, "nginx.conf");
        await File.WriteAllTextAsync(config, Configuration(directory, port, upstreams));
        var info = new ProcessStartInfo(binary, ["-p", directory, "-c", config, "-e", Path.Combine(directory, "error.log")])
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        var process = Process.Start(info) ?? throw new InvalidOperationException("nginx did not start.");
        var nginx = new NginxProcess(process, directory, port);
        var deadline = Stopwatch.GetTimestamp() + (20 * Stopwatch.Frequency);
        while (true)
        {
            if (process.HasExited)
            {
                var stderr = await process.StandardError.ReadToEndAsync();
                await nginx.DisposeAsync();
                throw new InvalidOperationException($"nginx exited ({process.ExitCode}): {stderr} {nginx.ErrorLog}");
            }

            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port);
                return nginx;
            }
            catch (SocketException) when (Stopwatch.GetTimestamp() < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>A port nothing listens on now (the OS picks it).</summary>
    public static int FreePort() => LoopbackPorts.Free();

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
            try
            {
                Directory.Delete(_directory, recursive: true);
            }
            catch (IOException)
            {
                // A leftover temp directory is harmless.
            }
            catch (UnauthorizedAccessException)
            {
                // Idem (worker-owned temp directories).
            }
        }
    }
}
