using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace Sluice.Cli.Tests.ScaleOut;

/// <summary>
/// Three real <c>sluice serve</c> processes on one new PostgreSQL database (started at the same moment on the empty
/// database), and nginx round-robin in front of them. Each instance keeps its port, so a test may stop one and start
/// it again behind the same proxy.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public const string MasterKey = "sk-master-scaleout-tests";
    public const int Size = 3;

    /// <summary>Shutdown grace of the instances (short, so the drain test is quick).</summary>
    public const double GraceSeconds = 3;

    private string _database = string.Empty;
    private string _admin = string.Empty;

    internal ServeProcess[] Instances { get; } = new ServeProcess[Size];

    public int[] Ports { get; } = new int[Size];

    /// <summary>What each instance logged up to its first start's listening line (for the migration test).</summary>
    public string[] FirstStartLogs { get; } = new string[Size];

    public string ConnectionString { get; private set; } = string.Empty;

    internal NginxProcess Nginx { get; private set; } = null!;

    public Uri Balancer => Nginx.Address;

    public async Task InitializeAsync()
    {
        NginxProcess.Binary();
        _admin = Environment.GetEnvironmentVariable("SLUICE_TEST_POSTGRES") is { Length: > 0 } admin
            ? admin
            : throw new InvalidOperationException(
                "SLUICE_TEST_POSTGRES is not set, so the scale-out tests have no PostgreSQL. Run them with `bash scripts/test.sh` (it starts a throwaway one), " +
                "or set SLUICE_TEST_POSTGRES to an admin connection string such as 'Host=127.0.0.1;Port=5432;Username=postgres;Database=postgres'.");
        _database = "sluice_scaleout_" + Guid.NewGuid().ToString("N")[..12];
        await ExecuteAsync(_admin, $"CREATE DATABASE {_database}");
        ConnectionString = new NpgsqlConnectionStringBuilder(_admin) { Database = _database }.ConnectionString;

        for (var i = 0; i < Size; i++)
        {
            Ports[i] = NginxProcess.FreePort();
        }

        // All three at the same moment, on the empty database.
        await Task.WhenAll(Enumerable.Range(0, Size).Select(async i =>
        {
            Instances[i] = await StartInstanceAsync(i);
            FirstStartLogs[i] = Instances[i].Log;
        }));
        Nginx = await NginxProcess.StartAsync(Ports);
    }

    /// <summary>Starts instance <paramref name="index"/> on its port (again, after a test stopped it).</summary>
    internal Task<ServeProcess> StartInstanceAsync(int index) => ServeProcess.StartAsync(
        [],
        new Dictionary<string, string>
        {
            ["SLUICE_Store"] = ConnectionString,
            ["SLUICE_MASTER_KEY"] = MasterKey,
            ["SLUICE_Streaming__PingIntervalSeconds"] = "1",
            ["SLUICE_Streaming__ShutdownGraceSeconds"] = GraceSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),

            // Long on purpose: changes must reach the other instances through notifications, not through expiry.
            ["SLUICE_Tenancy__KeyCacheSeconds"] = "60",
        },
        port: Ports[index]);

    /// <summary>Restarts instance <paramref name="index"/> after a test stopped or killed it.</summary>
    public async Task RestartAsync(int index)
    {
        await Instances[index].DisposeAsync();
        Instances[index] = await StartInstanceAsync(index);
    }

    public Uri Direct(int index) => new($"http://127.0.0.1:{Ports[index]}/");

    public static HttpClient Client(Uri address, string? key = MasterKey)
    {
        var client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    /// <summary>The instance id of instance <paramref name="index"/> (from <c>/health/ready</c>).</summary>
    public async Task<string> InstanceIdAsync(int index)
    {
        using var client = Client(Direct(index), key: null);
        var ready = JsonDocument.Parse(await client.GetStringAsync(new Uri("health/ready", UriKind.Relative)));
        return ready.RootElement.GetProperty("instance").GetString()!;
    }

    /// <summary>The instance whose id ends <paramref name="streamId"/>.</summary>
    public async Task<int> OwnerOfAsync(string streamId)
    {
        for (var i = 0; i < Size; i++)
        {
            if (streamId.EndsWith("_" + await InstanceIdAsync(i), StringComparison.Ordinal))
            {
                return i;
            }
        }

        throw new InvalidOperationException($"No instance owns {streamId}.");
    }

    /// <summary>A new team (through <paramref name="via"/>) with its first key.</summary>
    public static async Task<(string TeamId, string Key)> NewTeamAsync(Uri via, long credits, string extra = "")
    {
        using var admin = Client(via);
        var org = await PostJsonAsync(admin, "api/organizations/create", $$"""{"name": "org-{{Guid.NewGuid():N}}"}""");
        var team = await PostJsonAsync(
            admin,
            "api/teams/create",
            $$"""{"organization_id": "{{org.GetProperty("organization_id").GetString()}}", "team_alias": "team-{{Guid.NewGuid():N}}", "credits_allocated": {{credits}}{{extra}}}""");
        return (team.GetProperty("team_id").GetString()!, team.GetProperty("virtual_key").GetString()!);
    }

    public static async Task<JsonElement> PostJsonAsync(HttpClient client, string path, string json, HttpMethod? method = null)
    {
        using var request = new HttpRequestMessage(method ?? HttpMethod.Post, new Uri(path, UriKind.Relative)) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<(int Status, string Body)> ChatAsync(HttpClient client, string model = "sim-fast")
    {
        using var content = new StringContent($$"""{"model": "{{model}}", "messages": [{"role": "user", "content": "Tell me about rivers"}], "max_tokens": 4}""", Encoding.UTF8, "application/json");
        using var response = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), content);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; the time it took (fails after <paramref name="limit"/>).</summary>
    public static async Task<TimeSpan> WaitUntilAsync(Func<Task<bool>> condition, TimeSpan limit, string what)
    {
        var started = Stopwatch.GetTimestamp();
        while (!await condition())
        {
            if (Stopwatch.GetElapsedTime(started) > limit)
            {
                throw new TimeoutException($"{what}: not within {limit.TotalSeconds} s.");
            }

            await Task.Delay(20);
        }

        return Stopwatch.GetElapsedTime(started);
    }

    public async Task<List<object?[]>> QueryAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<object?[]>();
        while (await reader.ReadAsync())
        {
            var row = new object?[reader.FieldCount];
            reader.GetValues(row!);
            rows.Add(row);
        }

        return rows;
    }

    public async Task DisposeAsync()
    {
        if (Nginx is not null)
        {
            await Nginx.DisposeAsync();
        }

        foreach (var instance in Instances)
        {
            if (instance is not null)
            {
                await instance.DisposeAsync();
            }
        }

        if (_database.Length > 0)
        {
            NpgsqlConnection.ClearAllPools();
            await ExecuteAsync(_admin, $"DROP DATABASE IF EXISTS {_database} WITH (FORCE)");
        }
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
