using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Providers.Simulation;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// The net under every endpoint: an exception a handler did not turn into an answer is a JSON error in the endpoint's
/// dialect and exactly one log line — not an empty 500 with Kestrel's stack trace.
/// </summary>
public sealed class UnhandledErrorTests : IAsyncLifetime
{
    private readonly CapturingLoggerProvider _logs = new();
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "sluice-net-test-" + Guid.NewGuid().ToString("N"));
    private WebApplication _app = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        var options = new GatewayOptions { Port = 0, Models = [.. BuiltInModels.All], DataDirectory = _dataDirectory };
        _app = await SluiceGateway.BuildAsync(options, configureLogging: logging =>
        {
            logging.AddProvider(_logs);
            logging.SetMinimumLevel(LogLevel.Information);
        });

        // Endpoints with a bug, declared like real ones: the net must answer in each one's dialect.
        _app.MapGet("/v1/test/bug", Throw).WithPolicy(EndpointPolicy.Key);
        _app.MapGet("/v1/messages/test/bug", Throw).WithPolicy(EndpointPolicy.AnthropicKey);
        _app.MapGet("/api/test/bug", Throw).WithPolicy(EndpointPolicy.OllamaKey);
        _app.MapGet("/v1/test/half", async context =>
        {
            await context.Response.WriteAsync("data: partial\n\n");
            await context.Response.Body.FlushAsync();
            throw new InvalidOperationException("failed after the first byte");
        }).WithPolicy(EndpointPolicy.Key);
        await _app.StartAsync();
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        _client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(20) };
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    [Theory]
    [InlineData("v1/test/bug", "openai")]
    [InlineData("v1/messages/test/bug", "anthropic")]
    [InlineData("api/test/bug", "ollama")]
    public async Task An_unhandled_exception_is_a_JSON_500_in_the_dialect_and_one_log_line(string path, string dialect)
    {
        _logs.Clear();
        using var response = await _client.GetAsync(path);
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var requestId = Assert.Single(response.Headers.GetValues("x-request-id"));
        var root = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        MalformedInputTests.AssertShape(root, dialect);
        Assert.Contains(requestId, root.ToString(), StringComparison.Ordinal);
        if (dialect == "openai")
        {
            Assert.Equal("internal_error", root.GetProperty("error").GetProperty("code").GetString());
        }

        // One line, no stack trace (no exception attached), naming the request and where it was thrown.
        var errors = _logs.Entries.Where(e => e.Level >= LogLevel.Warning).ToList();
        var line = Assert.Single(errors);
        Assert.Null(line.Exception);
        Assert.DoesNotContain('\n', line.Message);
        Assert.Contains(requestId, line.Message, StringComparison.Ordinal);
        Assert.Contains("InvalidOperationException", line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failure_after_the_first_byte_cuts_the_response_instead_of_ending_it_cleanly()
    {
        // The connection is aborted: the client sees an error (reading the headers or the body), never a complete response.
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            using var response = await _client.GetAsync("v1/test/half", HttpCompletionOption.ResponseHeadersRead);
            _ = await response.Content.ReadAsStringAsync();
        });
    }

    private static Task Throw(HttpContext context) => throw new InvalidOperationException("a bug in a handler");

    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<Entry> _entries = new();

        public IReadOnlyList<Entry> Entries => [.. _entries];

        public void Clear() => _entries.Clear();

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

        public void Dispose()
        {
        }

        public sealed record Entry(string Category, LogLevel Level, string Message, Exception? Exception);

        private sealed class Logger(string category, ConcurrentQueue<Entry> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                entries.Enqueue(new Entry(category, logLevel, formatter(state, exception), exception));
        }
    }
}
