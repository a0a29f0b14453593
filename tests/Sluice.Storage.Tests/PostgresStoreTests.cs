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
}
