namespace Sluice.Storage;

/// <summary>A stored conversation: its settings and, when read one at a time, its messages.</summary>
public sealed record ChatSession
{
    /// <summary>Stable id, <c>sess_…</c> (time-ordered).</summary>
    public required string Id { get; init; }

    /// <summary>Who sees it: a team id, or <see cref="SessionOwners.Operator"/> for the master key and open mode.</summary>
    public required string Owner { get; init; }

    /// <summary>The virtual key that created it, if any.</summary>
    public string? KeyId { get; init; }

    /// <summary>A short label for session lists (by default the start of the first user message).</summary>
    public string? Title { get; init; }

    /// <summary>The model turns use unless a turn names another.</summary>
    public string? Model { get; init; }

    /// <summary>The system prompt, always sent first and never trimmed.</summary>
    public string? SystemPrompt { get; init; }

    /// <summary>The context budget: prompt plus reply must fit in it; older turns are left out to make room.</summary>
    public required int MaxContextTokens { get; init; }

    /// <summary>The caller's string metadata.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>Messages stored so far.</summary>
    public required long MessageCount { get; init; }

    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>When a message was last added (or when it was created).</summary>
    public required DateTimeOffset UpdatedAt { get; init; }

    /// <summary>
    /// The messages read with the session, oldest first: all of them (<see cref="ISessionStore.GetSessionAsync(string, string, CancellationToken)"/>),
    /// a page, or a turn's window; empty in listings.
    /// </summary>
    public IReadOnlyList<SessionMessage> Messages { get; init; } = [];

    /// <summary>True when the session has messages older than the first of <see cref="Messages"/> that were not read.</summary>
    public bool HasOlderMessages { get; init; }
}

/// <summary>Which messages to read with a session: at most <paramref name="Limit"/> of the newest, before a message id.</summary>
/// <param name="Limit">Most messages (1 to 1000).</param>
/// <param name="BeforeId">Only messages with a smaller id (the previous page's oldest); null for the newest.</param>
public sealed record SessionMessagePage(int Limit, long? BeforeId = null);

/// <summary>Session owners that are not teams.</summary>
public static class SessionOwners
{
    /// <summary>The owner of sessions made with the master key or in open mode (no key).</summary>
    public const string Operator = "operator";
}

/// <summary>A session to create.</summary>
/// <param name="MaxContextTokens">The context budget (64 to 1,000,000).</param>
/// <param name="SystemPrompt">The system prompt, if any.</param>
/// <param name="Model">The default model, if any.</param>
/// <param name="Title">A label; <see langword="null"/> to take the start of the first user message.</param>
/// <param name="Metadata">String metadata (at most 16 entries).</param>
/// <param name="KeyId">The key creating it, if any.</param>
/// <param name="MaxSessionsPerOwner">Refuse with <see cref="SessionLimitException"/> when the owner already holds this many sessions; 0 for no limit.</param>
public sealed record NewChatSession(
    int MaxContextTokens,
    string? SystemPrompt = null,
    string? Model = null,
    string? Title = null,
    IReadOnlyDictionary<string, string>? Metadata = null,
    string? KeyId = null,
    int MaxSessionsPerOwner = 0)
{
    /// <summary>The default context budget.</summary>
    public const int DefaultMaxContextTokens = 4096;

    /// <summary>The smallest context budget accepted.</summary>
    public const int MinContextTokens = 64;

    /// <summary>The largest context budget accepted.</summary>
    public const int MaxContextTokensLimit = 1_000_000;
}

/// <summary>One stored message of a session.</summary>
/// <param name="Id">Increasing id (order within the session).</param>
/// <param name="SessionId">The session.</param>
/// <param name="Role"><c>user</c> or <c>assistant</c>.</param>
/// <param name="Content">The text (for a truncated reply, what was produced before the interruption).</param>
/// <param name="Truncated">True for an assistant reply that was interrupted (client left, cancelled, or failed).</param>
/// <param name="FinishReason">Why the model stopped, for complete replies (<c>stop</c>, <c>length</c>, …).</param>
/// <param name="PromptTokens">Prompt tokens of the call that produced the reply.</param>
/// <param name="CompletionTokens">Completion tokens of the reply.</param>
/// <param name="Error">Why the reply was interrupted, when known.</param>
/// <param name="CreatedAt">When it was stored.</param>
public sealed record SessionMessage(
    long Id,
    string SessionId,
    string Role,
    string Content,
    bool Truncated,
    string? FinishReason,
    long? PromptTokens,
    long? CompletionTokens,
    string? Error,
    DateTimeOffset CreatedAt);

/// <summary>A message to append to a session.</summary>
/// <param name="Role"><c>user</c> or <c>assistant</c>.</param>
/// <param name="Content">The text.</param>
/// <param name="Truncated">True for an interrupted assistant reply.</param>
/// <param name="FinishReason">Why the model stopped, for complete replies.</param>
/// <param name="PromptTokens">Prompt tokens of the call, for replies.</param>
/// <param name="CompletionTokens">Completion tokens, for replies.</param>
/// <param name="Error">Why the reply was interrupted.</param>
/// <param name="ContextTokens">
/// What the message costs in a prompt (its tokens and framing, as the gateway counts them): the store reads a turn's
/// window by summing these, newest first, without reading older messages. 0 for a message never sent again.
/// </param>
public sealed record NewSessionMessage(
    string Role,
    string Content,
    bool Truncated = false,
    string? FinishReason = null,
    long? PromptTokens = null,
    long? CompletionTokens = null,
    string? Error = null,
    int ContextTokens = 0);
