using System.Data.Common;
using Npgsql;
using Sluice.Storage.Postgres;
using Sluice.Storage.Sqlite;

namespace Sluice.Storage;

/// <summary>Opens the store named by the <c>Store</c> connection string and brings its schema up to date.</summary>
public static class SluiceStoreFactory
{
    /// <summary>The formats accepted, for error messages and help text.</summary>
    public const string Formats =
        "use 'sqlite:PATH' or 'Data Source=PATH' for SQLite, or 'Host=HOST;Port=5432;Database=DB;Username=USER;Password=SECRET' " +
        "or 'postgres://USER:SECRET@HOST:5432/DB' for PostgreSQL";

    /// <summary>The default connection string: a SQLite file <c>sluice.db</c> in <paramref name="dataDirectory"/>.</summary>
    public static string DefaultConnectionString(string dataDirectory) => "sqlite:" + Path.Combine(dataDirectory, "sluice.db");

    /// <summary>
    /// Opens the store and applies pending migrations (safe when several processes start at once).
    /// <c>sqlite:PATH</c> and <c>Data Source=PATH</c> open SQLite; <c>Host=…</c>, <c>postgres://…</c> and
    /// <c>postgresql://…</c> open PostgreSQL. Throws <see cref="StoreConfigurationException"/> for anything else.
    /// </summary>
    public static async Task<ISluiceStore> OpenAsync(string connectionString, SluiceStoreOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new SluiceStoreOptions();
        var target = Parse(connectionString);
        return target.SqlitePath is { } path
            ? await SqliteSluiceStore.OpenAsync(path, options, cancellationToken)
            : await PostgresSluiceStore.OpenAsync(target.Postgres!, options, cancellationToken);
    }

    /// <summary>Which implementation a connection string selects; never echoes the string (it may hold a password).</summary>
    internal static StoreTarget Parse(string connectionString)
    {
        var text = connectionString?.Trim() ?? "";
        if (text.Length == 0)
        {
            throw Unrecognized("is empty");
        }

        if (text.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            return SqliteTarget(text["sqlite:".Length..]);
        }

        if (text.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            return new StoreTarget(null, FromUrl(text));
        }

        var pairs = new DbConnectionStringBuilder();
        try
        {
            pairs.ConnectionString = text;
        }
        catch (ArgumentException)
        {
            throw Unrecognized("is not in a known format");
        }

        if (pairs.ContainsKey("Host") || pairs.ContainsKey("Server"))
        {
            try
            {
                return new StoreTarget(null, new NpgsqlConnectionStringBuilder(text));
            }
            catch (ArgumentException ex)
            {
                // Npgsql names the unknown keyword, never a value.
                throw Unrecognized($"has a PostgreSQL option Npgsql does not accept ({ex.Message})");
            }
        }

        foreach (var key in new[] { "Data Source", "DataSource", "Filename" })
        {
            if (pairs.TryGetValue(key, out var value) && value is string path)
            {
                return SqliteTarget(path);
            }
        }

        throw Unrecognized("names neither a SQLite file nor a PostgreSQL host");
    }

    private static StoreTarget SqliteTarget(string path)
    {
        path = path.Trim();
        if (path.Length == 0 || path.Equals(":memory:", StringComparison.OrdinalIgnoreCase))
        {
            throw new StoreConfigurationException(
                "The Store connection string needs a SQLite file path (an in-memory database would lose everything at restart); " +
                "use 'sqlite:data/sluice.db'.");
        }

        return new StoreTarget(path, null);
    }

    private static NpgsqlConnectionStringBuilder FromUrl(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
        {
            throw Unrecognized("is a postgres:// URL without a valid host");
        }

        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host,
            Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port,
        };
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }

        var database = Uri.UnescapeDataString(uri.AbsolutePath.Trim('/'));
        if (database.Length > 0)
        {
            builder.Database = database;
        }

        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]);
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            try
            {
                builder[name.Equals("sslmode", StringComparison.OrdinalIgnoreCase) ? "SSL Mode" : name] = value;
            }
            catch (ArgumentException)
            {
                throw Unrecognized($"has a query option '{name}' that Npgsql does not accept");
            }
        }

        return builder;
    }

    private static StoreConfigurationException Unrecognized(string problem) =>
        new($"The Store connection string {problem}: {Formats}.");
}

/// <summary>A parsed <c>Store</c> connection string: exactly one of the two is set.</summary>
internal sealed record StoreTarget(string? SqlitePath, NpgsqlConnectionStringBuilder? Postgres);
