using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Protocol.Sse;
using Sluice.Providers;
using Sluice.Providers.Simulation;

namespace Sluice.Client.Tests;

/// <summary>A real gateway (Kestrel, 127.0.0.1, free port) with the built-in simulated models and a few test ones.</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    /// <summary>Fails its first request with 429 (Retry-After 1 s), then answers.</summary>
    public const string FlakyModel = "sim-flaky";

    /// <summary>20 tokens/s, no jitter: slow enough to cancel or time out mid-answer.</summary>
    public const string PacedModel = "sim-paced";

    /// <summary>Like <see cref="FlakyModel"/>, for the error-handling sample.</summary>
    public const string FlakySampleModel = "sim-flaky-sample";

    /// <summary>50 tokens/s, no jitter: streams visibly but quickly.</summary>
    public const string BriskModel = "sim-brisk";

    private RunningGateway? _gateway;

    public Uri Url => _gateway!.BaseAddress;

    public RunningGateway Gateway => _gateway!;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    public async Task InitializeAsync()
    {
        var options = new GatewayOptions
        {
            Port = 0,
            Models =
            [
                .. BuiltInModels.All,
                new ModelOptions { Name = FlakyModel, FailStatus = 429, FailTimes = 1, RetryAfterSeconds = 1 },
                new ModelOptions { Name = PacedModel, TokensPerSecond = 20 },
                new ModelOptions { Name = FlakySampleModel, FailStatus = 429, FailTimes = 1, RetryAfterSeconds = 1 },
                new ModelOptions { Name = BriskModel, TokensPerSecond = 50 },
            ],
        };
        _gateway = await SluiceGateway.StartAsync(options, configureLogging: logging => logging.SetMinimumLevel(LogLevel.Warning));
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }
    }

    /// <summary>A client for this gateway; tests set limits through <paramref name="configure"/>.</summary>
    public SluiceChatClient Client(Action<SluiceClientOptions>? configure = null)
    {
        var options = new SluiceClientOptions { Endpoint = Url, DefaultModel = "sim-fast", RetryDelay = TimeSpan.FromMilliseconds(50) };
        configure?.Invoke(options);
        return new SluiceChatClient(options);
    }

    /// <summary>The answer a plain non-streaming request gets (the reference the streamed text must equal).</summary>
    public async Task<string> CompleteAsync(string model, string prompt, int maxTokens, long seed)
    {
        var body = JsonSerializer.Serialize(new
        {
            model,
            messages = new[] { new { role = "user", content = prompt } },
            max_tokens = maxTokens,
            seed,
        });
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await Http.PostAsync(new Uri(Url, "/v1/chat/completions"), content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        using var document = JsonDocument.Parse(text);
        return document.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    /// <summary>Options with the simulation's request-metadata fault switches.</summary>
    public static ChatOptions Faults(params (string Key, string Value)[] switches) => new()
    {
        AdditionalProperties = new AdditionalPropertiesDictionary
        {
            ["metadata"] = switches.ToDictionary(s => s.Key, s => s.Value),
        },
    };
}

[CollectionDefinition(Name)]
public sealed class GatewayCollection : ICollectionFixture<GatewayFixture>
{
    public const string Name = "gateway";
}

/// <summary>A loopback Kestrel server whose endpoints a test writes. Stops when disposed.</summary>
public sealed class ScriptedServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ScriptedServer(WebApplication app, Uri url)
    {
        _app = app;
        Url = url;
    }

    public Uri Url { get; }

    public static async Task<ScriptedServer> StartAsync(Action<WebApplication> map)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        map(app);
        await app.StartAsync();
        return new ScriptedServer(app, new Uri(app.Urls.First()));
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }

    /// <summary>Starts an event stream response.</summary>
    public static void StartStream(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
    }

    /// <summary>Writes one whole SSE frame and flushes it.</summary>
    public static async Task WriteEventAsync(HttpContext context, string data, long id = -1)
    {
        var frame = new StringBuilder();
        if (id >= 0)
        {
            frame.Append("id: ").Append(id).Append('\n');
        }

        frame.Append("data: ").Append(data).Append("\n\n");
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(frame.ToString()), context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    /// <summary>An OpenAI chunk with one text delta.</summary>
    public static string TextChunk(string content, string id = "chatcmpl-scripted", string model = "scripted") =>
        JsonSerializer.Serialize(new { id, @object = "chat.completion.chunk", created = 1_700_000_000, model, choices = new[] { new { index = 0, delta = new { content }, finish_reason = (string?)null } } });

    /// <summary>An OpenAI finishing chunk.</summary>
    public static string FinishChunk(string reason = "stop") =>
        JsonSerializer.Serialize(new { id = "chatcmpl-scripted", @object = "chat.completion.chunk", created = 1_700_000_000, model = "scripted", choices = new[] { new { index = 0, delta = new { }, finish_reason = reason } } });

    /// <summary>A loopback port nothing listens on (bound, then released).</summary>
    public static int UnusedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

/// <summary>Records what the client sent and received.</summary>
public sealed class RecordingTrace : ISluiceTrace
{
    public ConcurrentQueue<(HttpMethod Method, Uri Url, string Payload)> Requests { get; } = new();

    public ConcurrentQueue<int> Statuses { get; } = new();

    public ConcurrentQueue<SseEvent> Events { get; } = new();

    public void RequestSending(HttpMethod method, Uri url, ReadOnlySpan<byte> payload) =>
        Requests.Enqueue((method, url, Encoding.UTF8.GetString(payload)));

    public void ResponseReceived(int statusCode, string? contentType) => Statuses.Enqueue(statusCode);

    public void ErrorBodyReceived(string body)
    {
    }

    public void EventReceived(SseEvent sseEvent) => Events.Enqueue(sseEvent);

    public JsonElement LastPayload()
    {
        using var document = JsonDocument.Parse(Requests.Last().Payload);
        return document.RootElement.Clone();
    }
}

/// <summary>Helpers for reading streams in tests.</summary>
public static class Streams
{
    public static async Task<List<ChatResponseUpdate>> CollectAsync(IAsyncEnumerable<ChatResponseUpdate> updates)
    {
        var list = new List<ChatResponseUpdate>();
        await foreach (var update in updates)
        {
            list.Add(update);
        }

        return list;
    }

    public static string Text(IEnumerable<ChatResponseUpdate> updates) => string.Concat(updates.Select(u => u.Text));

    public static List<ChatMessage> User(string text) => [new ChatMessage(ChatRole.User, text)];
}
