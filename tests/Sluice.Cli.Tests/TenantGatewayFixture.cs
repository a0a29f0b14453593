using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Hosting;

namespace Sluice.Cli.Tests;

/// <summary>A gateway with a master key and its own SQLite store in a temp directory, for <c>sluice admin</c>.</summary>
public sealed class TenantGatewayFixture : IAsyncLifetime
{
    public const string MasterKey = "sk-master-cli-tests";

    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "sluice-cli-admin-" + Guid.NewGuid().ToString("N"));
    private RunningGateway? _gateway;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    /// <summary>e.g. <c>http://127.0.0.1:43121</c> (no trailing slash).</summary>
    public string Url => _gateway!.BaseAddress.GetLeftPart(UriPartial.Authority);

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_dataDirectory);
        _gateway = await SluiceGateway.StartAsync(
            new GatewayOptions { Port = 0, MasterKey = MasterKey, DataDirectory = _dataDirectory },
            configureLogging: _ => { });
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }

        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }

    /// <summary>Sends JSON with <paramref name="key"/> as the Bearer token and returns the parsed answer (asserting success).</summary>
    public async Task<JsonDocument> SendAsync(HttpMethod method, string path, string key, object? body = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(Url + path));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null)
        {
            request.Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        }

        using var response = await Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text);
    }
}
