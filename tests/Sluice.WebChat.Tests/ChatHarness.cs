using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Playwright;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Providers;
using Sluice.Providers.Simulation;

namespace Sluice.WebChat.Tests;

/// <summary>
/// One gateway on a real Kestrel socket (127.0.0.1, free port, throwaway store) and one headless Debian Chromium,
/// shared by the tests of a class; each test gets a fresh browser context (empty localStorage).
/// </summary>
public class ChatHarness : IAsyncLifetime
{
    /// <summary>Chromium's flags: no network activity of its own (updates, sync, safe browsing lists).</summary>
    private static readonly string[] ChromiumArgs =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
    ];

    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "sluice-webchat-test-" + Guid.NewGuid().ToString("N"));
    private IPlaywright? _playwright;
    private IBrowser? _browser;
    private RunningGateway? _gateway;

    /// <summary>Paced (20 tokens/s, no jitter), a short answer: a couple of seconds.</summary>
    public const string PacedModel = "sim-paced";

    /// <summary>Paced and long (400 tokens ≈ 20 s): for Stop and dropped connections.</summary>
    public const string LongModel = "sim-long";

    public RecordingUsageSink Usage { get; } = new();

    /// <summary>Drops the connection of chosen requests mid-stream (see <see cref="ConnectionDropper"/>).</summary>
    public ConnectionDropper Dropper { get; } = new();

    public RunningGateway Gateway => _gateway ?? throw new InvalidOperationException("The harness is not started.");

    public Uri BaseAddress => Gateway.BaseAddress;

    public IBrowser Browser => _browser ?? throw new InvalidOperationException("The harness is not started.");

    /// <summary>The gateway's master key, or null for an open gateway.</summary>
    protected virtual string? MasterKey => null;

    /// <summary>False for tests that only make HTTP calls: no browser is started.</summary>
    protected virtual bool NeedsBrowser => true;

    /// <summary>A plain HTTP client for the gateway.</summary>
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(10) };

    public async Task InitializeAsync()
    {
        var options = new GatewayOptions
        {
            Port = 0,
            DataDirectory = _dataDirectory,
            MasterKey = MasterKey,
            Models =
            [
                .. BuiltInModels.All,
                new ModelOptions { Name = PacedModel, Provider = "sim", TokensPerSecond = 20, DefaultAnswerTokens = 40 },
                new ModelOptions { Name = LongModel, Provider = "sim", TokensPerSecond = 20, DefaultAnswerTokens = 400 },
            ],
        };
        _gateway = await SluiceGateway.StartAsync(
            options,
            services =>
            {
                services.AddSingleton<IUsageSink>(Usage);
                services.AddSingleton<IStartupFilter>(new DropperStartupFilter(Dropper));
            },
            logging => logging.SetMinimumLevel(LogLevel.Warning));

        Http.BaseAddress = Gateway.BaseAddress;
        if (!NeedsBrowser)
        {
            return;
        }

        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath(),
            Headless = true,
            Args = ChromiumArgs,
            Timeout = 20_000,
        });
    }

    /// <summary>The Chromium to drive: SLUICE_TEST_CHROMIUM (set by scripts/test-chromium.sh), else /usr/bin/chromium.</summary>
    public static string ChromiumPath()
    {
        var configured = Environment.GetEnvironmentVariable("SLUICE_TEST_CHROMIUM");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return File.Exists(configured)
                ? configured
                : throw new InvalidOperationException($"SLUICE_TEST_CHROMIUM is '{configured}', but no such file exists. Install Chromium with 'apt-get install -y chromium' or run the tests through 'bash scripts/test.sh', which does.");
        }

        const string Debian = "/usr/bin/chromium";
        return File.Exists(Debian)
            ? Debian
            : throw new InvalidOperationException("The web chat tests need Chromium: SLUICE_TEST_CHROMIUM is not set and /usr/bin/chromium is missing. Run 'sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium', or run the tests through 'bash scripts/test.sh', which installs it.");
    }

    /// <summary>A fresh context and page on the chat; records every request the page makes.</summary>
    public async Task<ChatPage> OpenAsync(string? apiKey = null)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = BaseAddress.ToString() });
        context.SetDefaultTimeout(10_000);
        if (apiKey is not null)
        {
            // Stored the way the page stores it, before the page's script first runs (a later change in the page wins).
            await context.AddInitScriptAsync(
                $"if (localStorage.getItem('sluice.apiKey') === null) localStorage.setItem('sluice.apiKey', {System.Text.Json.JsonSerializer.Serialize(apiKey)});");
        }

        var page = await context.NewPageAsync();
        var chat = new ChatPage(context, page);
        await chat.GotoAsync("/");
        return chat;
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (_browser is not null)
        {
            await _browser.CloseAsync();
        }

        _playwright?.Dispose();
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private sealed class DropperStartupFilter(ConnectionDropper dropper) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(dropper.InvokeAsync);
            next(app);
        };
    }
}

/// <summary>The gateway alone, for HTTP-level checks.</summary>
public sealed class GatewayHarness : ChatHarness
{
    protected override bool NeedsBrowser => false;
}

/// <summary>The same gateway with a master key: every /v1 and /api call needs it.</summary>
public sealed class MasterKeyHarness : ChatHarness
{
    public const string Key = "sk-test-master-key";

    protected override string? MasterKey => Key;
}

/// <summary>
/// Middleware that cuts the TCP connection of the next N matching requests a while after their response started,
/// the way a flaky network would: the browser's fetch fails mid-stream, the server keeps generating (resume grace).
/// </summary>
public sealed class ConnectionDropper
{
    private int _remaining;
    private int _dropped;
    private string _path = string.Empty;
    private TimeSpan _after;

    public int Dropped => Volatile.Read(ref _dropped);

    public void DropNext(string path, TimeSpan after, int count = 1)
    {
        _path = path;
        _after = after;
        Volatile.Write(ref _remaining, count);
    }

    internal Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (Volatile.Read(ref _remaining) > 0 && context.Request.Path == _path && Interlocked.Decrement(ref _remaining) >= 0)
        {
            var after = _after;
            context.Response.OnStarting(() =>
            {
                _ = Task.Delay(after, CancellationToken.None).ContinueWith(
                    _ =>
                    {
                        Interlocked.Increment(ref _dropped);
                        context.Abort();
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.None,
                    TaskScheduler.Default);
                return Task.CompletedTask;
            });
        }

        return next(context);
    }
}

/// <summary>Keeps every usage record.</summary>
public sealed class RecordingUsageSink : IUsageSink
{
    private readonly ConcurrentQueue<UsageRecord> _records = new();

    public IReadOnlyList<UsageRecord> Records => [.. _records];

    public void Record(UsageRecord record) => _records.Enqueue(record);

    /// <summary>Waits (bounded) for the record of the request with <paramref name="requestId"/>.</summary>
    public async Task<UsageRecord> WaitForAsync(string requestId, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * (long)(timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds;
        while (true)
        {
            if (_records.FirstOrDefault(r => r.RequestId == requestId) is { } record)
            {
                return record;
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"No usage record for request {requestId}; records: {string.Join(", ", _records.Select(r => r.RequestId + "=" + r.Status))}.");
            }

            await Task.Delay(50);
        }
    }
}
