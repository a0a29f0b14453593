using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Tenancy;
using Sluice.Providers;

namespace Sluice.Fuzz.Tests;

/// <summary>
/// The gateway under fuzzing: a real one on a Kestrel socket with a master key and a SQLite store, simulated models
/// that answer at once and briefly, and the objects the endpoints' paths name (a team, keys, jobs, sessions, a model
/// group) created through the API. Also reads the store directly, to check that refused requests wrote nothing.
/// </summary>
internal sealed class FuzzGateway : IAsyncDisposable
{
    public const string MasterKey = "fuzz-master-key-0123456789abcdef";

    private readonly string _directory;
    private readonly string _databasePath;

    private readonly Sluice.Testing.ReplayUpstream _anthropic;

    private FuzzGateway(RunningGateway gateway, Sluice.Testing.ReplayUpstream anthropic, string directory, string databasePath)
    {
        Gateway = gateway;
        _anthropic = anthropic;
        _directory = directory;
        _databasePath = databasePath;
        Admin = NewClient(MasterKey);
    }

    public RunningGateway Gateway { get; }

    public Uri BaseAddress => Gateway.BaseAddress;

    /// <summary>The master key's client.</summary>
    public HttpClient Admin { get; }

    /// <summary>Ids the endpoints' paths and bodies refer to (<c>{team}</c>, <c>{job}</c>, …).</summary>
    public Dictionary<string, string> Ids { get; } = new(StringComparer.Ordinal);

    public UsageTotals Totals => Gateway.GetRequiredService<UsageTotals>();

    public LedgerUsageSink Ledger => Gateway.GetRequiredService<LedgerUsageSink>();

    /// <summary>The (method, route pattern) of every endpoint the gateway maps, fallback included.</summary>
    public IReadOnlyList<(string Method, string Pattern)> MappedEndpoints =>
        [.. Gateway.App.Services.GetServices<EndpointDataSource>().SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? ["*"])
                .Select(m => (m, "/" + (e.RoutePattern.RawText ?? string.Empty).TrimStart('/'))))
            .Distinct()];

    public static async Task<FuzzGateway> StartAsync()
    {
        // An Anthropic upstream (the recorded compaction stream), so hostile Anthropic bodies also take the path that
        // sends the client's own body on and passes content blocks back.
        var anthropic = await Sluice.Testing.ReplayUpstream.StartAsync(Sluice.Testing.Fixtures.Read("anthropic/compaction_response.sse"));
        var directory = Path.Combine(Path.GetTempPath(), "sluice-fuzz-" + Guid.NewGuid().ToString("N"));
        var database = Path.Combine(directory, "sluice.db");
        var options = new GatewayOptions
        {
            Port = 0,
            MasterKey = MasterKey,
            Store = "sqlite:" + database,

            // Answers at once and short: the fuzzer is about input handling, not generation.
            Models =
            [
                new ModelOptions { Name = "sim-fast", Provider = "sim", MaxOutputTokens = 64, DefaultAnswerTokens = 6, ContextWindow = 4096 },
                new ModelOptions { Name = "sim-small", Provider = "sim", MaxOutputTokens = 16, DefaultAnswerTokens = 4, ContextWindow = 512 },
                new ModelOptions { Name = "sim-embed", Provider = "sim-embed", EmbeddingDimensions = 16 },
                new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = anthropic.BaseUrl + "/v1", UpstreamModel = "claude-fuzz", MaxAttempts = 1 },
            ],
            Limits = { RequestHeadersTimeoutSeconds = 1, MaxRequestBodyBytes = 1024 * 1024 },
            Tenancy = { UsageFlushDelayMs = 0 },
        };
        options.Streaming.PingIntervalSeconds = 5;
        var gateway = await SluiceGateway.StartAsync(options, configureLogging: logging => logging.SetMinimumLevel(LogLevel.Critical));
        var fuzz = new FuzzGateway(gateway, anthropic, directory, database);
        try
        {
            await fuzz.SeedAsync();
            return fuzz;
        }
        catch
        {
            await fuzz.DisposeAsync();
            throw;
        }
    }

    public HttpClient NewClient(string? key)
    {
        var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(5) })
        {
            BaseAddress = Gateway.BaseAddress,
            Timeout = TimeSpan.FromSeconds(15),
        };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    /// <summary>Row counts of every table a request could write (rate-limit windows and leases excepted).</summary>
    public async Task<string> CountsAsync()
    {
        await using var connection = new SqliteConnection($"Data Source={_databasePath};Mode=ReadOnly;Pooling=True");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText =
            "SELECT (SELECT COUNT(*) FROM organizations), (SELECT COUNT(*) FROM teams), (SELECT COUNT(*) FROM virtual_keys), " +
            "(SELECT COUNT(*) FROM model_groups), (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM job_calls), " +
            "(SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM session_messages), (SELECT COUNT(*) FROM credit_transactions), " +
            "(SELECT COUNT(*) FROM usage_records), (SELECT COUNT(*) FROM virtual_keys WHERE revoked_at_ms IS NOT NULL), " +
            "(SELECT COUNT(*) FROM jobs WHERE status <> 'created'), (SELECT COALESCE(SUM(credits_remaining), 0) FROM teams)";
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        var names = new[] { "organizations", "teams", "keys", "groups", "jobs", "job_calls", "sessions", "messages", "transactions", "usage", "revoked", "finished_jobs", "credits" };
        return string.Join(", ", names.Select((n, i) => $"{n}={reader.GetInt64(i)}"));
    }

    /// <summary>Waits (bounded) until the usage ledger has written everything it was given.</summary>
    public async Task DrainAsync(long requestsBefore, bool expectUsage)
    {
        var deadline = Stopwatch.GetTimestamp() + (5 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if ((!expectUsage || Totals.Requests > requestsBefore) && Ledger.Queued == 0)
            {
                return;
            }

            await Task.Delay(2);
        }
    }

    /// <summary>Waits (bounded) until no usage is being reported or written any more.</summary>
    public async Task SettleAsync()
    {
        var deadline = Stopwatch.GetTimestamp() + (3 * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            var requests = Totals.Requests;
            await Task.Delay(15);
            if (Totals.Requests == requests && Ledger.Queued == 0)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        Admin.Dispose();
        await Gateway.DisposeAsync();
        await _anthropic.DisposeAsync();
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private async Task SeedAsync()
    {
        await PostAsync("api/organizations/create", """{"organization_id": "org_fuzz", "name": "Fuzz"}""");
        await PostAsync("api/model-groups/create", """{"group_name": "fuzz-group", "models": ["sim-fast", "sim-small"]}""");
        var team = await PostAsync(
            "api/teams/create", """{"organization_id": "org_fuzz", "team_id": "team_fuzz", "team_alias": "Fuzzers", "credits_allocated": 1000000, "model_groups": ["fuzz-group", "sim-fast", "sim-small"]}""");
        Ids["team"] = "team_fuzz";
        Ids["teamKey"] = team.GetProperty("virtual_key").GetString()!;

        // A second team whose limits and groups the fuzzer may change without slowing everything else down.
        var victim = await PostAsync("api/teams/create", """{"organization_id": "org_fuzz", "team_id": "team_victim", "team_alias": "Victims", "credits_allocated": 10}""");
        Ids["victim"] = "team_victim";
        Ids["victimKeyId"] = victim.GetProperty("key_id").GetString()!;
        Ids["org"] = "org_fuzz";
        Ids["group"] = "fuzz-group";
        Ids["callJob"] = (await PostAsync("api/jobs/create", """{"team_id": "team_fuzz", "job_type": "fuzz"}""")).GetProperty("job_id").GetString()!;
        Ids["completeJob"] = (await PostAsync("api/jobs/create", """{"team_id": "team_fuzz", "job_type": "fuzz"}""")).GetProperty("job_id").GetString()!;
        Ids["session"] = (await PostAsync("api/sessions", """{"title": "fuzz", "model": "sim-fast"}""")).GetProperty("id").GetString()!;
        Ids["deleteSession"] = (await PostAsync("api/sessions", """{"title": "fuzz-delete"}""")).GetProperty("id").GetString()!;
        Ids["stream"] = "strm_" + new string('0', 32);
        Ids["response"] = (await PostAsync("v1/responses", """{"model": "sim-fast", "input": "Tell me about rivers", "max_output_tokens": 5}""")).GetProperty("id").GetString()!;
        Ids["deleteResponse"] = (await PostAsync("v1/responses", """{"model": "sim-fast", "input": "Tell me about lakes", "max_output_tokens": 5}""")).GetProperty("id").GetString()!;
    }

    private async Task<JsonElement> PostAsync(string path, string json)
    {
        using var response = await Admin.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Seeding {path} failed: {(int)response.StatusCode} {text}");
        }

        return JsonDocument.Parse(text).RootElement.Clone();
    }
}
