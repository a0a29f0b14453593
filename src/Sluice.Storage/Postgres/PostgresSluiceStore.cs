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
internal sealed class PostgresSluiceStore : SqlSluiceStore, IClusterStore
{
    /// <summary>The channel of <see cref="StoreChange"/> notifications.</summary>
    internal const string ChangesChannel = "sluice_changes";

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
            (SchemaVersion, MigrationsApplied) = await MigrationRunner.ApplyAsync(c, tx, PostgresMigrations.All, PostgresMigrations.CreateTable, Now, cancellationToken);
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

    protected override async Task NotifyAsync(DbConnection connection, DbTransaction transaction, StoreChange change, CancellationToken cancellationToken)
    {
        // pg_notify in the writing transaction: listeners hear of it on commit, never of a rolled-back change.
        await using var notify = Db.Command(connection, transaction, "SELECT pg_notify('" + ChangesChannel + "', @payload)");
        await notify.With("@payload", change.Encode()).ExecuteNonQueryAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task RegisterInstanceAsync(string instanceId, Uri internalUrl, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(internalUrl);
        return WriteAsync(
            async (c, tx) =>
            {
                await using var upsert = Db.Command(
                    c,
                    tx,
                    "INSERT INTO gateway_instances (id, internal_url, started_at_ms, heartbeat_at_ms) VALUES (@id, @url, @now, @now) " +
                    "ON CONFLICT (id) DO UPDATE SET internal_url = excluded.internal_url, heartbeat_at_ms = excluded.heartbeat_at_ms");
                await upsert.With("@id", instanceId).With("@url", internalUrl.ToString()).With("@now", Now).ExecuteNonQueryAsync(cancellationToken);

                // Instances gone for a day are forgotten (nothing can still point at them).
                await using var prune = Db.Command(c, tx, "DELETE FROM gateway_instances WHERE heartbeat_at_ms < @old");
                await prune.With("@old", Now - TimeSpan.FromDays(1)).ExecuteNonQueryAsync(cancellationToken);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> HeartbeatAsync(string instanceId, CancellationToken cancellationToken)
    {
        await using var c = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var update = Db.Command(c, null, "UPDATE gateway_instances SET heartbeat_at_ms = @now WHERE id = @id");
        return await update.With("@now", Now).With("@id", instanceId).ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    /// <inheritdoc />
    public async Task RemoveInstanceAsync(string instanceId, CancellationToken cancellationToken)
    {
        await using var c = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var delete = Db.Command(c, null, "DELETE FROM gateway_instances WHERE id = @id");
        await delete.With("@id", instanceId).ExecuteNonQueryAsync(cancellationToken);
    }

    /// <inheritdoc />
    public async Task<GatewayInstance?> GetInstanceAsync(string instanceId, CancellationToken cancellationToken)
    {
        await using var c = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, "SELECT id, internal_url, started_at_ms, heartbeat_at_ms FROM gateway_instances WHERE id = @id");
        return await select.With("@id", instanceId).SingleOrDefaultAsync(
            r => new GatewayInstance(r.GetString(0), new Uri(r.GetString(1)), r.Time(2), r.Time(3)),
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task ListenAsync(Action<StoreChange> changed, Action listening, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(changed);
        ArgumentNullException.ThrowIfNull(listening);

        // A connection of its own for as long as it listens (a pooled one would be reset, and its LISTEN with it).
        await using var c = _dataSource.CreateConnection();
        await c.OpenAsync(cancellationToken);
        c.Notification += (_, e) =>
        {
            if (StoreChange.Decode(e.Payload) is { } change)
            {
                changed(change);
            }
        };
        await using (var listen = Db.Command(c, null, "LISTEN " + ChangesChannel))
        {
            await listen.ExecuteNonQueryAsync(cancellationToken);
        }

        listening();
        while (true)
        {
            // A quiet connection is probed now and then, so one that died is noticed (and re-opened by the caller).
            if (!await c.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken))
            {
                await using var probe = Db.Command(c, null, "SELECT 1");
                await probe.ExecuteNonQueryAsync(cancellationToken);
            }
        }
    }

    protected override bool IsUniqueViolation(DbException exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    /// <inheritdoc />
    public override ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
