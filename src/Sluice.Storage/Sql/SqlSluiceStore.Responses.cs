using System.Data.Common;

namespace Sluice.Storage.Sql;

/// <summary>Stored Responses API responses: one row each, read and deleted by owner.</summary>
internal abstract partial class SqlSluiceStore
{
    private const string ResponseColumns = "id, owner, key_id, model, previous_response_id, response, conversation, created_at_ms";

    /// <inheritdoc />
    public Task SaveResponseAsync(StoredResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(response);
        RequireName(response.Owner, nameof(response));
        return WriteAsync(
            async (c, tx) =>
            {
                await using var insert = Db.Command(
                    c, tx, $"INSERT INTO responses ({ResponseColumns}) VALUES (@id, @owner, @key, @model, @previous, @response, @conversation, @at)");
                await insert.With("@id", response.Id).With("@owner", response.Owner).With("@key", response.KeyId).With("@model", response.Model)
                    .With("@previous", response.PreviousResponseId).With("@response", response.ResponseJson)
                    .With("@conversation", response.ConversationJson).With("@at", response.CreatedAt).ExecuteNonQueryAsync(cancellationToken);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<StoredResponse?> GetResponseAsync(string owner, string id, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, $"SELECT {ResponseColumns} FROM responses WHERE id = @id AND owner = @owner");
        return await select.With("@id", id).With("@owner", owner).SingleOrDefaultAsync(ReadResponse, cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> TrimResponsesAsync(string owner, int keep, CancellationToken cancellationToken)
    {
        RequireName(owner, nameof(owner));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(keep);
        return WriteAsync(
            async (c, tx) =>
            {
                // Older than the keep-th newest, ties in time ordered by id (nothing when there are fewer).
                await using var delete = Db.Command(
                    c,
                    tx,
                    "DELETE FROM responses WHERE owner = @owner AND (created_at_ms, id) < " +
                    "(SELECT created_at_ms, id FROM responses WHERE owner = @owner ORDER BY created_at_ms DESC, id DESC LIMIT 1 OFFSET @skip)");
                return await delete.With("@owner", owner).With("@skip", (long)(keep - 1)).ExecuteNonQueryAsync(cancellationToken);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<int> DeleteExpiredResponsesAsync(DateTimeOffset olderThan, CancellationToken cancellationToken)
    {
        // Owner by owner through the (owner, created_at_ms) index — a seek to the next owner, then a range delete —
        // rather than one statement over the whole table: no scan without an index on time alone, and each write
        // transaction stays one owner's size.
        var deleted = 0;
        var after = string.Empty;
        while (true)
        {
            string? owner;
            await using (var c = await OpenConnectionAsync(cancellationToken))
            {
                await using var next = Db.Command(c, null, "SELECT owner FROM responses WHERE owner > @after ORDER BY owner LIMIT 1");
                owner = await next.With("@after", after).ExecuteScalarAsync(cancellationToken) as string;
            }

            if (owner is null)
            {
                return deleted;
            }

            deleted += await WriteAsync(
                async (c, tx) =>
                {
                    await using var expired = Db.Command(c, tx, "DELETE FROM responses WHERE owner = @owner AND created_at_ms < @cutoff");
                    return await expired.With("@owner", owner).With("@cutoff", olderThan).ExecuteNonQueryAsync(cancellationToken);
                },
                cancellationToken);
            after = owner;
        }
    }

    /// <inheritdoc />
    public Task<bool> DeleteResponseAsync(string owner, string id, CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                await using var delete = Db.Command(c, tx, "DELETE FROM responses WHERE id = @id AND owner = @owner");
                return await delete.With("@id", id).With("@owner", owner).ExecuteNonQueryAsync(cancellationToken) > 0;
            },
            cancellationToken);

    private static StoredResponse ReadResponse(DbDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.NullableString(2),
        r.GetString(3),
        r.NullableString(4),
        r.GetString(5),
        r.GetString(6),
        r.Time(7));
}
