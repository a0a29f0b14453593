using System.Diagnostics;
using Npgsql;

namespace Sluice.Storage.Tests;

/// <summary>
/// The conformance suite on PostgreSQL. <c>SLUICE_TEST_POSTGRES</c> holds an admin connection string (set by
/// <c>scripts/test.sh</c>, which starts a throwaway server); every test creates and drops its own databases.
/// </summary>
public sealed class PostgresStoreTests : StoreConformanceTests
{
    private readonly List<string> _databases = [];

    private static string AdminConnectionString()
    {
        var admin = Environment.GetEnvironmentVariable("SLUICE_TEST_POSTGRES");
        if (string.IsNullOrWhiteSpace(admin))
        {
            throw new InvalidOperationException(
                "SLUICE_TEST_POSTGRES is not set, so the PostgreSQL store cannot be tested. Run the tests with " +
                "`bash scripts/test.sh`, which installs PostgreSQL if needed and starts a throwaway server, or set " +
                "SLUICE_TEST_POSTGRES to an admin connection string such as 'Host=127.0.0.1;Port=5432;Username=postgres;Database=postgres'.");
        }

        return admin;
    }

    protected override async Task<string> CreateDatabaseAsync()
    {
        var admin = AdminConnectionString();
        var name = "sluice_test_" + Guid.NewGuid().ToString("N");
        await using (var connection = new NpgsqlConnection(admin))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync();
        }

        lock (_databases)
        {
            _databases.Add(name);
        }

        // A modest pool per store: several stores per test share one test server.
        return new NpgsqlConnectionStringBuilder(admin) { Database = name, MaxPoolSize = 30 }.ConnectionString;
    }

    protected override async Task DropDatabasesAsync()
    {
        if (_databases.Count == 0)
        {
            return;
        }

        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(AdminConnectionString());
        await connection.OpenAsync();
        foreach (var name in _databases)
        {
            await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", connection);
            await command.ExecuteNonQueryAsync();
        }
    }

    protected override async Task<List<object?[]>> QueryRawAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return await ReadAllAsync(command);
    }

    [Fact]
    public void Description_names_host_and_database_but_not_the_password()
    {
        var builder = new NpgsqlConnectionStringBuilder(ConnectionString);
        Assert.StartsWith("postgresql://", Store.Description, StringComparison.Ordinal);
        Assert.Contains(builder.Database!, Store.Description, StringComparison.Ordinal);
        if (!string.IsNullOrEmpty(builder.Password))
        {
            Assert.DoesNotContain(builder.Password, Store.Description, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Postgres_url_form_opens_the_same_database()
    {
        var builder = new NpgsqlConnectionStringBuilder(ConnectionString);
        var user = Uri.EscapeDataString(builder.Username ?? "postgres");
        var password = string.IsNullOrEmpty(builder.Password) ? "" : ":" + Uri.EscapeDataString(builder.Password);
        var url = $"postgres://{user}{password}@{builder.Host}:{builder.Port}/{builder.Database}";
        var org = await Store.CreateOrganizationAsync("url-form", CancellationToken.None);

        await using var viaUrl = await SluiceStoreFactory.OpenAsync(url, new SluiceStoreOptions { TimeProvider = Clock });
        Assert.Equal(org, await viaUrl.GetOrganizationAsync(org.Id, CancellationToken.None));
    }

    [Fact]
    public async Task A_usage_batch_goes_to_PostgreSQL_in_a_few_statements_not_one_per_record()
    {
        // One INSERT round trip per record made the ledger slower than the gateway streams (100,000-stream soak).
        var teamId = (await NewTeamAsync(1)).Team.Id;
        var database = new NpgsqlConnectionStringBuilder(ConnectionString).Database!;
        var inserts = 0;
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name.StartsWith("Npgsql", StringComparison.Ordinal),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                var tags = activity.TagObjects.Select(t => t.Value?.ToString() ?? "").ToList();
                if (tags.Any(t => t.Contains("INSERT INTO usage_records", StringComparison.Ordinal)) && tags.Any(t => t.Contains(database, StringComparison.Ordinal)))
                {
                    Interlocked.Increment(ref inserts);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        var batch = Enumerable.Range(0, 500).Select(i => new UsageEntry
        {
            TeamId = teamId, Model = "sim-fast", RequestId = "req-" + i, PromptTokens = 1, CompletionTokens = 2, Duration = TimeSpan.FromMilliseconds(3), Status = CallStatus.Completed,
        }).ToList();
        await Store.AppendUsageBatchAsync(batch, CancellationToken.None);

        Assert.Equal(500, (await Store.ListUsageAsync(teamId, 1000, 0, CancellationToken.None)).Count);
        Assert.InRange(inserts, 1, 10);
    }
}
