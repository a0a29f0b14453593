using Microsoft.Data.Sqlite;

namespace Sluice.Storage.Tests;

/// <summary>The conformance suite on SQLite: every test gets its own temporary directory and database file.</summary>
public sealed class SqliteStoreTests : StoreConformanceTests
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "sluice-store-" + Guid.NewGuid().ToString("N"));
    private int _databases;

    protected override Task<string> CreateDatabaseAsync()
    {
        Directory.CreateDirectory(_directory);
        var path = Path.Combine(_directory, $"db{Interlocked.Increment(ref _databases)}", "sluice.db");
        return Task.FromResult("sqlite:" + path);
    }

    protected override Task DropDatabasesAsync()
    {
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }

        return Task.CompletedTask;
    }

    protected override async Task<List<object?[]>> QueryRawAsync(string connectionString, string sql)
    {
        SQLitePCL.Batteries_V2.Init();
        await using var connection = new SqliteConnection("Data Source=" + connectionString["sqlite:".Length..] + ";Pooling=False");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return await ReadAllAsync(command);
    }

    [Fact]
    public async Task Non_deferred_transactions_take_the_write_lock_up_front()
    {
        // The store's read-then-write transactions rely on Microsoft.Data.Sqlite issuing BEGIN IMMEDIATE for
        // BeginTransaction(deferred: false): a second writer must be refused before the first has written anything.
        var path = ConnectionString["sqlite:".Length..];
        await using var first = new SqliteConnection($"Data Source={path};Pooling=False");
        await using var second = new SqliteConnection($"Data Source={path};Pooling=False;Default Timeout=1");
        await first.OpenAsync();
        await second.OpenAsync();
        await using var held = first.BeginTransaction(deferred: false);

        await using var busy = second.CreateCommand();
        busy.CommandText = "PRAGMA busy_timeout = 0";
        await busy.ExecuteNonQueryAsync();
        busy.CommandText = "BEGIN IMMEDIATE";
        var error = await Assert.ThrowsAsync<SqliteException>(() => busy.ExecuteNonQueryAsync());
        Assert.Equal(5, error.SqliteErrorCode); // SQLITE_BUSY
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Only_the_owner_may_read_the_database_its_wal_and_the_folder_created_for_it()
    {
        const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var path = ConnectionString["sqlite:".Length..];
        await Store.CreateOrganizationAsync("perm-check", CancellationToken.None);
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(path));
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(path + "-wal"));
        Assert.Equal(OwnerOnly | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(path)!));

        // A database made world-readable before (an older version, a copy) is narrowed when it is opened.
        var loose = Path.Combine(_directory, "loose", "sluice.db");
        await using (var first = await SluiceStoreFactory.OpenAsync("sqlite:" + loose))
        {
            await first.CreateOrganizationAsync("x", CancellationToken.None);
        }

        File.SetUnixFileMode(loose, OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        await using (await SluiceStoreFactory.OpenAsync("sqlite:" + loose))
        {
            Assert.Equal(OwnerOnly, File.GetUnixFileMode(loose));
        }
    }

    [Fact]
    public async Task Database_is_a_file_in_wal_mode()
    {
        var rows = await QueryRawAsync(ConnectionString, "PRAGMA journal_mode");
        Assert.Equal("wal", Assert.Single(rows)[0]);
        Assert.True(File.Exists(ConnectionString["sqlite:".Length..]));
        Assert.StartsWith("sqlite:", Store.Description, StringComparison.Ordinal);
    }
}
