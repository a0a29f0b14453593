using System.Data.Common;

namespace Sluice.Storage.Sql;

/// <summary>One versioned schema step: SQL run once, in a transaction, recorded in <c>schema_migrations</c>.</summary>
internal sealed record Migration(int Version, string Name, string Sql);

/// <summary>Applies pending migrations inside a transaction the caller already holds exclusively.</summary>
internal static class MigrationRunner
{
    /// <returns>The schema version and how many steps this call applied.</returns>
    public static async Task<(int Version, int Applied)> ApplyAsync(
        DbConnection connection,
        DbTransaction transaction,
        IReadOnlyList<Migration> migrations,
        string createTableSql,
        DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        await using (var create = Db.Command(connection, transaction, createTableSql))
        {
            await create.ExecuteNonQueryAsync(cancellationToken);
        }

        var applied = new HashSet<long>();
        await using (var read = Db.Command(connection, transaction, "SELECT version FROM schema_migrations"))
        {
            foreach (var version in await read.ListAsync(r => r.Long(0), cancellationToken))
            {
                applied.Add(version);
            }
        }

        var known = migrations.Max(m => m.Version);
        var newest = applied.Count == 0 ? 0 : applied.Max();
        if (newest > known)
        {
            throw new StoreConfigurationException(
                $"The database schema is at version {newest}, newer than this Sluice build knows ({known}); " +
                "run a Sluice version at least as new as the one that upgraded the database.");
        }

        var count = 0;
        foreach (var migration in migrations.OrderBy(m => m.Version))
        {
            if (applied.Contains(migration.Version))
            {
                continue;
            }

            await using (var step = Db.Command(connection, transaction, migration.Sql))
            {
                await step.ExecuteNonQueryAsync(cancellationToken);
            }

            await using var record = Db.Command(
                connection,
                transaction,
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (@v, @n, @t)");
            await record.With("@v", migration.Version).With("@n", migration.Name).With("@t", now)
                .ExecuteNonQueryAsync(cancellationToken);
            count++;
        }

        return (known, count);
    }
}
