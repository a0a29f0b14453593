using Microsoft.Data.Sqlite;
using Npgsql;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>Fresh, isolated databases of one kind for a test; dropped when the test ends.</summary>
public abstract class TestDatabases : IAsyncDisposable
{
    /// <summary>A new empty database's <c>Store</c> connection string.</summary>
    public abstract Task<string> CreateAsync();

    public abstract ValueTask DisposeAsync();
}

public sealed class SqliteDatabases : TestDatabases
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "sluice-tenancy-" + Guid.NewGuid().ToString("N"));
    private int _count;

    public override Task<string> CreateAsync() =>
        Task.FromResult("sqlite:" + Path.Combine(_directory, $"db{Interlocked.Increment(ref _count)}", "sluice.db"));

    public override ValueTask DisposeAsync()
    {
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Databases on the PostgreSQL server named by <c>SLUICE_TEST_POSTGRES</c> (set by <c>scripts/test.sh</c>).
/// Without it the tests fail: PostgreSQL behaviour is part of what they check.
/// </summary>
public sealed class PostgresDatabases : TestDatabases
{
    private readonly List<string> _names = [];

    public static string Admin()
    {
        var admin = Environment.GetEnvironmentVariable("SLUICE_TEST_POSTGRES");
        if (string.IsNullOrWhiteSpace(admin))
        {
            throw new InvalidOperationException(
                "SLUICE_TEST_POSTGRES is not set, so the gateway cannot be tested on PostgreSQL. Run the tests with `bash scripts/test.sh` " +
                "(it starts a throwaway PostgreSQL), or set SLUICE_TEST_POSTGRES to an admin connection string such as " +
                "'Host=127.0.0.1;Port=5432;Username=postgres;Database=postgres'.");
        }

        return admin;
    }

    public override async Task<string> CreateAsync()
    {
        var admin = Admin();
        var name = "sluice_gw_" + Guid.NewGuid().ToString("N");
        await using (var connection = new NpgsqlConnection(admin))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync();
        }

        lock (_names)
        {
            _names.Add(name);
        }

        // A modest pool per gateway: several gateways and test projects share one test server.
        return new NpgsqlConnectionStringBuilder(admin) { Database = name, MaxPoolSize = 20 }.ConnectionString;
    }

    public override async ValueTask DisposeAsync()
    {
        if (_names.Count == 0)
        {
            return;
        }

        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(Admin());
        await connection.OpenAsync();
        foreach (var name in _names)
        {
            await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", connection);
            await command.ExecuteNonQueryAsync();
        }
    }
}

/// <summary>The system clock shifted by an adjustable offset (the gateway's store, key expiry and rate windows use it).</summary>
public sealed class ShiftedTime : TimeProvider
{
    private long _offsetTicks;

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow().AddTicks(Interlocked.Read(ref _offsetTicks));

    public void Advance(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);

    /// <summary>Shifts the clock so that it now reads one second past the start of a minute: a whole rate window ahead.</summary>
    public void AlignToMinuteStart()
    {
        var now = GetUtcNow();
        var intoMinute = TimeSpan.FromTicks(now.Ticks % TimeSpan.TicksPerMinute);
        Advance(TimeSpan.FromMinutes(1) - intoMinute + TimeSpan.FromSeconds(1));
    }
}
