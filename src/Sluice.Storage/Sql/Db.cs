using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Text.Json;

namespace Sluice.Storage.Sql;

/// <summary>Small ADO.NET helpers shared by both dialects (typed parameters, column readers, time and list encoding).</summary>
internal static class Db
{
    public static DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
#pragma warning disable CA2100 // All SQL here is constant text; values always go through parameters.
        command.CommandText = sql;
#pragma warning restore CA2100
        return command;
    }

    // Parameters are always typed: PostgreSQL cannot infer the type of an untyped NULL in every position.
    public static DbCommand With(this DbCommand command, string name, string? value) => Add(command, name, DbType.String, value);

    public static DbCommand With(this DbCommand command, string name, long? value) => Add(command, name, DbType.Int64, value);

    public static DbCommand With(this DbCommand command, string name, double? value) => Add(command, name, DbType.Double, value);

    public static DbCommand With(this DbCommand command, string name, DateTimeOffset? value) =>
        Add(command, name, DbType.Int64, value is { } v ? ToMs(v) : null);

    private static DbCommand Add(DbCommand command, string name, DbType type, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.DbType = type;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return command;
    }

    public static void Set(this DbCommand command, string name, object? value) => command.Parameters[name].Value = value ?? DBNull.Value;

    public static long Long(this DbDataReader reader, int ordinal) => Convert.ToInt64(reader.GetValue(ordinal), CultureInfo.InvariantCulture);

    public static long? NullableLong(this DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.Long(ordinal);

    public static double? NullableDouble(this DbDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : Convert.ToDouble(reader.GetValue(ordinal), CultureInfo.InvariantCulture);

    public static string? NullableString(this DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    public static DateTimeOffset Time(this DbDataReader reader, int ordinal) => FromMs(reader.Long(ordinal));

    public static DateTimeOffset? NullableTime(this DbDataReader reader, int ordinal) =>
        reader.NullableLong(ordinal) is { } ms ? FromMs(ms) : null;

    public static int? NullableInt(this DbDataReader reader, int ordinal) => reader.NullableLong(ordinal) is { } v ? checked((int)v) : null;

    public static IReadOnlyList<string> List(this DbDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? [] : JsonSerializer.Deserialize<string[]>(reader.GetString(ordinal)) ?? [];

    public static string EncodeList(IReadOnlyList<string>? values) => JsonSerializer.Serialize(values ?? []);

    public static long ToMs(DateTimeOffset time) => time.ToUnixTimeMilliseconds();

    public static DateTimeOffset FromMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);

    public static async Task<long?> ScalarLongAsync(this DbCommand command, CancellationToken cancellationToken)
    {
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is null or DBNull ? null : Convert.ToInt64(value, CultureInfo.InvariantCulture);
    }

    public static async Task<List<T>> ListAsync<T>(this DbCommand command, Func<DbDataReader, T> map, CancellationToken cancellationToken)
    {
        var items = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(map(reader));
        }

        return items;
    }

    public static async Task<T?> SingleOrDefaultAsync<T>(this DbCommand command, Func<DbDataReader, T> map, CancellationToken cancellationToken)
        where T : class
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? map(reader) : null;
    }
}
