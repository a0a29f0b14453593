using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Mqtt;
using Sluice.Providers;
using Sluice.Providers.Simulation;

namespace Sluice.Mqtt.Tests;

/// <summary>One message received by the test client.</summary>
internal sealed record Received(string Topic, byte[] Payload, JsonElement Json, long Timestamp)
{
    public string? Id => Json.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;

    public long Seq => Json.GetProperty("seq").GetInt64();

    public string? Content => Json.TryGetProperty("content", out var c) ? c.GetString() : null;

    public bool IsDone => Json.TryGetProperty("done", out var d) && d.GetBoolean();

    public JsonElement? Error => Json.TryGetProperty("error", out var e) ? e : null;

    public bool IsFinal => IsDone || Error is not null;
}

/// <summary>A finished answer: its chunks and the done or error message that ended it.</summary>
internal sealed record Answer(IReadOnlyList<Received> Chunks, Received Final)
{
    public string Text => string.Concat(Chunks.Select(c => c.Content));

    public IEnumerable<Received> All => Chunks.Append(Final);
}

/// <summary>
/// A gateway with the MQTT bridge on (real Kestrel, real broker) and a test MQTT client that sends requests and
/// collects answers by id. Every wait is bounded.
/// </summary>
internal sealed class BridgeHarness : IAsyncDisposable
{
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private readonly ConcurrentDictionary<string, Channel<Received>> _byId = new();
    private readonly Task _pump;

    private BridgeHarness(RunningGateway gateway, MqttClient client, string prefix, RecordingSink usage, LogCapture logs)
    {
        Gateway = gateway;
        Client = client;
        Prefix = prefix;
        Usage = usage;
        Logs = logs;
        Http = new HttpClient { BaseAddress = gateway.BaseAddress, Timeout = Wait };
        _pump = Task.Run(PumpAsync);
    }

    public RunningGateway Gateway { get; }

    public MqttBridge Bridge => Gateway.GetRequiredService<MqttBridge>();

    public MqttClient Client { get; }

    public string Prefix { get; }

    public RecordingSink Usage { get; }

    public LogCapture Logs { get; }

    public HttpClient Http { get; }

    /// <summary>A simulated model at 50 tokens/s without jitter.</summary>
    public static ModelOptions Paced => new() { Name = "sim-paced", Provider = "sim", TokensPerSecond = 50 };

    public static async Task<BridgeHarness> StartAsync(
        Action<MqttBridgeOptions>? configure = null,
        (string Host, int Port)? broker = null,
        Action<IServiceCollection>? services = null,
        bool persistentClient = false,
        Action<GatewayOptions>? gateway = null)
    {
        var address = broker ?? TestBrokers.Shared;
        var prefix = "t" + Guid.NewGuid().ToString("N")[..12];
        var mqtt = new MqttBridgeOptions
        {
            Broker = $"mqtt://{address.Host}:{address.Port}",
            Prefix = prefix,
            MinIntervalMs = 10,
            ReconnectMinDelayMs = 50,
            ReconnectMaxDelayMs = 500,
            ConnectTimeoutSeconds = 5,
        };
        configure?.Invoke(mqtt);
        var options = new GatewayOptions { Port = 0, Models = [.. BuiltInModels.All, Paced], Mqtt = mqtt };
        gateway?.Invoke(options);
        var usage = new RecordingSink();
        var logs = new LogCapture();
        var running = await SluiceGateway.StartAsync(
            options,
            s =>
            {
                s.AddSingleton<IUsageSink>(usage);
                services?.Invoke(s);
            },
            logging =>
            {
                logging.SetMinimumLevel(LogLevel.Information);
                logging.AddProvider(logs);
            });

        // The test client subscribes with QoS 1; with a persistent session the broker keeps its messages across a restart.
        var client = new MqttClient(TestBrokers.ClientOptions(address, prefix + "-client", cleanSession: !persistentClient));
        client.Start();
        await client.SubscribeAsync(prefix + "/responses/#", MqttQos.AtLeastOnce).WaitAsync(Wait);
        await client.SubscribeAsync(prefix + "/replies/#", MqttQos.AtLeastOnce).WaitAsync(Wait);
        var harness = new BridgeHarness(running, client, prefix, usage, logs);
        await harness.Bridge.Client.WaitConnectedAsync().WaitAsync(Wait);
        return harness;
    }

    public Task PublishAsync(string payload, string topicSuffix = "dev-1") =>
        Client.PublishAsync($"{Prefix}/requests/{topicSuffix}", Encoding.UTF8.GetBytes(payload), MqttQos.AtLeastOnce);

    /// <summary>Reads messages for <paramref name="id"/> until its done or error message.</summary>
    public async Task<Answer> ReadAnswerAsync(string? id, TimeSpan? timeout = null)
    {
        var channel = Channel(id);
        var chunks = new List<Received>();
        using var cts = new CancellationTokenSource(timeout ?? Wait);
        try
        {
            while (true)
            {
                var message = await channel.Reader.ReadAsync(cts.Token);
                if (message.IsFinal)
                {
                    return new Answer(chunks, message);
                }

                chunks.Add(message);
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"No done/error message for id {id} within {(timeout ?? Wait).TotalSeconds} s; got {chunks.Count} chunk(s).");
        }
    }

    /// <summary>Reads the next message for <paramref name="id"/>.</summary>
    public async Task<Received> ReadMessageAsync(string? id)
    {
        using var cts = new CancellationTokenSource(Wait);
        return await Channel(id).Reader.ReadAsync(cts.Token);
    }

    /// <summary>Whether any message for <paramref name="id"/> is waiting.</summary>
    public bool HasMore(string? id) => Channel(id).Reader.TryPeek(out _);

    /// <summary>The answer of <c>POST /v1/chat/completions</c> (not streamed) for the same request body.</summary>
    public async Task<(string Content, JsonElement Usage, string FinishReason)> HttpAnswerAsync(string body)
    {
        using var content = new StringContent(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
        using var response = await Http.PostAsync("v1/chat/completions", content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        using var json = JsonDocument.Parse(text);
        var root = json.RootElement;
        var choice = root.GetProperty("choices")[0];
        return (choice.GetProperty("message").GetProperty("content").GetString()!, root.GetProperty("usage").Clone(), choice.GetProperty("finish_reason").GetString()!);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Client.DisposeAsync();
        await _pump.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await Gateway.DisposeAsync();
    }

    private Channel<Received> Channel(string? id) => _byId.GetOrAdd(id ?? "<null>", _ => System.Threading.Channels.Channel.CreateUnbounded<Received>());

    private async Task PumpAsync()
    {
        await foreach (var message in Client.Messages.ReadAllAsync())
        {
            var bytes = message.Payload.ToArray();
            using var json = JsonDocument.Parse(bytes);
            var received = new Received(message.Topic, bytes, json.RootElement.Clone(), Stopwatch.GetTimestamp());
            await Channel(received.Id).Writer.WriteAsync(received);
        }
    }
}

/// <summary>Keeps every usage record.</summary>
internal sealed class RecordingSink : IUsageSink
{
    private readonly ConcurrentQueue<UsageRecord> _records = new();

    public IReadOnlyList<UsageRecord> Records => [.. _records];

    public void Record(UsageRecord record) => _records.Enqueue(record);

    /// <summary>Waits (bounded) until <paramref name="count"/> records have arrived.</summary>
    public async Task<IReadOnlyList<UsageRecord>> WaitForAsync(int count)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(BridgeHarness.Wait.TotalSeconds * Stopwatch.Frequency);
        while (_records.Count < count)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"Only {_records.Count} of {count} usage records arrived.");
            }

            await Task.Delay(20);
        }

        return Records;
    }
}

/// <summary>Collects log lines.</summary>
internal sealed class LogCapture : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public async Task<string> WaitForAsync(string fragment)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(BridgeHarness.Wait.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            if (_lines.FirstOrDefault(l => l.Contains(fragment, StringComparison.Ordinal)) is { } line)
            {
                return line;
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"No log line containing '{fragment}'. Lines:\n{string.Join('\n', _lines)}");
            }

            await Task.Delay(20);
        }
    }

    public void Dispose()
    {
    }

    private sealed class Logger(LogCapture owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
    }
}
