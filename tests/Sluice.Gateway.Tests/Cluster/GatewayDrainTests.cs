using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Providers.Simulation;

namespace Sluice.Gateway.Tests.Cluster;

/// <summary>
/// The graceful stop as <c>sluice serve</c> runs it: SIGTERM stops the host (drain, then "drained"), and the command
/// then disposes the gateway, which stops it once more — the operator's log must still say once, and truly, how the
/// drain ended.
/// </summary>
public sealed class GatewayDrainTests
{
    [Fact]
    public async Task A_stop_then_dispose_logs_one_drain_that_cut_nothing()
    {
        var logs = new ConcurrentQueue<string>();
        var gateway = await SluiceGateway.StartAsync(
            new GatewayOptions { Port = 0, Models = [.. BuiltInModels.All], DataDirectory = Path.Combine(Path.GetTempPath(), "sluice-drain-" + Guid.NewGuid().ToString("N")) },
            configureLogging: logging => logging.SetMinimumLevel(LogLevel.Information).AddProvider(new Capture(logs)));
        using (var client = new HttpClient { BaseAddress = gateway.BaseAddress })
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri("health", UriKind.Relative))).StatusCode);
        }

        // As on SIGTERM: the host stops (its drain finds nothing running), then `await using` disposes the gateway.
        gateway.App.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
        await gateway.App.WaitForShutdownAsync();
        await gateway.DisposeAsync();

        var drained = logs.Where(l => l.StartsWith("Shutdown: drained", StringComparison.Ordinal)).ToList();
        var line = Assert.Single(drained);
        Assert.Contains("cut at the deadline: False", line, StringComparison.Ordinal);
        Assert.Single(logs, l => l.StartsWith("Shutting down: draining", StringComparison.Ordinal));
    }

    private sealed class Capture(ConcurrentQueue<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, lines);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (category.EndsWith("GatewayDrain", StringComparison.Ordinal))
                {
                    lines.Enqueue(formatter(state, exception));
                }
            }
        }
    }
}
