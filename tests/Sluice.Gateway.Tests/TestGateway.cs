using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Providers;
using Sluice.Providers.Simulation;

namespace Sluice.Gateway.Tests;

/// <summary>A gateway on a real Kestrel socket (127.0.0.1, free port) with a recording usage sink.</summary>
public sealed class TestGateway : IAsyncDisposable
{
    private readonly string _dataDirectory;

    private TestGateway(RunningGateway gateway, RecordingUsageSink usage, string dataDirectory)
    {
        _dataDirectory = dataDirectory;
        Gateway = gateway;
        Usage = usage;
        Client = new HttpClient { BaseAddress = gateway.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public RunningGateway Gateway { get; }

    public RecordingUsageSink Usage { get; }

    public HttpClient Client { get; }

    public Uri BaseAddress => Gateway.BaseAddress;

    /// <summary>A paced simulated model for timing-sensitive tests (20 tokens/s, no jitter).</summary>
    public static ModelOptions Paced => new()
    {
        Name = "sim-paced",
        Provider = "sim",
        TokensPerSecond = 20,
    };

    public static async Task<TestGateway> StartAsync(Action<GatewayOptions>? configure = null, Action<IServiceCollection>? services = null)
    {
        // Each gateway gets its own throwaway SQLite store (open local mode: no master key).
        var dataDirectory = Path.Combine(Path.GetTempPath(), "sluice-gateway-test-" + Guid.NewGuid().ToString("N"));
        var options = new GatewayOptions { Port = 0, Models = [.. BuiltInModels.All, Paced], DataDirectory = dataDirectory };
        configure?.Invoke(options);
        var usage = new RecordingUsageSink();
        var gateway = await SluiceGateway.StartAsync(
            options,
            collection =>
            {
                collection.AddSingleton<IUsageSink>(usage);
                services?.Invoke(collection);
            },
            logging => logging.SetMinimumLevel(LogLevel.Warning));
        return new TestGateway(gateway, usage, dataDirectory);
    }

    public static StringContent Json(string json) => new(json, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));

    public Task<HttpResponseMessage> PostChatAsync(string json, CancellationToken cancellationToken = default) =>
        Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Json(json) },
            HttpCompletionOption.ResponseHeadersRead,
            cancellationToken);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Gateway.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }
}

/// <summary>Keeps every usage record with the moment it arrived.</summary>
public sealed class RecordingUsageSink : IUsageSink
{
    private readonly ConcurrentQueue<(UsageRecord Record, long Timestamp)> _records = new();
    private readonly SemaphoreSlim _arrived = new(0);

    public IReadOnlyList<UsageRecord> Records => _records.Select(r => r.Record).ToList();

    public void Record(UsageRecord record)
    {
        _records.Enqueue((record, Stopwatch.GetTimestamp()));
        _arrived.Release();
    }

    /// <summary>
    /// Waits (bounded) until at least <paramref name="count"/> records arrived; returns how many there are. An abandoned
    /// stream is recorded when the server notices the disconnect, which can be after the client has moved on.
    /// </summary>
    public async Task<int> WaitForCountAsync(int count, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)((timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds * Stopwatch.Frequency);
        while (_records.Count < count && Stopwatch.GetTimestamp() < deadline)
        {
            await _arrived.WaitAsync(TimeSpan.FromMilliseconds(200));
        }

        return _records.Count;
    }

    /// <summary>Waits (bounded) for the record of the request with <paramref name="requestId"/>.</summary>
    public async Task<(UsageRecord Record, long Timestamp)> WaitForAsync(string requestId, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)((timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var match = _records.FirstOrDefault(r => r.Record.RequestId == requestId);
            if (match.Record is not null)
            {
                return match;
            }

            var remaining = deadline - Stopwatch.GetTimestamp();
            if (remaining <= 0)
            {
                throw new TimeoutException($"No usage record for request {requestId}.");
            }

            await _arrived.WaitAsync(TimeSpan.FromMilliseconds(Math.Min(200, remaining * 1000.0 / Stopwatch.Frequency)));
        }
    }
}
