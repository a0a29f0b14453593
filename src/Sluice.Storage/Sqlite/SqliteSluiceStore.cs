using System.Buffers;
using System.Data.Common;
using System.Globalization;
using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;
using Sluice.Storage.Sql;

namespace Sluice.Storage.Sqlite;

/// <summary>
/// The default store: one SQLite file in WAL mode (readers never block the writer). Writes use
/// <c>BEGIN IMMEDIATE</c> so a transaction takes the write lock before reading what it depends on, which makes
/// every read-then-write atomic across threads and processes; <c>busy_timeout</c> makes other processes wait
/// for the lock instead of failing.
/// </summary>
internal sealed class SqliteSluiceStore : SqlSluiceStore
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private static int s_nativeReady;

    private readonly string _connectionString;
    private readonly string _pragmas;

    // Writers in this process queue here asynchronously rather than spinning in SQLite's busy handler on
    // thread-pool threads (Microsoft.Data.Sqlite's async methods run synchronously). Other processes are
    // still serialized by the database lock itself.
    private readonly SemaphoreSlim _writeGate = new(1, 1);

    private SqliteSluiceStore(string path, SluiceStoreOptions options)
        : base(options)
    {
        Path = path;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = (int)Math.Ceiling(options.SqliteBusyTimeout.TotalSeconds),
        }.ToString();
        _pragmas = string.Create(
            CultureInfo.InvariantCulture,
            $"PRAGMA busy_timeout = {(long)options.SqliteBusyTimeout.TotalMilliseconds}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;");
    }

    /// <summary>The database file.</summary>
    public string Path { get; }

    /// <summary>
    /// The usage ledger's rows (one per call) through SQLite's own API: the same prepared single-row statement, bound by
    /// index in the connection's transaction. Microsoft.Data.Sqlite made a binder object per parameter and boxed every
    /// number, per row: 11 binders and ~0.6 KB per call in the gateway's busiest background write.
    /// </summary>
    private protected override Task InsertUsageRowsOneByOneAsync(
        DbConnection c, DbTransaction tx, IReadOnlyList<UsageEntry> entries, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var db = ((SqliteConnection)c).Handle!;
        Check(db, raw.sqlite3_prepare_v2(db, UsageInsertSql(1), out var insert));
        using (insert)
        {
            Span<byte> scratch = stackalloc byte[256];
            foreach (var entry in entries)
            {
                cancellationToken.ThrowIfCancellationRequested();

                // Indexes follow the columns of UsageInsertSql: team, key, job, request, model, prompt, completion,
                // ttft, duration, status, created at.
                BindText(insert, 1, entry.TeamId, scratch);
                BindText(insert, 2, entry.KeyId, scratch);
                BindText(insert, 3, entry.JobId, scratch);
                BindText(insert, 4, entry.RequestId, scratch);
                BindText(insert, 5, entry.Model, scratch);
                raw.sqlite3_bind_int64(insert, 6, entry.PromptTokens);
                raw.sqlite3_bind_int64(insert, 7, entry.CompletionTokens);
                if (entry.TimeToFirstToken is { } ttft)
                {
                    raw.sqlite3_bind_double(insert, 8, ttft.TotalMilliseconds);
                }
                else
                {
                    raw.sqlite3_bind_null(insert, 8);
                }

                raw.sqlite3_bind_double(insert, 9, entry.Duration.TotalMilliseconds);
                BindText(insert, 10, Codes.Of(entry.Status), scratch);
                raw.sqlite3_bind_int64(insert, 11, Db.ToMs(entry.CreatedAt == default ? now : entry.CreatedAt));
                var step = raw.sqlite3_step(insert);
                raw.sqlite3_reset(insert);
                if (step != raw.SQLITE_DONE)
                {
                    Check(db, step);
                }
            }
        }

        return Task.CompletedTask;
    }

    private static void BindText(sqlite3_stmt statement, int index, string? value, Span<byte> scratch)
    {
        if (value is null)
        {
            raw.sqlite3_bind_null(statement, index);
            return;
        }

        // SQLite copies the bytes (SQLITE_TRANSIENT), so a scratch buffer serves every parameter.
        var length = Encoding.UTF8.GetMaxByteCount(value.Length) <= scratch.Length ? Encoding.UTF8.GetBytes(value, scratch) : -1;
        if (length >= 0)
        {
            raw.sqlite3_bind_text(statement, index, scratch[..length]);
            return;
        }

        var rented = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetByteCount(value));
        try
        {
            raw.sqlite3_bind_text(statement, index, rented.AsSpan(0, Encoding.UTF8.GetBytes(value, rented)));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static void Check(sqlite3 db, int result)
    {
        if (result is not raw.SQLITE_OK and not raw.SQLITE_DONE and not raw.SQLITE_ROW)
        {
            throw new SqliteException(raw.sqlite3_errmsg(db).utf8_to_string(), result);
        }
    }

    /// <inheritdoc />
    public override string Description => "sqlite:" + Path;

    public static async Task<SqliteSluiceStore> OpenAsync(string path, SluiceStoreOptions options, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref s_nativeReady, 1) == 0)
        {
            SQLitePCL.Batteries_V2.Init();
        }

        var full = System.IO.Path.GetFullPath(path);
        PrepareFile(full);

        var store = new SqliteSluiceStore(full, options);
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

    /// <summary>
    /// The database holds key hashes, balances and every conversation: only its owner may read it. A folder Sluice creates
    /// is 0700 and the file 0600 before SQLite first opens it (SQLite gives its -wal and -shm files the same mode); an
    /// existing file, or -wal/-shm file, that others may read is narrowed to its owner. An existing folder is left as it
    /// is: it may be the operator's own (a home directory).
    /// </summary>
    private static void PrepareFile(string full)
    {
        var directory = System.IO.Path.GetDirectoryName(full);
        if (OperatingSystem.IsWindows())
        {
            if (!string.IsNullOrEmpty(directory))
            {
                Directory.CreateDirectory(directory);
            }

            return;
        }

        if (!string.IsNullOrEmpty(directory) && !Directory.Exists(directory))
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        try
        {
            // An empty file is an empty SQLite database; creating it here is what fixes its mode.
            using var created = new FileStream(full, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = OwnerOnly,
            });
        }
        catch (IOException) when (File.Exists(full))
        {
            // It exists (or another process created it first).
        }

        foreach (var file in new[] { full, full + "-wal", full + "-shm" })
        {
            if (File.Exists(file) && (File.GetUnixFileMode(file) & ~OwnerOnly) != 0)
            {
                File.SetUnixFileMode(file, File.GetUnixFileMode(file) & OwnerOnly);
            }
        }
    }

    private async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken);
        try
        {
            await using var c = await OpenConnectionAsync(cancellationToken);

            // Persistent in the file; switching needs a moment of exclusive access, which busy_timeout waits for.
            await using (var wal = Db.Command(c, null, "PRAGMA journal_mode = WAL"))
            {
                await wal.ExecuteScalarAsync(cancellationToken);
            }

            // BEGIN IMMEDIATE: a second process starting at the same moment waits here, then sees the versions
            // recorded by the first and applies nothing.
            await using var tx = (SqliteTransaction)await c.BeginTransactionAsync(cancellationToken);
            (SchemaVersion, MigrationsApplied) = await MigrationRunner.ApplyAsync(c, tx, SqliteMigrations.All, SqliteMigrations.CreateTable, Now, cancellationToken);
            await tx.CommitAsync(cancellationToken);
        }
        finally
        {
            _writeGate.Release();
        }
    }

    protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            await using var pragmas = Db.Command(connection, null, _pragmas);
            await pragmas.ExecuteNonQueryAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    protected override async Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken);
        try
        {
            await using var c = await OpenConnectionAsync(cancellationToken);

            // Microsoft.Data.Sqlite starts a non-deferred transaction with BEGIN IMMEDIATE.
            await using var tx = ((SqliteConnection)c).BeginTransaction(deferred: false);
            var result = await work(c, tx);
            await tx.CommitAsync(cancellationToken);
            return result;
        }
        finally
        {
            _writeGate.Release();
        }
    }

    /// <inheritdoc />
    protected override bool InsertsRowsOneByOne => true;

    protected override Task LockConcurrencyKeyAsync(DbConnection connection, DbTransaction transaction, string key, CancellationToken cancellationToken) =>
        Task.CompletedTask; // BEGIN IMMEDIATE already made this the only writer.

    protected override bool IsUniqueViolation(DbException exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 2067 or 1555 };

    /// <inheritdoc />
    public override ValueTask DisposeAsync()
    {
        // Close this file's pooled connections so the file can be reopened, moved or deleted right away.
        using (var connection = new SqliteConnection(_connectionString))
        {
            SqliteConnection.ClearPool(connection);
        }

        _writeGate.Dispose();
        return ValueTask.CompletedTask;
    }
}
