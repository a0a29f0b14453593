using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Tenancy;
using Sluice.Providers;
using Sluice.Providers.Simulation;
using Sluice.Storage;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>A gateway on a real Kestrel socket with a store and (by default) a master key, plus API helpers.</summary>
public sealed class TenancyHost : IAsyncDisposable
{
    public const string MasterKey = "test-master-key-0123456789abcdef";

    private TenancyHost(RunningGateway gateway, string? masterKey)
    {
        Gateway = gateway;
        Anonymous = NewClient(null);
        Admin = NewClient(masterKey);
    }

    public RunningGateway Gateway { get; }

    /// <summary>No key at all.</summary>
    public HttpClient Anonymous { get; }

    /// <summary>The master key (no key in open mode).</summary>
    public HttpClient Admin { get; }

    public Uri BaseAddress => Gateway.BaseAddress;

    internal ISluiceStore Store => Gateway.GetRequiredService<TenancyRuntime>().Store;

    internal LedgerUsageSink Ledger => Gateway.GetRequiredService<LedgerUsageSink>();

    /// <summary>A paced simulated model (20 tokens/s): streams stay open long enough to abandon or overlap.</summary>
    public static ModelOptions Paced => new() { Name = "sim-paced", Provider = "sim", TokensPerSecond = 20 };

    public static async Task<TenancyHost> StartAsync(
        string store,
        string? masterKey = MasterKey,
        TimeProvider? time = null,
        Action<GatewayOptions>? configure = null)
    {
        var options = new GatewayOptions
        {
            Port = 0,
            Models = [.. BuiltInModels.All, Paced],
            Store = store,
            MasterKey = masterKey,
        };
        configure?.Invoke(options);
        var gateway = await SluiceGateway.StartAsync(
            options,
            services =>
            {
                if (time is not null)
                {
                    services.AddSingleton(time);
                }
            },
            logging => logging.SetMinimumLevel(LogLevel.Warning));
        return new TenancyHost(gateway, masterKey);
    }

    public HttpClient NewClient(string? key, bool asApiKeyHeader = false)
    {
        var client = new HttpClient { BaseAddress = Gateway.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            if (asApiKeyHeader)
            {
                client.DefaultRequestHeaders.Add("x-api-key", key);
            }
            else
            {
                client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            }
        }

        return client;
    }

    public static StringContent Json(string json) => new(json, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));

    public static async Task<ApiResponse> SendAsync(HttpClient client, HttpMethod method, string path, string? json = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = json is null ? null : Json(json) };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return new ApiResponse(response.StatusCode, text, response.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => string.Join(",", h.Value)));
    }

    public static Task<ApiResponse> PostAsync(HttpClient client, string path, string json = "{}") => SendAsync(client, HttpMethod.Post, path, json);

    public static Task<ApiResponse> GetAsync(HttpClient client, string path) => SendAsync(client, HttpMethod.Get, path);

    /// <summary>Creates an organization and a team through the API; returns the team id and its first key.</summary>
    public async Task<(string TeamId, string Key)> NewTeamAsync(long credits, string extraTeamFields = "")
    {
        var org = await PostAsync(Admin, "api/organizations/create", $$"""{"name": "org-{{Guid.NewGuid():N}}"}""");
        org.AssertStatus(HttpStatusCode.OK);
        var team = await PostAsync(
            Admin,
            "api/teams/create",
            $$"""{"organization_id": "{{org.Json.GetProperty("organization_id").GetString()}}", "team_alias": "team-{{Guid.NewGuid():N}}", "credits_allocated": {{credits}}{{extraTeamFields}}}""");
        team.AssertStatus(HttpStatusCode.OK);
        return (team.Json.GetProperty("team_id").GetString()!, team.Json.GetProperty("virtual_key").GetString()!);
    }

    /// <summary>A non-streaming chat through <c>/v1</c>.</summary>
    public static Task<ApiResponse> ChatAsync(HttpClient client, string model = "sim-fast", string extra = "") =>
        PostAsync(client, "v1/chat/completions", $$"""{"model": "{{model}}", "messages": [{"role": "user", "content": "Tell me about rivers"}], "max_tokens": 8{{extra}}}""");

    /// <summary>Waits (bounded) until the ledger writer has nothing queued.</summary>
    internal async Task DrainLedgerAsync()
    {
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (Ledger.Queued > 0)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"The usage ledger still has {Ledger.Queued} records queued.");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Waits (bounded) until the team has at least <paramref name="count"/> usage rows; returns them (newest first).</summary>
    internal async Task<IReadOnlyList<UsageEntry>> WaitForUsageAsync(string teamId, int count)
    {
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (true)
        {
            var rows = await Store.ListUsageAsync(teamId, 1000, 0, CancellationToken.None);
            if (rows.Count >= count)
            {
                return rows;
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"Team {teamId} has {rows.Count} usage rows, expected {count}.");
            }

            await Task.Delay(20);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Anonymous.Dispose();
        Admin.Dispose();
        await Gateway.DisposeAsync();
    }
}

/// <summary>A finished API response.</summary>
public sealed record ApiResponse(HttpStatusCode Status, string Body, IReadOnlyDictionary<string, string> Headers)
{
    public JsonElement Json => JsonDocument.Parse(Body).RootElement;

    public JsonElement Error => Json.GetProperty("error");

    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;

    public ApiResponse AssertStatus(HttpStatusCode expected)
    {
        Assert.True(Status == expected, $"Expected {(int)expected}, got {(int)Status}: {Body}");
        return this;
    }

    /// <summary>Asserts an OpenAI-style error with this status, type and code.</summary>
    public ApiResponse AssertError(HttpStatusCode status, string type, string? code = null)
    {
        AssertStatus(status);
        Assert.Equal(type, Error.GetProperty("type").GetString());
        if (code is not null)
        {
            Assert.Equal(code, Error.GetProperty("code").GetString());
        }

        Assert.False(string.IsNullOrWhiteSpace(Error.GetProperty("message").GetString()));
        return this;
    }
}
