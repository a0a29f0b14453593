using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Mqtt;
using Sluice.Mqtt;
using Sluice.Providers;
using Sluice.Providers.Simulation;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Matrix;

/// <summary>
/// One gateway for the whole matrix: a master key, a SQLite store, the MQTT bridge on the test broker, and the models
/// the cells need — a paced simulation (to hold a stream open), one that breaks after 3 tokens, and an OpenAI-compatible
/// upstream on a loopback socket that streams slowly and records when its request is aborted.
/// </summary>
public sealed class MatrixFixture : IAsyncLifetime
{
    public const string MasterKey = "matrix-master-key-0123456789abcdef";
    public const string GroupName = "matrix-group";

    private readonly string _data = Path.Combine(Path.GetTempPath(), "sluice-matrix-" + Guid.NewGuid().ToString("N"));
    private readonly ConcurrentDictionary<string, Channel<JsonElement>> _mqttAnswers = new(StringComparer.Ordinal);
    private int _upstreamStarted;
    private int _upstreamAborted;
    private Task _pump = Task.CompletedTask;

    public RunningGateway Gateway { get; private set; } = null!;

    public ReplayUpstream Upstream { get; private set; } = null!;

    public HttpClient Admin { get; private set; } = null!;

    public RecordingUsageSink Usage { get; } = new();

    public MqttClient Mqtt { get; private set; } = null!;

    public string Prefix { get; } = "mx" + Guid.NewGuid().ToString("N")[..10];

    /// <summary>Upstream requests aborted by the gateway (the client left).</summary>
    public int UpstreamAborted => Volatile.Read(ref _upstreamAborted);

    public int UpstreamStarted => Volatile.Read(ref _upstreamStarted);

    public async Task InitializeAsync()
    {
        Upstream = await ReplayUpstream.StartAsync(SlowStreamAsync);
        var broker = Broker();
        var options = new GatewayOptions
        {
            Port = 0,
            MasterKey = MasterKey,
            DataDirectory = _data,
            Models =
            [
                .. BuiltInModels.All,
                new ModelOptions { Name = "sim-paced", Provider = "sim", TokensPerSecond = 20 },
                new ModelOptions { Name = "sim-breaks", Provider = "sim", FailAfterTokens = 3, TokensPerSecond = 200 },
                new ModelOptions { Name = "up-slow", Provider = "openai", BaseUrl = Upstream.BaseUrl + "/v1", UpstreamModel = "slow" },
            ],
            Mqtt = new Sluice.Gateway.Mqtt.MqttBridgeOptions
            {
                Broker = $"mqtt://{broker.Host}:{broker.Port}",
                Prefix = Prefix,
                MinIntervalMs = 10,
                ReconnectMinDelayMs = 50,
                ReconnectMaxDelayMs = 500,
            },
        };
        Gateway = await SluiceGateway.StartAsync(options, s => s.AddSingleton<IUsageSink>(Usage), l => l.SetMinimumLevel(LogLevel.Warning));
        Admin = Client(MasterKey);
        var group = await SendAsync(Admin, HttpMethod.Post, "api/model-groups/create", $$"""{"group_name": "{{GroupName}}", "models": ["sim-fast"]}""");
        Assert.True(group.StatusCode == HttpStatusCode.OK, await group.Content.ReadAsStringAsync());

        Mqtt = new MqttClient(new MqttClientOptions
        {
            Host = broker.Host,
            Port = broker.Port,
            ClientId = Prefix + "-client",
            ReconnectMinDelay = TimeSpan.FromMilliseconds(50),
            ReconnectMaxDelay = TimeSpan.FromMilliseconds(300),
            ConnectTimeout = TimeSpan.FromSeconds(5),
        });
        Mqtt.Start();
        await Mqtt.SubscribeAsync(Prefix + "/responses/#", MqttQos.AtLeastOnce).WaitAsync(TimeSpan.FromSeconds(10));
        await Gateway.GetRequiredService<MqttBridge>().Client.WaitConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        _pump = PumpAsync();
    }

    public HttpClient Client(string? key)
    {
        var client = new HttpClient { BaseAddress = Gateway.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    public static Task<HttpResponseMessage> SendAsync(HttpClient client, HttpMethod method, string path, string? json = null, HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead) =>
        client.SendAsync(new HttpRequestMessage(method, path) { Content = json is null ? null : new StringContent(json, Encoding.UTF8, "application/json") }, completion);

    /// <summary>A new team (through the API) with its first key; <paramref name="extra"/> adds fields such as limits.</summary>
    public async Task<(string TeamId, string Key)> NewTeamAsync(long credits = 100, string extra = "")
    {
        var org = await SendAsync(Admin, HttpMethod.Post, "api/organizations/create", $$"""{"name": "org-{{Guid.NewGuid():N}}"}""");
        var orgId = JsonDocument.Parse(await org.Content.ReadAsStringAsync()).RootElement.GetProperty("organization_id").GetString();
        var team = await SendAsync(Admin, HttpMethod.Post, "api/teams/create", $$"""{"organization_id": "{{orgId}}", "team_alias": "t-{{Guid.NewGuid():N}}", "credits_allocated": {{credits}}{{extra}}}""");
        var body = await team.Content.ReadAsStringAsync();
        Assert.True(team.StatusCode == HttpStatusCode.OK, body);
        var root = JsonDocument.Parse(body).RootElement;
        return (root.GetProperty("team_id").GetString()!, root.GetProperty("virtual_key").GetString()!);
    }

    /// <summary>Publishes an MQTT request and returns its message channel.</summary>
    public async Task<ChannelReader<JsonElement>> PublishAsync(string id, string json)
    {
        var channel = _mqttAnswers.GetOrAdd(id, _ => Channel.CreateUnbounded<JsonElement>());
        await Mqtt.PublishAsync($"{Prefix}/requests/matrix", Encoding.UTF8.GetBytes(json), MqttQos.AtLeastOnce);
        return channel.Reader;
    }

    public async Task DisposeAsync()
    {
        Admin.Dispose();
        await Mqtt.DisposeAsync();
        await _pump.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_data))
        {
            Directory.Delete(_data, recursive: true);
        }
    }

    private static (string Host, int Port) Broker()
    {
        var value = Environment.GetEnvironmentVariable("SLUICE_TEST_MQTT")
            ?? throw new InvalidOperationException("SLUICE_TEST_MQTT is not set: run the tests with `bash scripts/test.sh`, which starts a throwaway mosquitto.");
        var colon = value.LastIndexOf(':');
        return (value[..colon], int.Parse(value.AsSpan(colon + 1), CultureInfo.InvariantCulture));
    }

    private async Task PumpAsync()
    {
        await foreach (var message in Mqtt.Messages.ReadAllAsync())
        {
            var json = JsonDocument.Parse(message.Payload).RootElement.Clone();
            var id = json.TryGetProperty("id", out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : "<none>";
            await _mqttAnswers.GetOrAdd(id, _ => Channel.CreateUnbounded<JsonElement>()).Writer.WriteAsync(json);
        }
    }

    /// <summary>An OpenAI-compatible upstream that streams 200 chunks 50 ms apart, and counts aborted requests.</summary>
    private async Task SlowStreamAsync(HttpContext context)
    {
        Interlocked.Increment(ref _upstreamStarted);
        context.Response.ContentType = "text/event-stream";
        try
        {
            await WriteAsync(context, """{"id":"c1","object":"chat.completion.chunk","created":1,"model":"slow","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}""");
            for (var i = 0; i < 200; i++)
            {
                await WriteAsync(context, $$"""{"id":"c1","object":"chat.completion.chunk","created":1,"model":"slow","choices":[{"index":0,"delta":{"content":"word{{i}} "},"finish_reason":null}]}""");
                await Task.Delay(50, context.RequestAborted);
            }

            await WriteAsync(context, """{"id":"c1","object":"chat.completion.chunk","created":1,"model":"slow","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}""");
            await WriteAsync(context, "[DONE]");
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            Interlocked.Increment(ref _upstreamAborted);
        }
    }

    private static async Task WriteAsync(HttpContext context, string data)
    {
        await context.Response.WriteAsync("data: " + data + "\n\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }
}
