using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Hosting;

namespace Sluice.Cli.Tests;

/// <summary>A gateway with the built-in simulated models on 127.0.0.1, a free port, shared by the CLI tests.</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    private RunningGateway? _gateway;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>e.g. <c>http://127.0.0.1:43121</c> (no trailing slash).</summary>
    public string Url => _gateway!.BaseAddress.GetLeftPart(UriPartial.Authority);

    public async Task InitializeAsync() =>
        _gateway = await SluiceGateway.StartAsync(new GatewayOptions { Port = 0 }, configureLogging: _ => { });

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }
    }

    /// <summary>The answer a plain non-streaming /v1 request gets for one user message.</summary>
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
        using var response = await Http.PostAsync(new Uri(Url + "/v1/chat/completions"), content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        using var document = JsonDocument.Parse(text);
        return document.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

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

[CollectionDefinition(Name)]
public sealed class GatewayCollection : ICollectionFixture<GatewayFixture>
{
    // Process tests share one gateway and run one at a time: they start real processes on a small machine.
    public const string Name = "gateway";
}
