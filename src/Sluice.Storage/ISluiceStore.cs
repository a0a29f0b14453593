namespace Sluice.Storage;

/// <summary>
/// Sluice's persistent state: tenancy (organizations, teams, keys), credits, jobs, the usage ledger and
/// rate-limit counters shared by every gateway process using the same database.
/// </summary>
/// <remarks>
/// Open one with <see cref="SluiceStoreFactory.OpenAsync"/>; it is thread-safe and meant to live as long as
/// the process. Tenancy: everything below a team is looked up with the team id, so an object of another team
/// is reported exactly like a missing one (<see langword="null"/> or <see cref="StoreNotFoundException"/>).
/// Consumers depend on the role they use (<see cref="ISessionStore"/>, <see cref="IRateLimitStore"/>, …); one SQL
/// implementation serves them all. Failures the caller can act on are <see cref="StoreNotFoundException"/> (404),
/// <see cref="StoreConflictException"/> (409) and <see cref="InsufficientCreditsException"/> (402/403).
/// </remarks>
public interface ISluiceStore : ITenantStore, IKeyStore, ICreditStore, IJobStore, IModelGroupStore, IUsageStore, ISessionStore, IResponseStore, IRateLimitStore, IAsyncDisposable
{
    /// <summary>Which database this is, without credentials: <c>sqlite:/path</c> or <c>postgresql://host:port/db</c>.</summary>
    string Description { get; }

    /// <summary>The schema version in use (the newest migration applied).</summary>
    int SchemaVersion { get; }

    /// <summary>
    /// How many migrations this process applied when it opened the store: 0 when another process (or an earlier start)
    /// had done them. Processes starting together on a new database take turns, so one of them applies every step.
    /// </summary>
    int MigrationsApplied { get; }
}

/// <summary>Organizations and teams: the tenancy tree every key and job hangs from.</summary>
public interface ITenantStore
{
    /// <summary>Creates an organization. Throws <see cref="StoreConflictException"/> when the name is taken.</summary>
    Task<Organization> CreateOrganizationAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// Creates an organization with the id the caller chose (letters, digits, <c>_</c>, <c>-</c>, <c>.</c>; at most
    /// 64 characters), or a generated <c>org_…</c> id when <paramref name="organizationId"/> is <see langword="null"/>.
    /// Throws <see cref="StoreConflictException"/> when the id or the name is taken.
    /// </summary>
    Task<Organization> CreateOrganizationAsync(string name, string? organizationId, CancellationToken cancellationToken);

    /// <summary>The organization, or <see langword="null"/>.</summary>
    Task<Organization?> GetOrganizationAsync(string organizationId, CancellationToken cancellationToken);

    /// <summary>The organization's teams, oldest first (empty when the organization does not exist).</summary>
    Task<IReadOnlyList<Team>> ListTeamsAsync(string organizationId, CancellationToken cancellationToken);

    /// <summary>
    /// Creates a team with its initial credits (one ledger row) and its first key, atomically.
    /// Throws <see cref="StoreNotFoundException"/> for an unknown organization and
    /// <see cref="StoreConflictException"/> when the name is taken in the organization or the chosen id is taken.
    /// </summary>
    Task<CreatedTeam> CreateTeamAsync(string organizationId, NewTeam team, CancellationToken cancellationToken);

    /// <summary>The team, or <see langword="null"/>.</summary>
    Task<Team?> GetTeamAsync(string teamId, CancellationToken cancellationToken);

    /// <summary>Replaces the team's model groups. Throws <see cref="StoreNotFoundException"/>.</summary>
    Task<Team> SetTeamModelGroupsAsync(string teamId, IReadOnlyList<string> modelGroups, CancellationToken cancellationToken);

    /// <summary>Replaces the team's rate limits. Throws <see cref="StoreNotFoundException"/>.</summary>
    Task<Team> SetTeamLimitsAsync(string teamId, RateLimits limits, CancellationToken cancellationToken);
}

/// <summary>Virtual keys: created with a secret shown once, found by secret (hashed), revoked.</summary>
public interface IKeyStore
{
    /// <summary>
    /// Creates a key for the team; the returned secret is the only copy (only its hash is stored).
    /// Throws <see cref="StoreNotFoundException"/> for an unknown team.
    /// </summary>
    Task<CreatedKey> CreateKeyAsync(string teamId, NewKey key, CancellationToken cancellationToken);

    /// <summary>
    /// The key whose secret this is, when it is active (not revoked, not expired); otherwise
    /// <see langword="null"/>, whatever the reason — callers answer 401 either way.
    /// </summary>
    Task<VirtualKey?> FindKeyBySecretAsync(string secret, CancellationToken cancellationToken);

    /// <summary>The team's key (active or not), or <see langword="null"/>.</summary>
    Task<VirtualKey?> GetKeyAsync(string teamId, string keyId, CancellationToken cancellationToken);

    /// <summary>The team's keys, revoked and expired ones included, oldest first; no secrets.</summary>
    Task<IReadOnlyList<VirtualKey>> ListKeysAsync(string teamId, CancellationToken cancellationToken);

    /// <summary>
    /// Revokes the team's key at once for every process (idempotent: a second call keeps the first time).
    /// Throws <see cref="StoreNotFoundException"/>.
    /// </summary>
    Task<VirtualKey> RevokeKeyAsync(string teamId, string keyId, CancellationToken cancellationToken);
}

/// <summary>A team's credit balance and its transactions.</summary>
public interface ICreditStore
{
    /// <summary>The team's balance. Throws <see cref="StoreNotFoundException"/>.</summary>
    Task<long> GetBalanceAsync(string teamId, CancellationToken cancellationToken);

    /// <summary>True when the team has at least <paramref name="amount"/> credits. Throws <see cref="StoreNotFoundException"/>.</summary>
    Task<bool> HasCreditsAsync(string teamId, long amount, CancellationToken cancellationToken);

    /// <summary>
    /// Adds credits (or removes them with a negative amount) with a ledger row, atomically. Throws
    /// <see cref="InsufficientCreditsException"/> when a removal would make the balance negative.
    /// </summary>
    Task<CreditTransaction> AddCreditsAsync(string teamId, long amount, string reason, CancellationToken cancellationToken);

    /// <summary>The team's ledger, newest first, paged. Empty for an unknown team.</summary>
    Task<IReadOnlyList<CreditTransaction>> ListTransactionsAsync(string teamId, int limit, int offset, CancellationToken cancellationToken);
}

/// <summary>Jobs: model calls recorded per job, completed once (one credit for a clean job).</summary>
public interface IJobStore
{
    /// <summary>
    /// Opens a job for the team. Each open job holds one of the team's credits until it is completed, failed or expired
    /// (<see cref="SluiceStoreOptions.OpenJobLifetime"/>): a job is opened only while the team's open jobs are fewer than
    /// its balance, atomically, however many are created at once. Throws <see cref="InsufficientCreditsException"/>
    /// (with <see cref="InsufficientCreditsException.OpenJobs"/>) otherwise, and <see cref="StoreNotFoundException"/>
    /// for an unknown team (or a key of another team).
    /// </summary>
    Task<Job> CreateJobAsync(string teamId, string? keyId, CancellationToken cancellationToken);

    /// <summary>The team's open jobs (not expired), each holding one credit.</summary>
    Task<int> CountOpenJobsAsync(string teamId, CancellationToken cancellationToken);

    /// <summary>
    /// Records one call in an open job. Throws <see cref="StoreNotFoundException"/> and, when the job is already
    /// finished, <see cref="StoreConflictException"/>.
    /// </summary>
    Task<JobCall> RecordJobCallAsync(string teamId, string jobId, NewJobCall call, CancellationToken cancellationToken);

    /// <summary>
    /// Finishes a job as <see cref="JobStatus.Completed"/> or <see cref="JobStatus.Failed"/>, atomically: a
    /// completed job with no failed call is charged one credit with one ledger row, at most once however many
    /// callers complete it concurrently; failed jobs are recorded and not charged. Idempotent: finishing a
    /// finished job changes nothing and reports <see cref="JobCompletion.AlreadyFinished"/>.
    /// Throws <see cref="StoreNotFoundException"/>.
    /// </summary>
    Task<JobCompletion> CompleteJobAsync(string teamId, string jobId, JobStatus status, string? error, CancellationToken cancellationToken);

    /// <summary>
    /// The team owning the job, or <see langword="null"/> when there is no such job. Not tenant-scoped: only for
    /// callers that may see every team (an operator holding the master key).
    /// </summary>
    Task<string?> FindJobTeamAsync(string jobId, CancellationToken cancellationToken);

    /// <summary>The team's job with its calls, or <see langword="null"/>.</summary>
    Task<Job?> GetJobAsync(string teamId, string jobId, CancellationToken cancellationToken);

    /// <summary>The team's jobs, newest first, paged (without calls).</summary>
    Task<IReadOnlyList<Job>> ListJobsAsync(string teamId, int limit, int offset, CancellationToken cancellationToken);
}

/// <summary>Model groups created through the API (routable on every gateway process).</summary>
public interface IModelGroupStore
{
    /// <summary>
    /// Stores a model group. Throws <see cref="StoreConflictException"/> when the name is taken and
    /// <see cref="ArgumentException"/> when it lists no model.
    /// </summary>
    Task<ModelGroup> CreateModelGroupAsync(NewModelGroup group, CancellationToken cancellationToken);

    /// <summary>The model group, or <see langword="null"/>.</summary>
    Task<ModelGroup?> GetModelGroupAsync(string name, CancellationToken cancellationToken);

    /// <summary>Every model group, oldest first.</summary>
    Task<IReadOnlyList<ModelGroup>> ListModelGroupsAsync(CancellationToken cancellationToken);
}

/// <summary>The usage ledger: one row per model call billed to a team.</summary>
public interface IUsageStore
{
    /// <summary>Appends one usage record; returns it with its id. Throws <see cref="StoreNotFoundException"/> for an unknown team.</summary>
    Task<UsageEntry> AppendUsageAsync(UsageEntry entry, CancellationToken cancellationToken);

    /// <summary>Appends usage records in one transaction (all or none); for a gateway flushing a buffer.</summary>
    Task AppendUsageBatchAsync(IReadOnlyList<UsageEntry> entries, CancellationToken cancellationToken);

    /// <summary>The team's usage, newest first, paged.</summary>
    Task<IReadOnlyList<UsageEntry>> ListUsageAsync(string teamId, int limit, int offset, CancellationToken cancellationToken);
}

/// <summary>Stored conversations, scoped by owner (a team id, or <see cref="SessionOwners.Operator"/>).</summary>
public interface ISessionStore
{
    /// <summary>
    /// Creates a session for <paramref name="owner"/>. Throws <see cref="ArgumentException"/> for a context budget
    /// out of range or too much metadata.
    /// </summary>
    Task<ChatSession> CreateSessionAsync(string owner, NewChatSession session, CancellationToken cancellationToken);

    /// <summary>
    /// The owner's session with every message (oldest first), or <see langword="null"/>. Reads the whole history: request
    /// paths use a page (<see cref="GetSessionAsync(string, string, SessionMessagePage, CancellationToken)"/>) or a turn's
    /// window (<see cref="GetSessionForTurnAsync"/>).
    /// </summary>
    Task<ChatSession?> GetSessionAsync(string owner, string sessionId, CancellationToken cancellationToken);

    /// <summary>
    /// The owner's session with one page of messages: the newest <see cref="SessionMessagePage.Limit"/> before
    /// <see cref="SessionMessagePage.BeforeId"/>, oldest first, and <see cref="ChatSession.HasOlderMessages"/>.
    /// </summary>
    Task<ChatSession?> GetSessionAsync(string owner, string sessionId, SessionMessagePage page, CancellationToken cancellationToken);

    /// <summary>
    /// The owner's session with what a turn can send: the newest messages whose <see cref="NewSessionMessage.ContextTokens"/>
    /// add up to at most the session's <see cref="ChatSession.MaxContextTokens"/>, oldest first. Older messages are not
    /// read (<see cref="ChatSession.HasOlderMessages"/> says whether there are any), so a turn costs the same however long
    /// the session is.
    /// </summary>
    Task<ChatSession?> GetSessionForTurnAsync(string owner, string sessionId, CancellationToken cancellationToken);

    /// <summary>The owner's sessions, most recently updated first, paged (without messages).</summary>
    Task<IReadOnlyList<ChatSession>> ListSessionsAsync(string owner, int limit, int offset, CancellationToken cancellationToken);

    /// <summary>Deletes the owner's session and its messages; false when there was no such session.</summary>
    Task<bool> DeleteSessionAsync(string owner, string sessionId, CancellationToken cancellationToken);

    /// <summary>
    /// Appends a message to the owner's session (and takes a title from the first user message when it has none).
    /// Throws <see cref="StoreNotFoundException"/> when the session does not exist (or was deleted meanwhile).
    /// </summary>
    Task<SessionMessage> AppendSessionMessageAsync(string owner, string sessionId, NewSessionMessage message, CancellationToken cancellationToken);

    /// <summary>
    /// Appends a message only while the session holds fewer than <paramref name="maxMessages"/>, atomically (concurrent
    /// turns cannot overshoot). Throws <see cref="SessionFullException"/> when it is full, and
    /// <see cref="StoreNotFoundException"/> when the session does not exist.
    /// </summary>
    Task<SessionMessage> AppendSessionMessageAsync(string owner, string sessionId, NewSessionMessage message, int maxMessages, CancellationToken cancellationToken);
}

/// <summary>Rate-limit windows and concurrency leases, shared by every process on the same database.</summary>
public interface IRateLimitStore
{
    /// <summary>
    /// Counts <paramref name="amount"/> against <paramref name="key"/> in the current fixed window (aligned to
    /// the Unix epoch) when it fits under <paramref name="limit"/>; otherwise counts nothing and refuses.
    /// Atomic across processes: at most <paramref name="limit"/> is ever admitted per window.
    /// </summary>
    /// <param name="key">What is limited, e.g. <c>key:key_…:rpm</c>.</param>
    /// <param name="window">The window length, e.g. one minute.</param>
    /// <param name="amount">What to count: 1 for a request, the tokens for a token limit.</param>
    /// <param name="limit">The most admitted per window.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    Task<RateLimitDecision> TryConsumeAsync(string key, TimeSpan window, long amount, long limit, CancellationToken cancellationToken);

    /// <summary>
    /// Takes one of <paramref name="limit"/> concurrency slots for <paramref name="key"/> when one is free. The
    /// lease lapses after <paramref name="leaseDuration"/> unless renewed, so a crashed process leaks no slot.
    /// </summary>
    Task<ConcurrencyLease> AcquireConcurrencyAsync(string key, int limit, TimeSpan leaseDuration, CancellationToken cancellationToken);

    /// <summary>Extends a held lease (for long streams); false when it had already lapsed or was released.</summary>
    Task<bool> RenewConcurrencyAsync(string leaseId, TimeSpan leaseDuration, CancellationToken cancellationToken);

    /// <summary>Frees a slot; false when it had already lapsed or was released (releasing twice is harmless).</summary>
    Task<bool> ReleaseConcurrencyAsync(string leaseId, CancellationToken cancellationToken);

    /// <summary>Deletes rate-limit windows and concurrency leases that have ended; returns how many rows went.</summary>
    Task<int> PruneExpiredAsync(CancellationToken cancellationToken);
}
