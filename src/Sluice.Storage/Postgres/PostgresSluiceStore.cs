using System.Data;
using System.Data.Common;
using Npgsql;
using Sluice.Storage.Sql;

namespace Sluice.Storage.Postgres;

/// <summary>
/// The PostgreSQL store, for several gateway processes sharing one database. Write transactions run at READ
/// COMMITTED; atomicity comes from conditional UPDATEs and UPSERTs, which lock the row they change and re-check
/// their condition against the latest committed version, and from transaction-scoped advisory locks where a
/// row to lock may not exist yet (concurrency slots). Migrations run under a session advisory lock.
/// </summary>
internal sealed class PostgresSluiceStore : SqlSluiceStore
{
    // Advisory lock keys: "Sluice" in ASCII, beyond the int4 range so it cannot meet the two-key form below.
    private const long MigrationLockKey = 0x536C75696365;
    private const int ConcurrencyLockClass = 0x51CE;
    private const int MaxAttempts = 5;

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _description;

    private PostgresSluiceStore(NpgsqlConnectionStringBuilder builder, SluiceStoreOptions options)
        : base(options)
    {
        _description = $"postgresql://{builder.Host}:{builder.Port}/{builder.Database}";
        _dataSource = new NpgsqlDataSourceBuilder(builder.ConnectionString).Build();
    }

    /// <inheritdoc />
    public override string Description => _description;

    public static async Task<PostgresSluiceStore> OpenAsync(NpgsqlConnectionStringBuilder builder, SluiceStoreOptions options, CancellationToken cancellationToken)
    {
        var store = new PostgresSluiceStore(builder, options);
        try
        {
            await store.MigrateAsync(cancellationToken);
            return store;
        }
        catch
        {
            await store.DisposeAsync();
            throw;
        }
    }

    private async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using var c = await _dataSource.OpenConnectionAsync(cancellationToken);

        // A second process starting at the same time waits here until the first has committed every step.
        await using (var gate = Db.Command(c, null, "SELECT pg_advisory_lock(@key)"))
        {
            await gate.With("@key", MigrationLockKey).ExecuteNonQueryAsync(cancellationToken);
        }

        try
        {
            await using var tx = await c.BeginTransactionAsync(cancellationToken);
            SchemaVersion = await MigrationRunner.ApplyAsync(c, tx, PostgresMigrations.All, PostgresMigrations.CreateTable, Now, cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        finally
        {
            await using var release = Db.Command(c, null, "SELECT pg_advisory_unlock(@key)");
            await release.With("@key", MigrationLockKey).ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) =>
        await _dataSource.OpenConnectionAsync(cancellationToken);

    protected override async Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var c = await _dataSource.OpenConnectionAsync(cancellationToken);
                await using var tx = await c.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken);
                var result = await work(c, tx);
                await tx.CommitAsync(cancellationToken);
                return result;
            }
            catch (PostgresException ex) when (attempt < MaxAttempts && ex.SqlState is PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure)
            {
                // The whole transaction was rolled back; running it again is safe.
            }
        }
    }

    protected override async Task LockConcurrencyKeyAsync(DbConnection connection, DbTransaction transaction, string key, CancellationToken cancellationToken)
    {
        // No row may exist yet for this key, so lock the key itself until the transaction ends.
        await using var command = Db.Command(connection, transaction, "SELECT pg_advisory_xact_lock(@class, hashtext(@key))");
        command.With("@key", key);
        command.Parameters.Add(new NpgsqlParameter<int>("class", ConcurrencyLockClass));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    protected override bool IsUniqueViolation(DbException exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    /// <inheritdoc />
    public override ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
