using System.Data.Common;
using System.Globalization;
using System.Text;

namespace Sluice.Storage.Sql;

/// <summary>
/// The store logic, written once in the SQL both SQLite and PostgreSQL understand (UPSERT, RETURNING,
/// LIMIT/OFFSET). Every money-like change is either one conditional UPDATE or a write transaction whose first
/// statement locks the row it depends on, so the same code is atomic under SQLite's single writer and under
/// PostgreSQL's row locks at READ COMMITTED. Dialects supply connections, write transactions and the few
/// statements that differ.
/// </summary>
internal abstract partial class SqlSluiceStore : ISluiceStore
{
    private const string TeamColumns =
        "id, organization_id, name, credits_allocated, credits_remaining, model_groups, rpm, tpm, max_streams, created_at_ms";

    private const string KeyColumns =
        "id, team_id, name, prefix, created_at_ms, expires_at_ms, revoked_at_ms, allowed_models, allowed_groups, rpm, tpm, max_streams";

    private const string JobColumns =
        "id, team_id, key_id, status, charge, call_count, failed_calls, error, created_at_ms, completed_at_ms";

    private const string CallColumns =
        "id, job_id, model, prompt_tokens, completion_tokens, status, latency_ms, created_at_ms";

    private const string TransactionColumns = "id, team_id, amount, reason, job_id, balance_after, created_at_ms";

    private const string UsageColumns =
        "id, team_id, key_id, job_id, request_id, model, prompt_tokens, completion_tokens, ttft_ms, duration_ms, status, created_at_ms";

    private const string ModelGroupColumns = "name, display_name, description, models, created_at_ms";

    private const int MaxPage = 1000;

    private readonly TimeSpan _openJobLifetime;

    protected SqlSluiceStore(SluiceStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Time = options.TimeProvider;
        _openJobLifetime = options.OpenJobLifetime;
    }

    private string ExpiredError =>
        $"expired: not completed within {_openJobLifetime.TotalHours.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)} h (its credit hold was released)";

    /// <inheritdoc />
    public abstract string Description { get; }

    /// <inheritdoc />
    public int SchemaVersion { get; protected set; }

    /// <inheritdoc />
    public int MigrationsApplied { get; protected set; }

    protected TimeProvider Time { get; }

    protected DateTimeOffset Now => DateTimeOffset.FromUnixTimeMilliseconds(Time.GetUtcNow().ToUnixTimeMilliseconds());

    /// <summary>Opens a connection ready for use (pragmas set).</summary>
    protected abstract Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    /// <summary>Runs <paramref name="work"/> in a write transaction and commits it; rolls back on any exception.</summary>
    protected abstract Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken cancellationToken);

    /// <summary>Serializes concurrency-slot changes for one key within a write transaction (no-op where writes are already serial).</summary>
    protected abstract Task LockConcurrencyKeyAsync(DbConnection connection, DbTransaction transaction, string key, CancellationToken cancellationToken);

    protected abstract bool IsUniqueViolation(DbException exception);

    /// <summary>
    /// Tells other processes on the same database that cached tenancy data changed (<see cref="StoreChange"/>), inside
    /// the write's transaction so it is delivered on commit only. Nothing by default (a store no other process shares).
    /// </summary>
    protected virtual Task NotifyAsync(DbConnection connection, DbTransaction transaction, StoreChange change, CancellationToken cancellationToken) =>
        Task.CompletedTask;

    /// <inheritdoc />
    public abstract ValueTask DisposeAsync();

    // ---- Organizations and teams ----

    /// <inheritdoc />
    public Task<Organization> CreateOrganizationAsync(string name, CancellationToken cancellationToken) =>
        CreateOrganizationAsync(name, null, cancellationToken);

    /// <inheritdoc />
    public async Task<Organization> CreateOrganizationAsync(string name, string? organizationId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        NameRules.Require(NameKind.Label, name.Trim(), nameof(name), "The organization name");
        var now = Now;
        var organization = new Organization(Ids.Chosen(organizationId, "org", now, nameof(organizationId)), name.Trim(), now);
        try
        {
            return await WriteAsync(
                async (c, tx) =>
                {
                    await using (var exists = Db.Command(c, tx, "SELECT 1 FROM organizations WHERE id = @id"))
                    {
                        if (await exists.With("@id", organization.Id).ScalarLongAsync(cancellationToken) is not null)
                        {
                            throw new StoreConflictException($"An organization with id '{organization.Id}' already exists; choose another id.");
                        }
                    }

                    await using var insert = Db.Command(c, tx, "INSERT INTO organizations (id, name, created_at_ms) VALUES (@id, @name, @at)");
                    await insert.With("@id", organization.Id).With("@name", organization.Name).With("@at", now).ExecuteNonQueryAsync(cancellationToken);
                    return organization;
                },
                cancellationToken);
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new StoreConflictException($"An organization named '{organization.Name}' (or with id '{organization.Id}') already exists; choose another name.", ex);
        }
    }

    /// <inheritdoc />
    public async Task<Organization?> GetOrganizationAsync(string organizationId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, "SELECT id, name, created_at_ms FROM organizations WHERE id = @id");
        return await select.With("@id", organizationId)
            .SingleOrDefaultAsync(r => new Organization(r.GetString(0), r.GetString(1), r.Time(2)), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Team>> ListTeamsAsync(string organizationId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(
            c, null, $"SELECT {TeamColumns} FROM teams WHERE organization_id = @org ORDER BY created_at_ms, id");
        return await select.With("@org", organizationId).ListAsync(ReadTeam, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<CreatedTeam> CreateTeamAsync(string organizationId, NewTeam team, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(team);
        ArgumentNullException.ThrowIfNull(team.Name, nameof(team));
        NameRules.Require(NameKind.Label, team.Name.Trim(), nameof(team), "The team name");
        foreach (var group in team.ModelGroups ?? [])
        {
            NameRules.Require(NameKind.ModelName, group, nameof(team), "A model group name");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(team.InitialCredits, nameof(team));
        var now = Now;
        var limits = team.Limits ?? RateLimits.None;
        var created = new Team
        {
            Id = Ids.Chosen(team.Id, "team", now, nameof(team)),
            OrganizationId = organizationId,
            Name = team.Name.Trim(),
            CreditsAllocated = team.InitialCredits,
            CreditsRemaining = team.InitialCredits,
            ModelGroups = [.. team.ModelGroups ?? []],
            Limits = limits,
            CreatedAt = now,
        };

        try
        {
            return await WriteAsync(
                async (c, tx) =>
                {
                    await using (var org = Db.Command(c, tx, "SELECT 1 FROM organizations WHERE id = @id"))
                    {
                        if (await org.With("@id", organizationId).ScalarLongAsync(cancellationToken) is null)
                        {
                            throw new StoreNotFoundException("organization", organizationId);
                        }
                    }

                    if (team.Id is not null && await ReadBalanceAsync(c, tx, created.Id, cancellationToken) is not null)
                    {
                        throw new StoreConflictException($"A team with id '{created.Id}' already exists; choose another id.");
                    }

                    await using (var insert = Db.Command(
                        c,
                        tx,
                        $"INSERT INTO teams ({TeamColumns}) VALUES (@id, @org, @name, @credits, @credits, @groups, @rpm, @tpm, @streams, @at)"))
                    {
                        await insert.With("@id", created.Id).With("@org", organizationId).With("@name", created.Name)
                            .With("@credits", created.CreditsRemaining).With("@groups", Db.EncodeList(created.ModelGroups))
                            .With("@rpm", limits.RequestsPerMinute).With("@tpm", limits.TokensPerMinute)
                            .With("@streams", limits.ConcurrentStreams).With("@at", now)
                            .ExecuteNonQueryAsync(cancellationToken);
                    }

                    if (created.CreditsRemaining > 0)
                    {
                        await InsertTransactionAsync(c, tx, created.Id, created.CreditsRemaining, CreditReasons.InitialAllocation, null, created.CreditsRemaining, now, cancellationToken);
                    }

                    var key = await InsertKeyAsync(c, tx, created.Id, team.FirstKey ?? new NewKey(), now, cancellationToken);
                    await NotifyAsync(c, tx, StoreChange.KeyCreated, cancellationToken);
                    return new CreatedTeam(created, key);
                },
                cancellationToken);
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new StoreConflictException($"The organization already has a team named '{created.Name}'; choose another name.", ex);
        }
    }

    /// <inheritdoc />
    public async Task<Team?> GetTeamAsync(string teamId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        return await ReadTeamAsync(c, null, teamId, cancellationToken);
    }

    /// <inheritdoc />
    public Task<Team> SetTeamModelGroupsAsync(string teamId, IReadOnlyList<string> modelGroups, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(modelGroups);
        foreach (var group in modelGroups)
        {
            NameRules.Require(NameKind.ModelName, group, nameof(modelGroups), "A model group name");
        }

        return UpdateTeamAsync(
            teamId,
            "UPDATE teams SET model_groups = @groups WHERE id = @id",
            command => command.With("@groups", Db.EncodeList(modelGroups)),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<Team> SetTeamLimitsAsync(string teamId, RateLimits limits, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(limits);
        return UpdateTeamAsync(
            teamId,
            "UPDATE teams SET rpm = @rpm, tpm = @tpm, max_streams = @streams WHERE id = @id",
            command => command.With("@rpm", limits.RequestsPerMinute).With("@tpm", limits.TokensPerMinute).With("@streams", limits.ConcurrentStreams),
            cancellationToken);
    }

    private Task<Team> UpdateTeamAsync(string teamId, string sql, Action<DbCommand> bind, CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                await using var update = Db.Command(c, tx, sql);
                bind(update.With("@id", teamId));
                if (await update.ExecuteNonQueryAsync(cancellationToken) == 0)
                {
                    throw new StoreNotFoundException("team", teamId);
                }

                await NotifyAsync(c, tx, StoreChange.Team(teamId), cancellationToken);
                return (await ReadTeamAsync(c, tx, teamId, cancellationToken))!;
            },
            cancellationToken);

    // ---- Keys ----

    /// <inheritdoc />
    public Task<CreatedKey> CreateKeyAsync(string teamId, NewKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        return WriteAsync(
            async (c, tx) =>
            {
                await RequireTeamAsync(c, tx, teamId, cancellationToken);

                // Other processes may have remembered this secret as unknown: they forget their misses.
                await NotifyAsync(c, tx, StoreChange.KeyCreated, cancellationToken);
                return await InsertKeyAsync(c, tx, teamId, key, Now, cancellationToken);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<VirtualKey?> FindKeyBySecretAsync(string secret, CancellationToken cancellationToken)
    {
        if (!KeySecrets.LooksLikeSecret(secret))
        {
            return null;
        }

        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(
            c,
            null,
            $"SELECT {KeyColumns} FROM virtual_keys WHERE secret_hash = @hash AND revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > @now)");
        return await select.With("@hash", KeySecrets.Hash(secret)).With("@now", Now).SingleOrDefaultAsync(ReadKey, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<VirtualKey?> GetKeyAsync(string teamId, string keyId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        return await ReadKeyAsync(c, null, teamId, keyId, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<VirtualKey>> ListKeysAsync(string teamId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, $"SELECT {KeyColumns} FROM virtual_keys WHERE team_id = @team ORDER BY created_at_ms, id");
        return await select.With("@team", teamId).ListAsync(ReadKey, cancellationToken);
    }

    /// <inheritdoc />
    public Task<VirtualKey> RevokeKeyAsync(string teamId, string keyId, CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                await using (var update = Db.Command(
                    c, tx, "UPDATE virtual_keys SET revoked_at_ms = @now WHERE id = @id AND team_id = @team AND revoked_at_ms IS NULL"))
                {
                    await update.With("@now", Now).With("@id", keyId).With("@team", teamId).ExecuteNonQueryAsync(cancellationToken);
                }

                await NotifyAsync(c, tx, StoreChange.Key(keyId), cancellationToken);

                return await ReadKeyAsync(c, tx, teamId, keyId, cancellationToken) ?? throw new StoreNotFoundException("key", keyId);
            },
            cancellationToken);

    // ---- Credits ----

    /// <inheritdoc />
    public async Task<long> GetBalanceAsync(string teamId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        return await ReadBalanceAsync(c, null, teamId, cancellationToken) ?? throw new StoreNotFoundException("team", teamId);
    }

    /// <inheritdoc />
    public async Task<bool> HasCreditsAsync(string teamId, long amount, CancellationToken cancellationToken) =>
        await GetBalanceAsync(teamId, cancellationToken) >= amount;

    /// <inheritdoc />
    public Task<CreditTransaction> AddCreditsAsync(string teamId, long amount, string reason, CancellationToken cancellationToken)
    {
        if (amount == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(amount), "Add a non-zero amount of credits (negative to remove).");
        }

        ArgumentNullException.ThrowIfNull(reason);
        NameRules.Require(NameKind.Label, reason.Trim(), nameof(reason), "The reason");
        return WriteAsync(
            async (c, tx) =>
            {
                var now = Now;

                // One conditional UPDATE: the balance check and the change are a single atomic step, and the row
                // stays locked until commit so the ledger row's balance_after is exact.
                await using var update = Db.Command(
                    c,
                    tx,
                    "UPDATE teams SET credits_remaining = credits_remaining + @amount, " +
                    "credits_allocated = credits_allocated + @granted " +
                    "WHERE id = @id AND credits_remaining + @amount >= 0 RETURNING credits_remaining");
                var balance = await update.With("@amount", amount).With("@granted", Math.Max(amount, 0)).With("@id", teamId)
                    .ScalarLongAsync(cancellationToken);
                if (balance is null)
                {
                    var current = await ReadBalanceAsync(c, tx, teamId, cancellationToken) ?? throw new StoreNotFoundException("team", teamId);
                    throw new InsufficientCreditsException(teamId, current, -amount);
                }

                await NotifyAsync(c, tx, StoreChange.Team(teamId), cancellationToken);
                return await InsertTransactionAsync(c, tx, teamId, amount, reason.Trim(), null, balance.Value, now, cancellationToken);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<CreditTransaction>> ListTransactionsAsync(string teamId, int limit, int offset, CancellationToken cancellationToken)
    {
        CheckPage(limit, offset);
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(
            c, null, $"SELECT {TransactionColumns} FROM credit_transactions WHERE team_id = @team ORDER BY id DESC LIMIT @limit OFFSET @offset");
        return await select.With("@team", teamId).With("@limit", limit).With("@offset", offset).ListAsync(ReadTransaction, cancellationToken);
    }

    // ---- Jobs ----

    /// <inheritdoc />
    public Task<Job> CreateJobAsync(string teamId, string? keyId, CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                // The first statement locks the team row (a no-op UPDATE is still a row lock in PostgreSQL; SQLite has one
                // writer anyway): concurrent creates for one team take turns, so each counts the others' open jobs.
                long balance;
                await using (var lockTeam = Db.Command(c, tx, "UPDATE teams SET credits_remaining = credits_remaining WHERE id = @id RETURNING credits_remaining"))
                {
                    balance = await lockTeam.With("@id", teamId).ScalarLongAsync(cancellationToken) ?? throw new StoreNotFoundException("team", teamId);
                }

                if (keyId is not null)
                {
                    await using var key = Db.Command(c, tx, "SELECT 1 FROM virtual_keys WHERE id = @id AND team_id = @team");
                    if (await key.With("@id", keyId).With("@team", teamId).ScalarLongAsync(cancellationToken) is null)
                    {
                        throw new StoreNotFoundException("key", keyId);
                    }
                }

                // Each open job holds one credit until it is completed (charged), failed or expired: a team cannot open
                // more jobs than it could pay for, however many it creates at once.
                var now = Now;
                await ExpireOpenJobsAsync(c, tx, teamId, null, now, cancellationToken);
                var open = await CountOpenJobsAsync(c, tx, teamId, cancellationToken);
                if (open >= balance)
                {
                    throw new InsufficientCreditsException(teamId, balance, open + 1) { OpenJobs = open };
                }

                var job = new Job
                {
                    Id = Ids.New("job", now),
                    TeamId = teamId,
                    KeyId = keyId,
                    Status = JobStatus.Created,
                    Charge = JobCharge.Pending,
                    CallCount = 0,
                    FailedCalls = 0,
                    CreatedAt = now,
                };
                await using var insert = Db.Command(
                    c,
                    tx,
                    $"INSERT INTO jobs ({JobColumns}) VALUES (@id, @team, @key, @status, @charge, 0, 0, NULL, @at, NULL)");
                await insert.With("@id", job.Id).With("@team", teamId).With("@key", keyId).With("@status", Codes.Of(job.Status))
                    .With("@charge", Codes.Of(job.Charge)).With("@at", now).ExecuteNonQueryAsync(cancellationToken);
                return job;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<JobCall> RecordJobCallAsync(string teamId, string jobId, NewJobCall call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        RequireName(call.Model, nameof(call));
        ArgumentOutOfRangeException.ThrowIfNegative(call.PromptTokens, nameof(call));
        ArgumentOutOfRangeException.ThrowIfNegative(call.CompletionTokens, nameof(call));
        return WriteAsync(
            async (c, tx) =>
            {
                await ExpireOpenJobsAsync(c, tx, teamId, jobId, Now, cancellationToken);

                // Counting the call on the job row first locks the row: a concurrent CompleteJobAsync waits for this
                // transaction and then sees the failed-call count including this call.
                await using (var update = Db.Command(
                    c,
                    tx,
                    "UPDATE jobs SET call_count = call_count + 1, failed_calls = failed_calls + @failed " +
                    "WHERE id = @id AND team_id = @team AND status = @open"))
                {
                    var rows = await update.With("@failed", call.Status == CallStatus.Failed ? 1 : 0).With("@id", jobId)
                        .With("@team", teamId).With("@open", Codes.Of(JobStatus.Created)).ExecuteNonQueryAsync(cancellationToken);
                    if (rows == 0)
                    {
                        var job = await ReadJobAsync(c, tx, teamId, jobId, cancellationToken) ?? throw new StoreNotFoundException("job", jobId);
                        throw new StoreConflictException(
                            $"Job '{jobId}' is already {Codes.Of(job.Status)}; calls can only be recorded in an open job, so create a new job.");
                    }
                }

                var now = Now;
                await using var insert = Db.Command(
                    c,
                    tx,
                    "INSERT INTO job_calls (job_id, model, prompt_tokens, completion_tokens, status, latency_ms, created_at_ms) " +
                    "VALUES (@job, @model, @prompt, @completion, @status, @latency, @at) RETURNING id");
                var id = await insert.With("@job", jobId).With("@model", call.Model).With("@prompt", call.PromptTokens)
                    .With("@completion", call.CompletionTokens).With("@status", Codes.Of(call.Status))
                    .With("@latency", call.Latency.TotalMilliseconds).With("@at", now).ScalarLongAsync(cancellationToken);
                return new JobCall(id!.Value, jobId, call.Model, call.PromptTokens, call.CompletionTokens, call.Status, call.Latency, now);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<JobCompletion> CompleteJobAsync(string teamId, string jobId, JobStatus status, string? error, CancellationToken cancellationToken)
    {
        if (status is not (JobStatus.Completed or JobStatus.Failed))
        {
            throw new ArgumentOutOfRangeException(nameof(status), status, "A job can only be finished as Completed or Failed.");
        }

        if (error is not null)
        {
            NameRules.Require(NameKind.Text, error, nameof(error), "The error message");
        }

        return WriteAsync(
            async (c, tx) =>
            {
                var now = Now;

                // A job past its lifetime has expired (failed, free), whatever this caller says now.
                await ExpireOpenJobsAsync(c, tx, teamId, jobId, now, cancellationToken);

                // Only one caller can move the job out of 'created': the UPDATE locks the row, and every other
                // concurrent caller re-checks the status after the winner commits and matches nothing.
                long? failedCalls;
                await using (var finish = Db.Command(
                    c,
                    tx,
                    "UPDATE jobs SET status = @status, error = @error, completed_at_ms = @now, charge = @charge " +
                    "WHERE id = @id AND team_id = @team AND status = @open RETURNING failed_calls"))
                {
                    failedCalls = await finish.With("@status", Codes.Of(status)).With("@error", status == JobStatus.Failed ? error : null)
                        .With("@now", now).With("@charge", Codes.Of(JobCharge.NotBillable)).With("@id", jobId).With("@team", teamId)
                        .With("@open", Codes.Of(JobStatus.Created)).ScalarLongAsync(cancellationToken);
                }

                if (failedCalls is null)
                {
                    var finished = await ReadJobAsync(c, tx, teamId, jobId, cancellationToken) ?? throw new StoreNotFoundException("job", jobId);
                    var current = await ReadBalanceAsync(c, tx, teamId, cancellationToken) ?? 0;
                    return new JobCompletion(finished, AlreadyFinished: true, current);
                }

                if (status == JobStatus.Completed && failedCalls == 0)
                {
                    await using var charge = Db.Command(
                        c,
                        tx,
                        "UPDATE teams SET credits_remaining = credits_remaining - 1 WHERE id = @team AND credits_remaining >= 1 RETURNING credits_remaining");
                    var balance = await charge.With("@team", teamId).ScalarLongAsync(cancellationToken);
                    if (balance is not null)
                    {
                        await InsertTransactionAsync(c, tx, teamId, -1, CreditReasons.JobCharge, jobId, balance.Value, now, cancellationToken);
                    }

                    if (balance is null or 0)
                    {
                        // Admission reads cached balances; only running out changes its answer, so only that is told.
                        await NotifyAsync(c, tx, StoreChange.Team(teamId), cancellationToken);
                    }

                    await using var mark = Db.Command(c, tx, "UPDATE jobs SET charge = @charge WHERE id = @id");
                    await mark.With("@charge", Codes.Of(balance is null ? JobCharge.InsufficientCredits : JobCharge.Charged)).With("@id", jobId)
                        .ExecuteNonQueryAsync(cancellationToken);
                }

                var job = (await ReadJobAsync(c, tx, teamId, jobId, cancellationToken))!;
                var after = await ReadBalanceAsync(c, tx, teamId, cancellationToken) ?? 0;
                return new JobCompletion(job, AlreadyFinished: false, after);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<string?> FindJobTeamAsync(string jobId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, "SELECT team_id FROM jobs WHERE id = @id");
        return await select.With("@id", jobId).SingleOrDefaultAsync(r => r.GetString(0), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<int> CountOpenJobsAsync(string teamId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        return await CountOpenJobsAsync(c, null, teamId, cancellationToken, Now - _openJobLifetime);
    }

    /// <inheritdoc />
    public async Task<Job?> GetJobAsync(string teamId, string jobId, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        var job = AsOfNow(await ReadJobAsync(c, null, teamId, jobId, cancellationToken));
        if (job is null)
        {
            return null;
        }

        await using var calls = Db.Command(c, null, $"SELECT {CallColumns} FROM job_calls WHERE job_id = @job ORDER BY id");
        return job with { Calls = await calls.With("@job", jobId).ListAsync(ReadCall, cancellationToken) };
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Job>> ListJobsAsync(string teamId, int limit, int offset, CancellationToken cancellationToken)
    {
        CheckPage(limit, offset);
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(
            c, null, $"SELECT {JobColumns} FROM jobs WHERE team_id = @team ORDER BY created_at_ms DESC, id DESC LIMIT @limit OFFSET @offset");
        return [.. (await select.With("@team", teamId).With("@limit", limit).With("@offset", offset).ListAsync(ReadJob, cancellationToken)).Select(j => AsOfNow(j)!)];
    }

    /// <summary>
    /// Fails the team's open jobs (or only <paramref name="jobId"/>) older than the open-job lifetime, freeing the credits
    /// they held; they are never charged. Runs inside the write that depends on it.
    /// </summary>
    private async Task ExpireOpenJobsAsync(DbConnection c, DbTransaction tx, string teamId, string? jobId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var expire = Db.Command(
            c,
            tx,
            "UPDATE jobs SET status = @failed, charge = @free, error = @error, completed_at_ms = @now " +
            "WHERE team_id = @team AND status = @open AND created_at_ms <= @cutoff" + (jobId is null ? string.Empty : " AND id = @id"));
        expire.With("@failed", Codes.Of(JobStatus.Failed)).With("@free", Codes.Of(JobCharge.NotBillable)).With("@error", ExpiredError)
            .With("@now", now).With("@team", teamId).With("@open", Codes.Of(JobStatus.Created)).With("@cutoff", now - _openJobLifetime);
        if (jobId is not null)
        {
            expire.With("@id", jobId);
        }

        await expire.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<int> CountOpenJobsAsync(
        DbConnection c, DbTransaction? tx, string teamId, CancellationToken cancellationToken, DateTimeOffset? expiredBefore = null)
    {
        await using var count = Db.Command(
            c, tx, "SELECT COUNT(*) FROM jobs WHERE team_id = @team AND status = @open" + (expiredBefore is null ? string.Empty : " AND created_at_ms > @cutoff"));
        count.With("@team", teamId).With("@open", Codes.Of(JobStatus.Created));
        if (expiredBefore is { } cutoff)
        {
            count.With("@cutoff", cutoff);
        }

        return (int)(await count.ScalarLongAsync(cancellationToken) ?? 0);
    }

    // A job read between its expiry time and the next write that marks it: shown as it will be stored.
    private Job? AsOfNow(Job? job) =>
        job is { Status: JobStatus.Created } open && open.CreatedAt <= Now - _openJobLifetime
            ? open with { Status = JobStatus.Failed, Charge = JobCharge.NotBillable, Error = ExpiredError, CompletedAt = open.CreatedAt + _openJobLifetime }
            : job;

    // ---- Model groups ----

    /// <inheritdoc />
    public async Task<ModelGroup> CreateModelGroupAsync(NewModelGroup group, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(group.Name, nameof(group));
        NameRules.Require(NameKind.ModelName, group.Name.Trim(), nameof(group), "The model group name");
        ArgumentNullException.ThrowIfNull(group.Models, nameof(group));
        if (group.Models.Count == 0 || group.Models.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException("A model group needs at least one model, and every model name must be non-empty.", nameof(group));
        }

        foreach (var model in group.Models)
        {
            NameRules.Require(NameKind.ModelName, model.Trim(), nameof(group), "A model name");
        }

        if (!string.IsNullOrWhiteSpace(group.DisplayName))
        {
            NameRules.Require(NameKind.Label, group.DisplayName.Trim(), nameof(group), "The display name");
        }

        if (!string.IsNullOrWhiteSpace(group.Description))
        {
            NameRules.Require(NameKind.Text, group.Description.Trim(), nameof(group), "The description");
        }

        var now = Now;
        var stored = new ModelGroup(
            group.Name.Trim(),
            string.IsNullOrWhiteSpace(group.DisplayName) ? null : group.DisplayName.Trim(),
            string.IsNullOrWhiteSpace(group.Description) ? null : group.Description.Trim(),
            [.. group.Models.Select(m => m.Trim())],
            now);
        try
        {
            return await WriteAsync(
                async (c, tx) =>
                {
                    await using var insert = Db.Command(
                        c,
                        tx,
                        "INSERT INTO model_groups (name, display_name, description, models, created_at_ms) VALUES (@name, @display, @description, @models, @at)");
                    await insert.With("@name", stored.Name).With("@display", stored.DisplayName).With("@description", stored.Description)
                        .With("@models", Db.EncodeList(stored.Models)).With("@at", now).ExecuteNonQueryAsync(cancellationToken);
                    await NotifyAsync(c, tx, StoreChange.ModelGroup(stored.Name), cancellationToken);
                    return stored;
                },
                cancellationToken);
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new StoreConflictException($"A model group named '{stored.Name}' already exists; choose another name.", ex);
        }
    }

    /// <inheritdoc />
    public async Task<ModelGroup?> GetModelGroupAsync(string name, CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, $"SELECT {ModelGroupColumns} FROM model_groups WHERE name = @name");
        return await select.With("@name", name).SingleOrDefaultAsync(ReadModelGroup, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ModelGroup>> ListModelGroupsAsync(CancellationToken cancellationToken)
    {
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(c, null, $"SELECT {ModelGroupColumns} FROM model_groups ORDER BY created_at_ms, name");
        return await select.ListAsync(ReadModelGroup, cancellationToken);
    }

    // ---- Usage ----

    /// <inheritdoc />
    public async Task<UsageEntry> AppendUsageAsync(UsageEntry entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var stored = await AppendUsageCoreAsync([entry], cancellationToken);
        return stored[0];
    }

    /// <inheritdoc />
    /// <remarks>
    /// Rows go in <see cref="UsageRowsPerInsert"/> at a time, one multi-row <c>INSERT</c> each: one statement per
    /// record made the ledger a round trip per call, slower on PostgreSQL than the gateway streams (it fell tens of
    /// seconds behind in a 100,000-stream soak).
    /// </remarks>
    public async Task AppendUsageBatchAsync(IReadOnlyList<UsageEntry> entries, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0)
        {
            return;
        }

        RequireUsageEntries(entries);
        await WriteAsync(
            async (c, tx) =>
            {
                await RequireUsageTeamsAsync(c, tx, entries, cancellationToken);
                var now = Now;
                if (InsertsRowsOneByOne)
                {
                    await InsertUsageRowsOneByOneAsync(c, tx, entries, now, cancellationToken);
                    return true;
                }

                for (var start = 0; start < entries.Count; start += UsageRowsPerInsert)
                {
                    var rows = Math.Min(UsageRowsPerInsert, entries.Count - start);
                    await using var insert = Db.Command(c, tx, UsageInsertSql(rows));
                    for (var i = 0; i < rows; i++)
                    {
                        AddUsageParameters(insert, i);
                        SetUsageValues(insert.Parameters, i, entries[start + i], now);
                    }

                    await insert.ExecuteNonQueryAsync(cancellationToken);
                }

                return true;
            },
            cancellationToken);
    }

    /// <summary>
    /// Whether a batch of rows goes in as one prepared single-row statement executed per row (an in-process database,
    /// where a statement costs no round trip) instead of multi-row inserts (a server, where each statement is one).
    /// </summary>
    protected virtual bool InsertsRowsOneByOne => false;

    // One statement prepared once and its 11 parameters created once for the whole batch: the multi-row form built
    // its SQL text for every odd-sized batch, had SQLite compile it, and created 11 parameter objects per row.
    // The SQLite store binds the same statement through SQLite's own API instead (see its override).
    private protected virtual async Task InsertUsageRowsOneByOneAsync(
        DbConnection c, DbTransaction tx, IReadOnlyList<UsageEntry> entries, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var insert = Db.Command(c, tx, UsageInsertSql(1));
        AddUsageParameters(insert, 0);
        foreach (var entry in entries)
        {
            SetUsageValues(insert.Parameters, 0, entry, now);
            await insert.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    // Row `row`'s 11 parameters, typed (PostgreSQL cannot infer the type of an untyped NULL), values set separately.
    private static void AddUsageParameters(DbCommand insert, int row)
    {
        var p = UsageParameterNames[row];
        insert.With(p[0], (string?)null).With(p[1], (string?)null).With(p[2], (string?)null).With(p[3], (string?)null)
            .With(p[4], (string?)null).With(p[5], (long?)null).With(p[6], (long?)null).With(p[7], (double?)null)
            .With(p[8], (double?)null).With(p[9], (string?)null).With(p[10], (long?)null);
    }

    // The SQLite store binds the same 11 columns in the same order through SQLite's API (its InsertUsageRowsOneByOneAsync):
    // a change here is a change there.
    private static void SetUsageValues(DbParameterCollection parameters, int row, UsageEntry entry, DateTimeOffset now)
    {
        var first = row * UsageInsertColumns;
        parameters[first].Value = entry.TeamId;
        parameters[first + 1].Value = (object?)entry.KeyId ?? DBNull.Value;
        parameters[first + 2].Value = (object?)entry.JobId ?? DBNull.Value;
        parameters[first + 3].Value = (object?)entry.RequestId ?? DBNull.Value;
        parameters[first + 4].Value = entry.Model;
        parameters[first + 5].Value = entry.PromptTokens;
        parameters[first + 6].Value = entry.CompletionTokens;
        parameters[first + 7].Value = (object?)entry.TimeToFirstToken?.TotalMilliseconds ?? DBNull.Value;
        parameters[first + 8].Value = entry.Duration.TotalMilliseconds;
        parameters[first + 9].Value = Codes.Of(entry.Status);
        parameters[first + 10].Value = Db.ToMs(entry.CreatedAt == default ? now : entry.CreatedAt);
    }

    private const int UsageInsertColumns = 11;

    /// <summary>Rows per multi-row usage insert: 11 parameters each stays far below SQLite's and PostgreSQL's limits.</summary>
    internal const int UsageRowsPerInsert = 100;

    private protected static string UsageInsertSql(int rows)
    {
        if (rows == UsageRowsPerInsert && s_fullUsageInsert is { } cached)
        {
            return cached;
        }

        var sql = new StringBuilder(
            "INSERT INTO usage_records (team_id, key_id, job_id, request_id, model, prompt_tokens, completion_tokens, ttft_ms, duration_ms, status, created_at_ms) VALUES ",
            160 + (rows * 120));
        for (var i = 0; i < rows; i++)
        {
            sql.Append(i == 0 ? "(" : ", (").Append(CultureInfo.InvariantCulture,
                $"@team{i}, @key{i}, @job{i}, @request{i}, @model{i}, @prompt{i}, @completion{i}, @ttft{i}, @duration{i}, @status{i}, @at{i})");
        }

        var text = sql.ToString();
        if (rows == UsageRowsPerInsert)
        {
            s_fullUsageInsert = text;
        }

        return text;
    }

    private static string? s_fullUsageInsert;

    // The parameter names of row i of a multi-row insert, built once (the ledger writes in the background, but per row).
    private static readonly string[][] UsageParameterNames = [.. Enumerable.Range(0, UsageRowsPerInsert).Select(i =>
        new[] { "@team", "@key", "@job", "@request", "@model", "@prompt", "@completion", "@ttft", "@duration", "@status", "@at" }
            .Select(name => name + i.ToString(CultureInfo.InvariantCulture)).ToArray())];

    private static void RequireUsageEntries(IReadOnlyList<UsageEntry> entries)
    {
        foreach (var entry in entries)
        {
            ArgumentNullException.ThrowIfNull(entry, nameof(entries));
            RequireName(entry.Model, nameof(entries));
        }
    }

    private static async Task RequireUsageTeamsAsync(DbConnection c, DbTransaction? tx, IReadOnlyList<UsageEntry> entries, CancellationToken cancellationToken)
    {
        foreach (var teamId in entries.Select(e => e.TeamId).Distinct(StringComparer.Ordinal))
        {
            await RequireTeamAsync(c, tx, teamId, cancellationToken);
        }
    }

    private Task<List<UsageEntry>> AppendUsageCoreAsync(IReadOnlyList<UsageEntry> entries, CancellationToken cancellationToken)
    {
        RequireUsageEntries(entries);
        return WriteAsync(
            async (c, tx) =>
            {
                await RequireUsageTeamsAsync(c, tx, entries, cancellationToken);
                var now = Now;
                var stored = new List<UsageEntry>(entries.Count);
                await using var insert = Db.Command(
                    c,
                    tx,
                    "INSERT INTO usage_records (team_id, key_id, job_id, request_id, model, prompt_tokens, completion_tokens, ttft_ms, duration_ms, status, created_at_ms) " +
                    "VALUES (@team, @key, @job, @request, @model, @prompt, @completion, @ttft, @duration, @status, @at) RETURNING id");
                insert.With("@team", (string?)null).With("@key", (string?)null).With("@job", (string?)null).With("@request", (string?)null)
                    .With("@model", (string?)null).With("@prompt", (long?)null).With("@completion", (long?)null).With("@ttft", (double?)null)
                    .With("@duration", (double?)null).With("@status", (string?)null).With("@at", (long?)null);
                foreach (var entry in entries)
                {
                    var at = entry.CreatedAt == default ? now : entry.CreatedAt;
                    insert.Set("@team", entry.TeamId);
                    insert.Set("@key", entry.KeyId);
                    insert.Set("@job", entry.JobId);
                    insert.Set("@request", entry.RequestId);
                    insert.Set("@model", entry.Model);
                    insert.Set("@prompt", entry.PromptTokens);
                    insert.Set("@completion", entry.CompletionTokens);
                    insert.Set("@ttft", entry.TimeToFirstToken?.TotalMilliseconds);
                    insert.Set("@duration", entry.Duration.TotalMilliseconds);
                    insert.Set("@status", Codes.Of(entry.Status));
                    insert.Set("@at", Db.ToMs(at));
                    var id = await insert.ScalarLongAsync(cancellationToken);
                    stored.Add(entry with { Id = id!.Value, CreatedAt = Db.FromMs(Db.ToMs(at)) });
                }

                return stored;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<UsageEntry>> ListUsageAsync(string teamId, int limit, int offset, CancellationToken cancellationToken)
    {
        CheckPage(limit, offset);
        await using var c = await OpenConnectionAsync(cancellationToken);
        await using var select = Db.Command(
            c, null, $"SELECT {UsageColumns} FROM usage_records WHERE team_id = @team ORDER BY id DESC LIMIT @limit OFFSET @offset");
        return await select.With("@team", teamId).With("@limit", limit).With("@offset", offset).ListAsync(ReadUsage, cancellationToken);
    }

    // ---- Rate limits ----

    /// <inheritdoc />
    public Task<RateLimitDecision> TryConsumeAsync(string key, TimeSpan window, long amount, long limit, CancellationToken cancellationToken)
    {
        RequireName(key, nameof(key));
        ArgumentOutOfRangeException.ThrowIfLessThan(window, TimeSpan.FromMilliseconds(1), nameof(window));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(amount);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        var nowMs = Db.ToMs(Now);
        var windowMs = (long)window.TotalMilliseconds;
        var start = nowMs - (nowMs % windowMs);
        var reset = Db.FromMs(start + windowMs);

        return WriteAsync(
            async (c, tx) =>
            {
                if (amount <= limit)
                {
                    // One atomic UPSERT: the first request of a window inserts, later ones add only while the sum
                    // stays within the limit; a refused request changes nothing and returns no row.
                    await using var consume = Db.Command(
                        c,
                        tx,
                        "INSERT INTO rate_counters (key, window_start_ms, used, expires_at_ms) VALUES (@key, @start, @amount, @expires) " +
                        "ON CONFLICT (key, window_start_ms) DO UPDATE SET used = rate_counters.used + excluded.used " +
                        "WHERE rate_counters.used + excluded.used <= @limit RETURNING used");
                    var used = await consume.With("@key", key).With("@start", start).With("@amount", amount).With("@expires", start + windowMs)
                        .With("@limit", limit).ScalarLongAsync(cancellationToken);
                    if (used is not null)
                    {
                        return new RateLimitDecision(true, used.Value, limit - used.Value, reset);
                    }
                }

                await using var read = Db.Command(c, tx, "SELECT used FROM rate_counters WHERE key = @key AND window_start_ms = @start");
                var current = await read.With("@key", key).With("@start", start).ScalarLongAsync(cancellationToken) ?? 0;
                return new RateLimitDecision(false, current, Math.Max(0, limit - current), reset);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<ConcurrencyLease> AcquireConcurrencyAsync(string key, int limit, TimeSpan leaseDuration, CancellationToken cancellationToken)
    {
        RequireName(key, nameof(key));
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        ArgumentOutOfRangeException.ThrowIfLessThan(leaseDuration, TimeSpan.FromMilliseconds(1), nameof(leaseDuration));
        return WriteAsync(
            async (c, tx) =>
            {
                await LockConcurrencyKeyAsync(c, tx, key, cancellationToken);
                var now = Now;
                await using (var expire = Db.Command(c, tx, "DELETE FROM concurrency_slots WHERE key = @key AND expires_at_ms <= @now"))
                {
                    await expire.With("@key", key).With("@now", now).ExecuteNonQueryAsync(cancellationToken);
                }

                long active;
                await using (var count = Db.Command(c, tx, "SELECT COUNT(*) FROM concurrency_slots WHERE key = @key"))
                {
                    active = await count.With("@key", key).ScalarLongAsync(cancellationToken) ?? 0;
                }

                if (active >= limit)
                {
                    return new ConcurrencyLease(false, null, (int)active, null);
                }

                var lease = Ids.New("lease", now);
                var expires = now + leaseDuration;
                await using var insert = Db.Command(
                    c, tx, "INSERT INTO concurrency_slots (lease_id, key, acquired_at_ms, expires_at_ms) VALUES (@lease, @key, @now, @expires)");
                await insert.With("@lease", lease).With("@key", key).With("@now", now).With("@expires", expires).ExecuteNonQueryAsync(cancellationToken);
                return new ConcurrencyLease(true, lease, (int)active + 1, expires);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> RenewConcurrencyAsync(string leaseId, TimeSpan leaseDuration, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(leaseDuration, TimeSpan.FromMilliseconds(1), nameof(leaseDuration));
        return WriteAsync(
            async (c, tx) =>
            {
                var now = Now;
                await using var update = Db.Command(
                    c, tx, "UPDATE concurrency_slots SET expires_at_ms = @expires WHERE lease_id = @lease AND expires_at_ms > @now");
                return await update.With("@expires", now + leaseDuration).With("@lease", leaseId).With("@now", now)
                    .ExecuteNonQueryAsync(cancellationToken) > 0;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> ReleaseConcurrencyAsync(string leaseId, CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                await using var delete = Db.Command(c, tx, "DELETE FROM concurrency_slots WHERE lease_id = @lease RETURNING expires_at_ms");
                var expires = await delete.With("@lease", leaseId).ScalarLongAsync(cancellationToken);
                return expires is { } ms && ms > Db.ToMs(Now);
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<int> PruneExpiredAsync(CancellationToken cancellationToken) =>
        WriteAsync(
            async (c, tx) =>
            {
                var now = Now;
                await using var counters = Db.Command(c, tx, "DELETE FROM rate_counters WHERE expires_at_ms <= @now");
                var rows = await counters.With("@now", now).ExecuteNonQueryAsync(cancellationToken);
                await using var slots = Db.Command(c, tx, "DELETE FROM concurrency_slots WHERE expires_at_ms <= @now");
                return rows + await slots.With("@now", now).ExecuteNonQueryAsync(cancellationToken);
            },
            cancellationToken);

    // ---- Shared pieces ----

    private static async Task<CreatedKey> InsertKeyAsync(
        DbConnection c, DbTransaction tx, string teamId, NewKey key, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (!string.IsNullOrWhiteSpace(key.Name))
        {
            NameRules.Require(NameKind.Label, key.Name.Trim(), nameof(key), "The key name");
        }

        var secret = KeySecrets.NewSecret();
        var limits = key.Limits ?? RateLimits.None;
        var stored = new VirtualKey
        {
            Id = Ids.New("key", now),
            TeamId = teamId,
            Name = string.IsNullOrWhiteSpace(key.Name) ? "default" : key.Name.Trim(),
            Prefix = KeySecrets.PrefixOf(secret),
            CreatedAt = now,
            ExpiresAt = key.ExpiresAt is { } e ? Db.FromMs(Db.ToMs(e)) : null,
            AllowedModels = [.. key.AllowedModels ?? []],
            AllowedModelGroups = [.. key.AllowedModelGroups ?? []],
            Limits = limits,
        };
        await using var insert = Db.Command(
            c,
            tx,
            $"INSERT INTO virtual_keys ({KeyColumns}, secret_hash) " +
            "VALUES (@id, @team, @name, @prefix, @at, @expires, NULL, @models, @groups, @rpm, @tpm, @streams, @hash)");
        await insert.With("@id", stored.Id).With("@team", teamId).With("@name", stored.Name).With("@prefix", stored.Prefix).With("@at", now)
            .With("@expires", stored.ExpiresAt).With("@models", Db.EncodeList(stored.AllowedModels))
            .With("@groups", Db.EncodeList(stored.AllowedModelGroups)).With("@rpm", limits.RequestsPerMinute)
            .With("@tpm", limits.TokensPerMinute).With("@streams", limits.ConcurrentStreams).With("@hash", KeySecrets.Hash(secret))
            .ExecuteNonQueryAsync(cancellationToken);
        return new CreatedKey(stored, secret);
    }

    private static async Task<CreditTransaction> InsertTransactionAsync(
        DbConnection c,
        DbTransaction tx,
        string teamId,
        long amount,
        string reason,
        string? jobId,
        long balanceAfter,
        DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        await using var insert = Db.Command(
            c,
            tx,
            "INSERT INTO credit_transactions (team_id, amount, reason, job_id, balance_after, created_at_ms) " +
            "VALUES (@team, @amount, @reason, @job, @balance, @at) RETURNING id");
        var id = await insert.With("@team", teamId).With("@amount", amount).With("@reason", reason).With("@job", jobId)
            .With("@balance", balanceAfter).With("@at", now).ScalarLongAsync(cancellationToken);
        return new CreditTransaction(id!.Value, teamId, amount, reason, jobId, balanceAfter, now);
    }

    private static async Task RequireTeamAsync(DbConnection c, DbTransaction? tx, string teamId, CancellationToken cancellationToken)
    {
        if (await ReadBalanceAsync(c, tx, teamId, cancellationToken) is null)
        {
            throw new StoreNotFoundException("team", teamId);
        }
    }

    private static async Task<long?> ReadBalanceAsync(DbConnection c, DbTransaction? tx, string teamId, CancellationToken cancellationToken)
    {
        await using var select = Db.Command(c, tx, "SELECT credits_remaining FROM teams WHERE id = @id");
        return await select.With("@id", teamId).ScalarLongAsync(cancellationToken);
    }

    private static async Task<Team?> ReadTeamAsync(DbConnection c, DbTransaction? tx, string teamId, CancellationToken cancellationToken)
    {
        await using var select = Db.Command(c, tx, $"SELECT {TeamColumns} FROM teams WHERE id = @id");
        return await select.With("@id", teamId).SingleOrDefaultAsync(ReadTeam, cancellationToken);
    }

    private static async Task<VirtualKey?> ReadKeyAsync(DbConnection c, DbTransaction? tx, string teamId, string keyId, CancellationToken cancellationToken)
    {
        await using var select = Db.Command(c, tx, $"SELECT {KeyColumns} FROM virtual_keys WHERE id = @id AND team_id = @team");
        return await select.With("@id", keyId).With("@team", teamId).SingleOrDefaultAsync(ReadKey, cancellationToken);
    }

    private static async Task<Job?> ReadJobAsync(DbConnection c, DbTransaction? tx, string teamId, string jobId, CancellationToken cancellationToken)
    {
        await using var select = Db.Command(c, tx, $"SELECT {JobColumns} FROM jobs WHERE id = @id AND team_id = @team");
        return await select.With("@id", jobId).With("@team", teamId).SingleOrDefaultAsync(ReadJob, cancellationToken);
    }

    private static Team ReadTeam(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        OrganizationId = r.GetString(1),
        Name = r.GetString(2),
        CreditsAllocated = r.Long(3),
        CreditsRemaining = r.Long(4),
        ModelGroups = r.List(5),
        Limits = new RateLimits(r.NullableInt(6), r.NullableInt(7), r.NullableInt(8)),
        CreatedAt = r.Time(9),
    };

    private static VirtualKey ReadKey(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        TeamId = r.GetString(1),
        Name = r.GetString(2),
        Prefix = r.GetString(3),
        CreatedAt = r.Time(4),
        ExpiresAt = r.NullableTime(5),
        RevokedAt = r.NullableTime(6),
        AllowedModels = r.List(7),
        AllowedModelGroups = r.List(8),
        Limits = new RateLimits(r.NullableInt(9), r.NullableInt(10), r.NullableInt(11)),
    };

    private static Job ReadJob(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        TeamId = r.GetString(1),
        KeyId = r.NullableString(2),
        Status = Codes.JobStatusOf(r.GetString(3)),
        Charge = Codes.JobChargeOf(r.GetString(4)),
        CallCount = r.Long(5),
        FailedCalls = r.Long(6),
        Error = r.NullableString(7),
        CreatedAt = r.Time(8),
        CompletedAt = r.NullableTime(9),
    };

    private static JobCall ReadCall(DbDataReader r) => new(
        r.Long(0),
        r.GetString(1),
        r.GetString(2),
        r.Long(3),
        r.Long(4),
        Codes.CallStatusOf(r.GetString(5)),
        TimeSpan.FromMilliseconds(r.NullableDouble(6) ?? 0),
        r.Time(7));

    private static ModelGroup ReadModelGroup(DbDataReader r) => new(
        r.GetString(0), r.NullableString(1), r.NullableString(2), r.List(3), r.Time(4));

    private static CreditTransaction ReadTransaction(DbDataReader r) => new(
        r.Long(0), r.GetString(1), r.Long(2), r.GetString(3), r.NullableString(4), r.Long(5), r.Time(6));

    private static UsageEntry ReadUsage(DbDataReader r) => new()
    {
        Id = r.Long(0),
        TeamId = r.GetString(1),
        KeyId = r.NullableString(2),
        JobId = r.NullableString(3),
        RequestId = r.NullableString(4),
        Model = r.GetString(5),
        PromptTokens = r.Long(6),
        CompletionTokens = r.Long(7),
        TimeToFirstToken = r.NullableDouble(8) is { } ttft ? TimeSpan.FromMilliseconds(ttft) : null,
        Duration = TimeSpan.FromMilliseconds(r.NullableDouble(9) ?? 0),
        Status = Codes.CallStatusOf(r.GetString(10)),
        CreatedAt = r.Time(11),
    };

    private static void RequireName(string? value, string paramName)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException("A non-empty value is required.", paramName);
        }
    }

    private static void CheckPage(int limit, int offset)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, MaxPage);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
    }
}
