using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Sluice.Cli.Bench;

/// <summary>
/// <c>sluice bench overhead --processes</c>: the same measurement as <see cref="OverheadBenchmark"/>, but the mock
/// upstream (<c>sluice mock-upstream</c>), the bare proxy (<c>sluice bench proxy</c>) and the gateway
/// (<c>sluice serve</c> with a generated config) each run in a child process on their own loopback port, as they
/// would in production. Only the load client runs in the bench process, so no party shares a thread pool or a GC
/// heap with another. The children are always killed at the end, on failure and on cancellation too.
/// </summary>
internal static class ProcessOverheadBenchmark
{
    /// <summary>How long a child may take to answer its readiness probe (first JIT, store migrations on a busy machine).</summary>
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    public static async Task<OverheadResult> RunAsync(OverheadSettings settings, TextWriter progress, CancellationToken cancellationToken)
    {
        // One temp directory for everything the children write (config, SQLite store); deleted at the end.
        var workDirectory = Path.Combine(Path.GetTempPath(), "sluice-bench-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(workDirectory);
        var children = new List<BenchChildProcess>();
        try
        {
            var ports = BenchChildProcess.FreePorts(3);
            var mockUrl = Loopback(ports[0]);
            var proxyUrl = Loopback(ports[1]);
            var gatewayUrl = Loopback(ports[2]);
            var masterKey = settings.Auth ? "sk-bench-master-" + Guid.NewGuid().ToString("N") : null;
            var configPath = Path.Combine(workDirectory, "sluice.json");
            await File.WriteAllTextAsync(configPath, GatewayConfig(settings, ports[2], mockUrl, masterKey, Path.Combine(workDirectory, "data")), cancellationToken);

            // Started one after the other: each start JITs and would slow the others' on 2 cores anyway, and a
            // failure then names the child that failed.
            var mock = await StartAsync(
                children,
                "mock upstream",
                ["mock-upstream", "--host", "127.0.0.1", "--port", Invariant(ports[0]), "--chunks", Invariant(settings.Chunks), "--chunk-delay-ms", Invariant(settings.ChunkDelayMs), "--model", "mock"],
                mockUrl,
                new Uri(mockUrl, "v1/models"),
                workDirectory,
                progress,
                cancellationToken);
            await StartAsync(
                children,
                "bare proxy",
                ["bench", "proxy", "--upstream", mockUrl.ToString(), "--port", Invariant(ports[1])],
                proxyUrl,
                new Uri(proxyUrl, "health"),
                workDirectory,
                progress,
                cancellationToken);
            var gateway = await StartAsync(
                children,
                "gateway",
                ["serve", "--config", configPath],
                gatewayUrl,
                new Uri(gatewayUrl, "health"),
                workDirectory,
                progress,
                cancellationToken);

            string? gatewayKey = null;
            if (masterKey is not null)
            {
                gatewayKey = await OverheadBenchmark.CreateTeamKeyAsync(gatewayUrl, masterKey, cancellationToken);
                await progress.WriteLineAsync("created organization org_bench and team team_bench through the admin API; the gateway is called with the team's virtual key");
            }

            var result = await OverheadBenchmark.MeasureAsync(
                settings,
                new BenchTarget("direct", mockUrl, null),
                new BenchTarget("bare-proxy", proxyUrl, null),
                new BenchTarget("gateway", gatewayUrl, gatewayKey),
                progress,
                cancellationToken);

            // A child that died mid-run would have failed the streams already; this catches one that died at the very end.
            foreach (var child in new[] { mock, gateway }.Where(c => c.HasExited))
            {
                throw new InvalidOperationException($"The {child.Name} (pid {child.Id}) exited during the run. Its last output:{Environment.NewLine}{child.LastOutput}");
            }

            return result;
        }
        finally
        {
            // Reverse order: the gateway and the proxy go before the upstream they call.
            for (var i = children.Count - 1; i >= 0; i--)
            {
                await children[i].DisposeAsync();
            }

            if (children.Count > 0)
            {
                await progress.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"stopped {children.Count} child process(es): {string.Join(", ", children.Select(c => c.Id))}"));
            }

            try
            {
                Directory.Delete(workDirectory, recursive: true);
            }
            catch (IOException)
            {
                // A leftover temp directory is harmless.
            }
        }
    }

    /// <summary>The gateway's config: one <c>openai</c> model <c>mock</c> pointing at the mock upstream, a throwaway store.</summary>
    internal static string GatewayConfig(OverheadSettings settings, int port, Uri mock, string? masterKey, string dataDirectory)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("Host", "127.0.0.1");
            json.WriteNumber("Port", port);
            json.WriteString("DataDirectory", dataDirectory);
            if (masterKey is not null)
            {
                json.WriteString("MasterKey", masterKey);
            }

            json.WriteStartObject("Streaming");
            json.WriteBoolean("Resumable", settings.Resumable);
            json.WriteEndObject();
            json.WriteStartArray("Models");
            json.WriteStartObject();
            json.WriteString("Name", "mock");
            json.WriteString("Provider", "openai");
            json.WriteString("BaseUrl", new Uri(mock, "v1").ToString());
            json.WriteNumber("MaxAttempts", 1);
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static async Task<BenchChildProcess> StartAsync(
        List<BenchChildProcess> children,
        string name,
        string[] args,
        Uri address,
        Uri probe,
        string workDirectory,
        TextWriter progress,
        CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var child = BenchChildProcess.Start(name, args, workDirectory);
        children.Add(child);
        await progress.WriteLineAsync($"starting {child.Describe(address)}: sluice {string.Join(' ', args)}");
        await child.WaitReadyAsync(probe, ReadyTimeout, cancellationToken);
        await progress.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{name} ready after {Stopwatch.GetElapsedTime(started).TotalSeconds:0.0} s"));
        return child;
    }

    private static Uri Loopback(int port) => new(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}/"));

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}
