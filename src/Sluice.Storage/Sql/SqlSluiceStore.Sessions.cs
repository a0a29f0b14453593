using System.Data.Common;
using System.Text.Json;

namespace Sluice.Storage.Sql;

/// <summary>Chat sessions: one row per session, messages appended in order and deleted with it.</summary>
internal abstract partial class SqlSluiceStore
{
    private const string SessionColumns =
        "id, owner, key_id, title, model, system_prompt, max_context_tokens, metadata, message_count, created_at_ms, updated_at_ms";

    private const string MessageColumns =
        "id, session_id, role, content, truncated, finish_reason, prompt_tokens, completion_tokens, error, created_at_ms";

    private const int MaxMetadataEntries = 16;
    private const int MaxMetadataKeyChars = 64;
    private const int MaxMetadataValueChars = 512;
    private const int TitleLength = 60;

    /// <inheritdoc />
    public async Task<ChatSession> CreateSessionAsync(string owner, NewChatSession session, CancellationToken cancellationToken)
    {
        RequireName(owner, nameof(owner));
        ArgumentNullException.ThrowIfNull(session);
        if (session.MaxContextTokens is < NewChatSession.MinContextTokens or > NewChatSession.MaxContextTokensLimit)
        {
            throw new ArgumentException(
                $"max_context_tokens must be between {NewChatSession.MinContextTokens} and {NewChatSession.MaxContextTokensLimit}.", nameof(session));
        }

        if (session.Metadata is { Count: > MaxMetadataEntries })
        {
            throw new ArgumentException($"A session takes at most {MaxMetadataEntries} metadata entries.", nameof(session));
        }

        foreach (var (key, value) in session.Metadata ?? new Dictionary<string, string>())
        {
            NameRules.Require(NameKind.Label, key, nameof(session), "A metadata key", MaxMetadataKeyChars);
            NameRules.Require(NameKind.Text, value, nameof(session), "A metadata value", MaxMetadataValueChars);
        }

        if (!string.IsNullOrWhiteSpace(session.Title))
        {
            NameRules.Require(NameKind.Label, session.Title.Trim(), nameof(session), "The title");
        }

        if (!string.IsNullOrWhiteSpace(session.Model))
        {
            NameRules.Require(NameKind.ModelName, session.Model.Trim(), nameof(session), "The model");
        }

        var now = Now;
        var stored = new ChatSession
        {
            Id = Ids.New("sess", now),
            Owner = owner,
            KeyId = session.KeyId,
            Title = string.IsNullOrWhiteSpace(session.Title) ? null : session.Title.Trim(),
            Model = string.IsNullOrWhiteSpace(session.Model) ? null : session.Model.Trim(),
            SystemPrompt = string.IsNullOrEmpty(session.SystemPrompt) ? null : session.SystemPrompt,
            MaxContextTokens = session.MaxContextTokens,
            Metadata = session.Metadata is null ? new Dictionary<string, string>() : new Dictionary<string, string>(session.Metadata, StringComparer.Ordinal),
            MessageCount = 0,
            CreatedAt = now,
            UpdatedAt = now,
        };
        return await WriteAsync(
            async (c, tx) =>
            {
                // With a limit, the row goes in only while the owner holds fewer (counted through the owner index, in
                // the same statement; creations racing on several gateway processes can pass it by as many as race).
                await using var insert = Db.Command(
                    c,
                    tx,
                    session.MaxSessionsPerOwner > 0
                        ? $"INSERT INTO sessions ({SessionColumns}) SELECT @id, @owner, @key, @title, @model, @system, @context, @metadata, 0, @at, @at WHERE (SELECT COUNT(*) FROM sessions WHERE owner = @owner) < @limit"
                        : $"INSERT INTO sessions ({SessionColumns}) VALUES (@id, @owner, @key, @title, @model, @system, @context, @metadata, 0, @at, @at)");
                var inserted = await insert.With("@id", stored.Id).With("@owner", owner).With("@key", stored.KeyId).With("@title", stored.Title)
                    .With("@model", stored.Model).With("@system", stored.SystemPrompt).With("@context", stored.MaxContextTokens)
                    .With("@metadata", JsonSerializer.Serialize(stored.Metadata)).With("@at", now).With("@limit", (long)session.MaxSessionsPerOwner)
                    .ExecuteNonQueryAsync(cancellationToken);
                return inserted == 1 ? stored : throw new SessionLimitException(owner, session.MaxSessionsPerOwner);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ChatSession?> GetSessionAsync(string owner, string sessionId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, $"SELECT {SessionColumns} FROM sessions WHERE id = @id AND owner = @owner");
        var session = await select.With("@id", sessionId).With("@owner", owner).SingleOrDefaultAsync(ReadSession, cancellationToken);
        if (session is null)
        {
            return null;
        }

        await using var messages = Db.Command(c, null, $"SELECT {MessageColumns} FROM session_messages WHERE session_id = @id ORDER BY id");
        return session with { Messages = await messages.With("@id", sessionId).ListAsync(ReadMessage, cancellationToken) };
    }

    /// <inheritdoc />
    public async Task<ChatSession?> GetSessionAsync(string owner, string sessionId, SessionMessagePage page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(page.Limit, nameof(page));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(page.Limit, MaxPage, nameof(page));
        await using var c = await OpenConnectionAsync(cancellationToken);
        var session = await ReadSessionAsync(c, owner, sessionId, cancellationToken);
        if (session is null)
        {
            return null;
        }

        // Newest first through the (session_id, id) index, one more than asked to learn whether older ones remain.
        await using var messages = Db.Command(
            c,
            null,
            $"SELECT {MessageColumns} FROM session_messages WHERE session_id = @id AND id < @before ORDER BY id DESC LIMIT @limit");
        var newestFirst = await messages.With("@id", sessionId).With("@before", page.BeforeId ?? long.MaxValue).With("@limit", page.Limit + 1)
            .ListAsync(ReadMessage, cancellationToken);
        var older = newestFirst.Count > page.Limit;
        return session with { Messages = [.. newestFirst.Take(page.Limit).Reverse()], HasOlderMessages = older };
    }

    /// <inheritdoc />
    public async Task<ChatSession?> GetSessionForTurnAsync(string owner, string sessionId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        var session = await ReadSessionAsync(c, owner, sessionId, cancellationToken);
        if (session is null)
        {
            return null;
        }

        // The oldest message of the window is found from (id, context_tokens) alone — a covering index, no message text
        // read — by a running sum newest first; then only the window's rows are read. Running sums only grow, so the rows
        // within the budget are exactly the newest ones.
        await using var messages = Db.Command(
            c,
            null,
            $"SELECT {MessageColumns} FROM session_messages WHERE session_id = @id AND id >= COALESCE((" +
            "SELECT MIN(id) FROM (SELECT id, SUM(context_tokens) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS running " +
            "FROM session_messages WHERE session_id = @id) w WHERE running <= @budget), @none) ORDER BY id");
        var window = await messages.With("@id", sessionId).With("@budget", session.MaxContextTokens).With("@none", long.MaxValue)
            .ListAsync(ReadMessage, cancellationToken);
        return session with { Messages = window, HasOlderMessages = window.Count < session.MessageCount };
    }

    private static async Task<ChatSession?> ReadSessionAsync(DbConnection c, string owner, string sessionId, CancellationToken cancellationToken)
    {
        await using var select = Db.Command(c, null, $"SELECT {SessionColumns} FROM sessions WHERE id = @id AND owner = @owner");
        return await select.With("@id", sessionId).With("@owner", owner).SingleOrDefaultAsync(ReadSession, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ChatSession>> ListSessionsAsync(string owner, int limit, int offset, CancellationToken cancellationToken)
    {
        CheckPage(limit, offset);
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(
            c, null, $"SELECT {SessionColumns} FROM sessions WHERE owner = @owner ORDER BY updated_at_ms DESC, id DESC LIMIT @limit OFFSET @offset");
        return await select.With("@owner", owner).With("@limit", limit).With("@offset", offset).ListAsync(ReadSession, cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> DeleteSessionAsync(string owner, string sessionId, CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                // Messages first: the foreign key cascades too, but only where the connection enforces it.
                await using (var messages = Db.Command(
                    c, tx, "DELETE FROM session_messages WHERE session_id IN (SELECT id FROM sessions WHERE id = @id AND owner = @owner)"))
                {
                    await messages.With("@id", sessionId).With("@owner", owner).ExecuteNonQueryAsync(cancellationToken);
                }

                await using var delete = Db.Command(c, tx, "DELETE FROM sessions WHERE id = @id AND owner = @owner");
                return await delete.With("@id", sessionId).With("@owner", owner).ExecuteNonQueryAsync(cancellationToken) > 0;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<SessionMessage> AppendSessionMessageAsync(string owner, string sessionId, NewSessionMessage message, CancellationToken cancellationToken) =>
        AppendSessionMessageAsync(owner, sessionId, message, int.MaxValue, cancellationToken);

    /// <inheritdoc />
    public Task<SessionMessage> AppendSessionMessageAsync(string owner, string sessionId, NewSessionMessage message, int maxMessages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxMessages);
        ArgumentOutOfRangeException.ThrowIfNegative(message.ContextTokens, nameof(message));
        if (message.Role is not ("user" or "assistant"))
        {
            throw new ArgumentException("A session message's role is 'user' or 'assistant'.", nameof(message));
        }

        ArgumentNullException.ThrowIfNull(message.Content, nameof(message));
        return WriteAsync(
            async (c, tx) =>
            {
                var now = Now;
                // The count check and the increment are one conditional UPDATE: concurrent turns cannot both take the last place.
                await using (var touch = Db.Command(
                    c,
                    tx,
                    "UPDATE sessions SET message_count = message_count + 1, updated_at_ms = @at, title = COALESCE(title, @title) " +
                    "WHERE id = @id AND owner = @owner AND message_count < @max"))
                {
                    var title = message.Role == "user" ? TitleOf(message.Content) : null;
                    var updated = await touch.With("@at", now).With("@title", title).With("@id", sessionId).With("@owner", owner).With("@max", maxMessages)
                        .ExecuteNonQueryAsync(cancellationToken);
                    if (updated == 0)
                    {
                        await using var count = Db.Command(c, tx, "SELECT message_count FROM sessions WHERE id = @id AND owner = @owner");
                        var held = await count.With("@id", sessionId).With("@owner", owner).ScalarLongAsync(cancellationToken)
                            ?? throw new StoreNotFoundException("session", sessionId);
                        throw new SessionFullException(sessionId, held, maxMessages);
                    }
                }

                await using var insert = Db.Command(
                    c,
                    tx,
                    "INSERT INTO session_messages (session_id, role, content, truncated, finish_reason, prompt_tokens, completion_tokens, error, context_tokens, created_at_ms) " +
                    "VALUES (@session, @role, @content, @truncated, @finish, @prompt, @completion, @error, @context, @at) RETURNING id");
                var id = await insert.With("@session", sessionId).With("@role", message.Role).With("@content", message.Content)
                    .With("@truncated", message.Truncated ? 1 : 0).With("@finish", message.FinishReason).With("@prompt", message.PromptTokens)
                    .With("@completion", message.CompletionTokens).With("@error", message.Error).With("@context", message.ContextTokens)
                    .With("@at", now).ScalarLongAsync(cancellationToken);
                return new SessionMessage(
                    id ?? throw new InvalidOperationException("The database returned no id for the new session message."),
                    sessionId,
                    message.Role,
                    message.Content,
                    message.Truncated,
                    message.FinishReason,
                    message.PromptTokens,
                    message.CompletionTokens,
                    message.Error,
                    now);
            },
            cancellationToken);
    }

    /// <summary>The first line of the first user message, cut at a word near <see cref="TitleLength"/> characters.</summary>
    private static string? TitleOf(string content)
    {
        var line = content.AsSpan().Trim();
        var newline = line.IndexOfAny('\r', '\n');
        if (newline >= 0)
        {
            line = line[..newline].TrimEnd();
        }

        if (line.IsEmpty)
        {
            return null;
        }

        // The title is a label like any a caller sets: the message's control and bidi characters do not carry over.
        line = NameRules.ToLabel(line.ToString()).AsSpan().Trim();
        if (line.IsEmpty)
        {
            return null;
        }

        if (line.Length <= TitleLength)
        {
            return line.ToString();
        }

        var cut = line[..TitleLength];
        if (char.IsHighSurrogate(cut[^1]))
        {
            cut = cut[..^1];
        }

        var space = cut.LastIndexOf(' ');
        return string.Concat((space > TitleLength / 2 ? cut[..space] : cut).TrimEnd(), "…");
    }

    private static ChatSession ReadSession(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        Owner = r.GetString(1),
        KeyId = r.NullableString(2),
        Title = r.NullableString(3),
        Model = r.NullableString(4),
        SystemPrompt = r.NullableString(5),
        MaxContextTokens = checked((int)r.Long(6)),
        Metadata = JsonSerializer.Deserialize<Dictionary<string, string>>(r.GetString(7)) ?? [],
        MessageCount = r.Long(8),
        CreatedAt = r.Time(9),
        UpdatedAt = r.Time(10),
    };

    private static SessionMessage ReadMessage(DbDataReader r) => new(
        r.Long(0),
        r.GetString(1),
        r.GetString(2),
        r.GetString(3),
        r.Long(4) != 0,
        r.NullableString(5),
        r.NullableLong(6),
        r.NullableLong(7),
        r.NullableString(8),
        r.Time(9));
}
