using System.Data.Common;
using System.Security.Cryptography;
using System.Text;

namespace Sluice.Storage.Tests;

/// <summary>
/// The behaviour every <see cref="ISluiceStore"/> must have. Each concrete subclass supplies fresh, isolated
/// databases of one kind; every test here runs against each kind.
/// </summary>
public abstract class StoreConformanceTests : IAsyncLifetime
{
    private static readonly CancellationToken None = CancellationToken.None;
    private readonly List<ISluiceStore> _stores = [];

    /// <summary>The clock every store of the test uses: 10 s past a minute boundary.</summary>
    protected ManualTime Clock { get; } = new(new DateTimeOffset(2030, 1, 1, 0, 0, 10, TimeSpan.Zero));

    protected string ConnectionString { get; private set; } = "";

    protected ISluiceStore Store { get; private set; } = null!;

    /// <summary>Creates a new, empty database and returns its connection string.</summary>
    protected abstract Task<string> CreateDatabaseAsync();

    /// <summary>Removes every database this test created.</summary>
    protected abstract Task DropDatabasesAsync();

    /// <summary>Runs SQL directly against the database, bypassing the store.</summary>
    protected abstract Task<List<object?[]>> QueryRawAsync(string connectionString, string sql);

    public async Task InitializeAsync()
    {
        ConnectionString = await CreateDatabaseAsync();
        Store = await OpenAsync(ConnectionString);
    }

    public async Task DisposeAsync()
    {
        foreach (var store in _stores)
        {
            await store.DisposeAsync();
        }

        await DropDatabasesAsync();
    }

    protected async Task<ISluiceStore> OpenAsync(string connectionString)
    {
        var store = await SluiceStoreFactory.OpenAsync(connectionString, new SluiceStoreOptions { TimeProvider = Clock });
        lock (_stores)
        {
            _stores.Add(store);
        }

        return store;
    }

    protected static async Task<List<object?[]>> ReadAllAsync(DbCommand command)
    {
        var rows = new List<object?[]>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var row = new object?[reader.FieldCount];
            for (var i = 0; i < row.Length; i++)
            {
                row[i] = reader.IsDBNull(i) ? null : reader.GetValue(i);
            }

            rows.Add(row);
        }

        return rows;
    }

    protected async Task<CreatedTeam> NewTeamAsync(long credits, string? name = null, Organization? organization = null)
    {
        organization ??= await Store.CreateOrganizationAsync("org-" + Guid.NewGuid().ToString("N")[..8], None);
        return await Store.CreateTeamAsync(organization.Id, new NewTeam(name ?? "team-" + Guid.NewGuid().ToString("N")[..8], credits), None);
    }

    private async Task<List<CreditTransaction>> WholeLedgerAsync(string teamId)
    {
        var all = new List<CreditTransaction>();
        for (var offset = 0; ; offset += 1000)
        {
            var page = await Store.ListTransactionsAsync(teamId, 1000, offset, None);
            all.AddRange(page);
            if (page.Count < 1000)
            {
                return [.. all.OrderBy(t => t.Id)];
            }
        }
    }

    /// <summary>Every row's balance_after is the previous one plus its amount, and the last equals the balance.</summary>
    private async Task AssertLedgerConsistentAsync(string teamId)
    {
        var running = 0L;
        foreach (var row in await WholeLedgerAsync(teamId))
        {
            running += row.Amount;
            Assert.Equal(running, row.BalanceAfter);
            Assert.True(row.BalanceAfter >= 0);
        }

        Assert.Equal(running, await Store.GetBalanceAsync(teamId, None));
    }

    // ---- Organizations and teams ----

    [Fact]
    public async Task Organization_is_created_found_and_its_name_is_unique()
    {
        var org = await Store.CreateOrganizationAsync("Acme", None);
        Assert.StartsWith("org_", org.Id, StringComparison.Ordinal);
        Assert.Equal(Clock.GetUtcNow(), org.CreatedAt);
        Assert.Equal(org, await Store.GetOrganizationAsync(org.Id, None));
        Assert.Null(await Store.GetOrganizationAsync("org_missing", None));
        await Assert.ThrowsAsync<StoreConflictException>(() => Store.CreateOrganizationAsync("Acme", None));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateOrganizationAsync("  ", None));
    }

    [Fact]
    public async Task Team_is_created_with_credits_a_ledger_row_and_a_working_first_key()
    {
        var org = await Store.CreateOrganizationAsync("Acme", None);
        var created = await Store.CreateTeamAsync(
            org.Id,
            new NewTeam("research", 25, ["fast", "smart"], new RateLimits(60, 10_000, 4), new NewKey("ci")),
            None);

        var team = created.Team;
        Assert.StartsWith("team_", team.Id, StringComparison.Ordinal);
        Assert.Equal((25L, 25L), (team.CreditsAllocated, team.CreditsRemaining));
        Assert.Equal(["fast", "smart"], team.ModelGroups);
        Assert.Equal(new RateLimits(60, 10_000, 4), team.Limits);
        Assert.Equivalent(team, await Store.GetTeamAsync(team.Id, None));
        Assert.Equivalent(new[] { team }, await Store.ListTeamsAsync(org.Id, None));
        Assert.Empty(await Store.ListTeamsAsync("org_missing", None));

        var ledger = Assert.Single(await Store.ListTransactionsAsync(team.Id, 10, 0, None));
        Assert.Equal((25L, CreditReasons.InitialAllocation, 25L, (string?)null), (ledger.Amount, ledger.Reason, ledger.BalanceAfter, ledger.JobId));

        Assert.StartsWith("sk-sluice-", created.FirstKey.Secret, StringComparison.Ordinal);
        Assert.Equal("ci", created.FirstKey.Key.Name);
        var found = await Store.FindKeyBySecretAsync(created.FirstKey.Secret, None);
        Assert.NotNull(found);
        Assert.Equal((created.FirstKey.Key.Id, team.Id), (found.Id, found.TeamId));
    }

    [Fact]
    public async Task Organization_and_team_ids_may_be_chosen_by_the_caller()
    {
        var org = await Store.CreateOrganizationAsync("Acme", "org_acme", None);
        Assert.Equal("org_acme", org.Id);
        Assert.Equal(org, await Store.GetOrganizationAsync("org_acme", None));
        var duplicate = await Assert.ThrowsAsync<StoreConflictException>(() => Store.CreateOrganizationAsync("Other name", "org_acme", None));
        Assert.Contains("org_acme", duplicate.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateOrganizationAsync("Bad", "has space", None));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateOrganizationAsync("Long", new string('x', 65), None));

        var team = await Store.CreateTeamAsync(org.Id, new NewTeam("Engineering", 5, Id: "team_engineering"), None);
        Assert.Equal("team_engineering", team.Team.Id);
        Assert.Equal("Engineering", (await Store.GetTeamAsync("team_engineering", None))!.Name);
        var taken = await Assert.ThrowsAsync<StoreConflictException>(
            () => Store.CreateTeamAsync(org.Id, new NewTeam("Another", 5, Id: "team_engineering"), None));
        Assert.Contains("team_engineering", taken.Message, StringComparison.Ordinal);
        Assert.Equal(5, await Store.GetBalanceAsync("team_engineering", None));
        Assert.Single(await Store.ListTeamsAsync(org.Id, None));
    }

    [Fact]
    public async Task Team_with_zero_credits_has_no_ledger_row()
    {
        var created = await NewTeamAsync(0);
        Assert.Empty(await Store.ListTransactionsAsync(created.Team.Id, 10, 0, None));
        Assert.Equal(0, await Store.GetBalanceAsync(created.Team.Id, None));
    }

    [Fact]
    public async Task Team_names_are_unique_within_an_organization_only()
    {
        var acme = await Store.CreateOrganizationAsync("Acme", None);
        var globex = await Store.CreateOrganizationAsync("Globex", None);
        await Store.CreateTeamAsync(acme.Id, new NewTeam("ops", 1), None);
        await Assert.ThrowsAsync<StoreConflictException>(() => Store.CreateTeamAsync(acme.Id, new NewTeam("ops", 1), None));
        var other = await Store.CreateTeamAsync(globex.Id, new NewTeam("ops", 1), None);
        Assert.Equal(globex.Id, other.Team.OrganizationId);
        Assert.Single(await Store.ListTeamsAsync(acme.Id, None));

        var missing = await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.CreateTeamAsync("org_missing", new NewTeam("x", 1), None));
        Assert.Equal("organization", missing.Kind);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.CreateTeamAsync(acme.Id, new NewTeam("neg", -1), None));
    }

    [Fact]
    public async Task Model_groups_and_limits_can_be_replaced()
    {
        var team = (await NewTeamAsync(1)).Team;
        var grouped = await Store.SetTeamModelGroupsAsync(team.Id, ["cheap"], None);
        Assert.Equal(["cheap"], grouped.ModelGroups);
        var limited = await Store.SetTeamLimitsAsync(team.Id, new RateLimits(TokensPerMinute: 500), None);
        Assert.Equal(new RateLimits(null, 500, null), limited.Limits);
        Assert.Equal(["cheap"], limited.ModelGroups);
        Assert.Equivalent(limited, await Store.GetTeamAsync(team.Id, None));

        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.SetTeamModelGroupsAsync("team_missing", [], None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.SetTeamLimitsAsync("team_missing", RateLimits.None, None));
        Assert.Null(await Store.GetTeamAsync("team_missing", None));
    }

    // ---- Keys ----

    [Fact]
    public async Task Key_options_round_trip_and_listing_has_no_secrets()
    {
        var created = await NewTeamAsync(1);
        var teamId = created.Team.Id;
        var expires = Clock.GetUtcNow().AddDays(30);
        Clock.Advance(TimeSpan.FromMilliseconds(1)); // listings are ordered by creation time
        var key = await Store.CreateKeyAsync(
            teamId,
            new NewKey("batch", expires, ["sim-fast"], ["cheap"], new RateLimits(10, 1000, 2)),
            None);

        Assert.Equal(KeyPrefix(key.Secret), key.Key.Prefix);
        Assert.Equal(("batch", expires, (DateTimeOffset?)null), (key.Key.Name, key.Key.ExpiresAt, key.Key.RevokedAt));
        Assert.Equal(["sim-fast"], key.Key.AllowedModels);
        Assert.Equal(["cheap"], key.Key.AllowedModelGroups);
        Assert.Equal(new RateLimits(10, 1000, 2), key.Key.Limits);
        Assert.Equivalent(key.Key, await Store.GetKeyAsync(teamId, key.Key.Id, None));
        Assert.Equivalent(key.Key, await Store.FindKeyBySecretAsync(key.Secret, None));

        var listed = await Store.ListKeysAsync(teamId, None);
        Assert.Equal([created.FirstKey.Key.Id, key.Key.Id], listed.Select(k => k.Id));
        Assert.All(listed, k => Assert.Equal(16, k.Prefix.Length));
        Assert.DoesNotContain(listed, k => k.ToString().Contains(key.Secret, StringComparison.Ordinal));

        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.CreateKeyAsync("team_missing", new NewKey(), None));
        Assert.NotEqual(key.Secret, (await Store.CreateKeyAsync(teamId, new NewKey(), None)).Secret);
    }

    private static string KeyPrefix(string secret) => secret[..16];

    [Fact]
    public async Task Secret_is_stored_only_as_its_sha256_hash()
    {
        var created = await NewTeamAsync(1);
        var second = await Store.CreateKeyAsync(created.Team.Id, new NewKey("second"), None);

        var rows = await QueryRawAsync(ConnectionString, "SELECT * FROM virtual_keys");
        Assert.Equal(2, rows.Count);
        foreach (var secret in new[] { created.FirstKey.Secret, second.Secret })
        {
            Assert.DoesNotContain(rows.SelectMany(r => r), cell => cell is string s && s.Contains(secret, StringComparison.Ordinal));
            var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));
            Assert.Single(await QueryRawAsync(ConnectionString, $"SELECT id FROM virtual_keys WHERE secret_hash = '{hash}'"));
        }
    }

    [Fact]
    public async Task Revoked_key_is_not_found_by_secret_and_revoking_again_keeps_the_first_time()
    {
        var created = await NewTeamAsync(1);
        var teamId = created.Team.Id;
        var keyId = created.FirstKey.Key.Id;
        var revoked = await Store.RevokeKeyAsync(teamId, keyId, None);
        Assert.Equal(Clock.GetUtcNow(), revoked.RevokedAt);
        Assert.Null(await Store.FindKeyBySecretAsync(created.FirstKey.Secret, None));
        Assert.False(revoked.IsActiveAt(Clock.GetUtcNow()));

        Clock.Advance(TimeSpan.FromMinutes(5));
        var again = await Store.RevokeKeyAsync(teamId, keyId, None);
        Assert.Equal(revoked.RevokedAt, again.RevokedAt);

        // Still listed and readable for the team, marked revoked.
        Assert.Equal(revoked.RevokedAt, Assert.Single(await Store.ListKeysAsync(teamId, None)).RevokedAt);
    }

    [Fact]
    public async Task Expired_key_is_not_found_by_secret()
    {
        var teamId = (await NewTeamAsync(1)).Team.Id;
        var key = await Store.CreateKeyAsync(teamId, new NewKey(ExpiresAt: Clock.GetUtcNow().AddHours(1)), None);
        Assert.NotNull(await Store.FindKeyBySecretAsync(key.Secret, None));
        Clock.Advance(TimeSpan.FromHours(1));
        Assert.Null(await Store.FindKeyBySecretAsync(key.Secret, None));
        Assert.NotNull(await Store.GetKeyAsync(teamId, key.Key.Id, None));
    }

    [Fact]
    public async Task Unknown_or_malformed_secrets_are_not_found()
    {
        var created = await NewTeamAsync(1);
        Assert.Null(await Store.FindKeyBySecretAsync("", None));
        Assert.Null(await Store.FindKeyBySecretAsync("sk-sluice-", None));
        Assert.Null(await Store.FindKeyBySecretAsync(created.FirstKey.Secret + "x", None));
        Assert.Null(await Store.FindKeyBySecretAsync(created.FirstKey.Secret[..^1], None));
        Assert.Null(await Store.FindKeyBySecretAsync(created.FirstKey.Key.Prefix, None));
        Assert.Null(await Store.FindKeyBySecretAsync("Bearer " + created.FirstKey.Secret, None));
    }

    // ---- Tenancy isolation ----

    [Fact]
    public async Task Another_teams_keys_jobs_transactions_and_usage_are_not_visible()
    {
        var a = await NewTeamAsync(5);
        var b = await NewTeamAsync(5);
        var job = await Store.CreateJobAsync(a.Team.Id, a.FirstKey.Key.Id, None);
        await Store.AppendUsageAsync(Usage(a.Team.Id, "sim-fast"), None);

        Assert.Null(await Store.GetKeyAsync(b.Team.Id, a.FirstKey.Key.Id, None));
        Assert.DoesNotContain(await Store.ListKeysAsync(b.Team.Id, None), k => k.Id == a.FirstKey.Key.Id);
        var revoke = await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.RevokeKeyAsync(b.Team.Id, a.FirstKey.Key.Id, None));
        Assert.Equal("key", revoke.Kind);
        Assert.NotNull(await Store.FindKeyBySecretAsync(a.FirstKey.Secret, None));

        Assert.Null(await Store.GetJobAsync(b.Team.Id, job.Id, None));
        Assert.Empty(await Store.ListJobsAsync(b.Team.Id, 10, 0, None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.CompleteJobAsync(b.Team.Id, job.Id, JobStatus.Completed, null, None));
        await Assert.ThrowsAsync<StoreNotFoundException>(
            () => Store.RecordJobCallAsync(b.Team.Id, job.Id, new NewJobCall("m", 1, 1, CallStatus.Completed, TimeSpan.Zero), None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.CreateJobAsync(b.Team.Id, a.FirstKey.Key.Id, None));

        Assert.All(await Store.ListTransactionsAsync(b.Team.Id, 100, 0, None), t => Assert.Equal(b.Team.Id, t.TeamId));
        Assert.Empty(await Store.ListUsageAsync(b.Team.Id, 10, 0, None));

        // Nothing above touched team A.
        Assert.Equal(JobStatus.Created, (await Store.GetJobAsync(a.Team.Id, job.Id, None))!.Status);
        Assert.Equal(5, await Store.GetBalanceAsync(a.Team.Id, None));
        Assert.Equal(5, await Store.GetBalanceAsync(b.Team.Id, None));
    }

    // ---- Credits ----

    [Fact]
    public async Task Credits_are_added_removed_and_never_go_negative()
    {
        var teamId = (await NewTeamAsync(3)).Team.Id;
        var added = await Store.AddCreditsAsync(teamId, 7, "top-up", None);
        Assert.Equal((7L, "top-up", 10L), (added.Amount, added.Reason, added.BalanceAfter));
        var removed = await Store.AddCreditsAsync(teamId, -4, "correction", None);
        Assert.Equal(6, removed.BalanceAfter);
        Assert.True(await Store.HasCreditsAsync(teamId, 6, None));
        Assert.False(await Store.HasCreditsAsync(teamId, 7, None));

        var refused = await Assert.ThrowsAsync<InsufficientCreditsException>(() => Store.AddCreditsAsync(teamId, -7, "too much", None));
        Assert.Equal((6L, 7L), (refused.Balance, refused.Required));
        Assert.Equal(6, await Store.GetBalanceAsync(teamId, None));
        Assert.Equal(3, (await Store.ListTransactionsAsync(teamId, 100, 0, None)).Count);

        var team = await Store.GetTeamAsync(teamId, None);
        Assert.Equal((10L, 6L), (team!.CreditsAllocated, team.CreditsRemaining));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.AddCreditsAsync(teamId, 0, "nothing", None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.AddCreditsAsync("team_missing", 1, "x", None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.GetBalanceAsync("team_missing", None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.HasCreditsAsync("team_missing", 1, None));
        await AssertLedgerConsistentAsync(teamId);
    }

    [Fact]
    public async Task Transactions_are_listed_newest_first_with_limit_and_offset()
    {
        var teamId = (await NewTeamAsync(1)).Team.Id;
        for (var i = 1; i <= 5; i++)
        {
            Clock.Advance(TimeSpan.FromSeconds(1));
            await Store.AddCreditsAsync(teamId, i, $"grant {i}", None);
        }

        var first = await Store.ListTransactionsAsync(teamId, 2, 0, None);
        var second = await Store.ListTransactionsAsync(teamId, 2, 2, None);
        var last = await Store.ListTransactionsAsync(teamId, 2, 4, None);
        Assert.Equal(["grant 5", "grant 4", "grant 3", "grant 2", "grant 1", CreditReasons.InitialAllocation], first.Concat(second).Concat(last).Select(t => t.Reason));
        Assert.True(first[0].CreatedAt > first[1].CreatedAt);
        Assert.Empty(await Store.ListTransactionsAsync(teamId, 2, 6, None));
        Assert.Single(await Store.ListTransactionsAsync(teamId, 2, 5, None));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.ListTransactionsAsync(teamId, 0, 0, None));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.ListTransactionsAsync(teamId, 10, -1, None));
        await AssertLedgerConsistentAsync(teamId);
    }

    [Fact]
    public async Task Ledger_is_append_only_in_the_database()
    {
        var teamId = (await NewTeamAsync(2)).Team.Id;
        await Assert.ThrowsAnyAsync<DbException>(() => QueryRawAsync(ConnectionString, "UPDATE credit_transactions SET amount = 1000"));
        await Assert.ThrowsAnyAsync<DbException>(() => QueryRawAsync(ConnectionString, "DELETE FROM credit_transactions"));
        Assert.Equal(2, Assert.Single(await Store.ListTransactionsAsync(teamId, 10, 0, None)).Amount);
    }

    // ---- Jobs ----

    [Fact]
    public async Task Completed_job_with_good_calls_is_charged_one_credit_once()
    {
        var created = await NewTeamAsync(3);
        var teamId = created.Team.Id;
        var job = await Store.CreateJobAsync(teamId, created.FirstKey.Key.Id, None);
        Assert.StartsWith("job_", job.Id, StringComparison.Ordinal);
        Assert.Equal((JobStatus.Created, JobCharge.Pending, created.FirstKey.Key.Id), (job.Status, job.Charge, job.KeyId));

        var call1 = await Store.RecordJobCallAsync(teamId, job.Id, new NewJobCall("sim-fast", 12, 30, CallStatus.Completed, TimeSpan.FromMilliseconds(250.5)), None);
        var call2 = await Store.RecordJobCallAsync(teamId, job.Id, new NewJobCall("sim-slow", 5, 0, CallStatus.Abandoned, TimeSpan.FromSeconds(2)), None);
        Assert.True(call2.Id > call1.Id);

        Clock.Advance(TimeSpan.FromSeconds(3));
        var completion = await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None);
        Assert.True(completion.ChargedNow);
        Assert.False(completion.AlreadyFinished);
        Assert.Equal(2, completion.BalanceAfter);
        Assert.Equal((JobStatus.Completed, JobCharge.Charged, 2L, 0L), (completion.Job.Status, completion.Job.Charge, completion.Job.CallCount, completion.Job.FailedCalls));
        Assert.Equal(Clock.GetUtcNow(), completion.Job.CompletedAt);

        var stored = await Store.GetJobAsync(teamId, job.Id, None);
        Assert.NotNull(stored);
        Assert.Equal([call1, call2], stored.Calls);
        Assert.Equal(TimeSpan.FromMilliseconds(250.5), stored.Calls[0].Latency);

        var charge = (await Store.ListTransactionsAsync(teamId, 10, 0, None))[0];
        Assert.Equal((-1L, CreditReasons.JobCharge, job.Id, 2L), (charge.Amount, charge.Reason, charge.JobId, charge.BalanceAfter));

        var again = await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None);
        Assert.True(again.AlreadyFinished);
        Assert.False(again.ChargedNow);
        Assert.Equal(2, again.BalanceAfter);
        var failLater = await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Failed, "late", None);
        Assert.Equal((true, JobStatus.Completed, (string?)null), (failLater.AlreadyFinished, failLater.Job.Status, failLater.Job.Error));

        await Assert.ThrowsAsync<StoreConflictException>(
            () => Store.RecordJobCallAsync(teamId, job.Id, new NewJobCall("sim-fast", 1, 1, CallStatus.Completed, TimeSpan.Zero), None));
        Assert.Equal(2, await Store.GetBalanceAsync(teamId, None));
        await AssertLedgerConsistentAsync(teamId);
    }

    [Fact]
    public async Task Failed_jobs_and_jobs_with_a_failed_call_are_recorded_but_not_charged()
    {
        var teamId = (await NewTeamAsync(2)).Team.Id;
        var failed = await Store.CreateJobAsync(teamId, null, None);
        var result = await Store.CompleteJobAsync(teamId, failed.Id, JobStatus.Failed, "upstream down", None);
        Assert.Equal((JobStatus.Failed, JobCharge.NotBillable, "upstream down"), (result.Job.Status, result.Job.Charge, result.Job.Error));
        Assert.False(result.ChargedNow);

        var partial = await Store.CreateJobAsync(teamId, null, None);
        await Store.RecordJobCallAsync(teamId, partial.Id, new NewJobCall("sim-fast", 3, 3, CallStatus.Completed, TimeSpan.FromMilliseconds(5)), None);
        await Store.RecordJobCallAsync(teamId, partial.Id, new NewJobCall("sim-fast", 3, 0, CallStatus.Failed, TimeSpan.FromMilliseconds(5)), None);
        var completed = await Store.CompleteJobAsync(teamId, partial.Id, JobStatus.Completed, null, None);
        Assert.Equal((JobStatus.Completed, JobCharge.NotBillable, 1L), (completed.Job.Status, completed.Job.Charge, completed.Job.FailedCalls));

        Assert.Equal(2, await Store.GetBalanceAsync(teamId, None));
        Assert.Single(await Store.ListTransactionsAsync(teamId, 10, 0, None));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.CompleteJobAsync(teamId, partial.Id, JobStatus.Created, null, None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.CompleteJobAsync(teamId, "job_missing", JobStatus.Completed, null, None));
    }

    [Fact]
    public async Task Team_without_credits_cannot_create_jobs()
    {
        var teamId = (await NewTeamAsync(1)).Team.Id;
        var job = await Store.CreateJobAsync(teamId, null, None);
        await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None);

        var refused = await Assert.ThrowsAsync<InsufficientCreditsException>(() => Store.CreateJobAsync(teamId, null, None));
        Assert.Equal((teamId, 0L, 1L), (refused.TeamId, refused.Balance, refused.Required));
        Assert.Contains("add credits", refused.Message, StringComparison.Ordinal);
        Assert.Single(await Store.ListJobsAsync(teamId, 10, 0, None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.CreateJobAsync("team_missing", null, None));

        await Store.AddCreditsAsync(teamId, 1, "top-up", None);
        Assert.Equal(JobStatus.Created, (await Store.CreateJobAsync(teamId, null, None)).Status);
    }

    [Fact]
    public async Task Open_jobs_hold_one_credit_each_even_when_twenty_are_created_at_once()
    {
        var teamId = (await NewTeamAsync(3)).Team.Id;
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(async () =>
        {
            try
            {
                return await Store.CreateJobAsync(teamId, null, None);
            }
            catch (InsufficientCreditsException)
            {
                return null;
            }
        })));

        var opened = results.OfType<Job>().ToList();
        Assert.Equal(3, opened.Count);
        Assert.Equal(3, await Store.CountOpenJobsAsync(teamId, None));
        Assert.Equal(3, await Store.GetBalanceAsync(teamId, None));
        var refused = await Assert.ThrowsAsync<InsufficientCreditsException>(() => Store.CreateJobAsync(teamId, null, None));
        Assert.Equal((3L, 3L, 4L), (refused.Balance, refused.OpenJobs, refused.Required));

        // A failed job frees its hold; a completed one is charged (its hold becomes the charge).
        await Store.CompleteJobAsync(teamId, opened[0].Id, JobStatus.Failed, "gave up", None);
        var fourth = await Store.CreateJobAsync(teamId, null, None);
        Assert.True((await Store.CompleteJobAsync(teamId, opened[1].Id, JobStatus.Completed, null, None)).ChargedNow);
        Assert.Equal((2L, 2), (await Store.GetBalanceAsync(teamId, None), await Store.CountOpenJobsAsync(teamId, None)));
        await Assert.ThrowsAsync<InsufficientCreditsException>(() => Store.CreateJobAsync(teamId, null, None));

        // A job completed without a charge (one of its calls failed) frees its hold too.
        await Store.RecordJobCallAsync(teamId, fourth.Id, new NewJobCall("sim-fast", 1, 0, CallStatus.Failed, TimeSpan.Zero), None);
        Assert.False((await Store.CompleteJobAsync(teamId, fourth.Id, JobStatus.Completed, null, None)).ChargedNow);
        Assert.Equal(JobStatus.Created, (await Store.CreateJobAsync(teamId, null, None)).Status);
        await AssertLedgerConsistentAsync(teamId);
    }

    [Fact]
    public async Task An_open_job_expires_after_its_lifetime_uncharged_and_frees_its_credit()
    {
        var teamId = (await NewTeamAsync(1)).Team.Id;
        var job = await Store.CreateJobAsync(teamId, null, None);
        await Assert.ThrowsAsync<InsufficientCreditsException>(() => Store.CreateJobAsync(teamId, null, None));

        Clock.Advance(new SluiceStoreOptions().OpenJobLifetime + TimeSpan.FromSeconds(1));
        var expired = await Store.GetJobAsync(teamId, job.Id, None);
        Assert.Equal((JobStatus.Failed, JobCharge.NotBillable), (expired!.Status, expired.Charge));
        Assert.Contains("expired", expired.Error, StringComparison.Ordinal);
        Assert.Equal(0, await Store.CountOpenJobsAsync(teamId, None));
        await Assert.ThrowsAsync<StoreConflictException>(
            () => Store.RecordJobCallAsync(teamId, job.Id, new NewJobCall("sim-fast", 1, 1, CallStatus.Completed, TimeSpan.Zero), None));
        var late = await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None);
        Assert.Equal((true, false, 1L), (late.AlreadyFinished, late.ChargedNow, late.BalanceAfter));
        Assert.Equal(JobStatus.Created, (await Store.CreateJobAsync(teamId, null, None)).Status);
    }

    [Fact]
    public async Task Jobs_are_listed_newest_first_with_limit_and_offset()
    {
        var teamId = (await NewTeamAsync(10)).Team.Id;
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            Clock.Advance(TimeSpan.FromMilliseconds(10));
            ids.Add((await Store.CreateJobAsync(teamId, null, None)).Id);
        }

        await Store.RecordJobCallAsync(teamId, ids[4], new NewJobCall("sim-fast", 1, 1, CallStatus.Completed, TimeSpan.Zero), None);
        var page1 = await Store.ListJobsAsync(teamId, 3, 0, None);
        var page2 = await Store.ListJobsAsync(teamId, 3, 3, None);
        ids.Reverse();
        Assert.Equal(ids, page1.Concat(page2).Select(j => j.Id));
        Assert.Empty(page1[0].Calls);
        Assert.Equal(1, page1[0].CallCount);
        Assert.Null(await Store.GetJobAsync(teamId, "job_missing", None));
    }

    [Fact]
    public async Task Two_hundred_concurrent_completes_charge_exactly_one_credit()
    {
        var teamId = (await NewTeamAsync(10)).Team.Id;
        var job = await Store.CreateJobAsync(teamId, null, None);

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(
            _ => Task.Run(() => Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None))));

        Assert.Single(results, r => r.ChargedNow);
        Assert.Equal(199, results.Count(r => r.AlreadyFinished));
        Assert.All(results, r => Assert.Equal(JobCharge.Charged, r.Job.Charge));
        Assert.Equal(9, await Store.GetBalanceAsync(teamId, None));
        Assert.Single(await Store.ListTransactionsAsync(teamId, 100, 0, None), t => t.JobId == job.Id);
        await AssertLedgerConsistentAsync(teamId);
    }

    [Fact]
    public async Task Hundred_concurrent_jobs_on_fifty_credits_charge_exactly_fifty_and_never_go_negative()
    {
        var teamId = (await NewTeamAsync(50)).Team.Id;

        async Task<JobCharge?> RunJobAsync()
        {
            Job job;
            try
            {
                job = await Store.CreateJobAsync(teamId, null, None);
            }
            catch (InsufficientCreditsException)
            {
                return null;
            }

            await Store.RecordJobCallAsync(teamId, job.Id, new NewJobCall("sim-fast", 10, 20, CallStatus.Completed, TimeSpan.FromMilliseconds(3)), None);
            return (await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None)).Job.Charge;
        }

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Task.Run(RunJobAsync)));

        Assert.Equal(50, outcomes.Count(o => o == JobCharge.Charged));
        Assert.All(outcomes, o => Assert.True(o is null or JobCharge.Charged or JobCharge.InsufficientCredits));
        Assert.Equal(0, await Store.GetBalanceAsync(teamId, None));
        var ledger = await WholeLedgerAsync(teamId);
        Assert.Equal(50, ledger.Count(t => t.Reason == CreditReasons.JobCharge));
        Assert.Equal(50, ledger.Where(t => t.JobId is not null).Select(t => t.JobId).Distinct().Count());
        await AssertLedgerConsistentAsync(teamId);
    }

    [Fact]
    public async Task Job_owner_is_found_by_job_id_alone()
    {
        var team = (await NewTeamAsync(3)).Team;
        var job = await Store.CreateJobAsync(team.Id, null, None);
        Assert.Equal(team.Id, await Store.FindJobTeamAsync(job.Id, None));
        Assert.Null(await Store.FindJobTeamAsync("job_missing", None));
    }

    // ---- Model groups ----

    [Fact]
    public async Task Model_groups_are_stored_in_priority_order_and_names_are_unique()
    {
        Assert.Empty(await Store.ListModelGroupsAsync(None));
        var chat = await Store.CreateModelGroupAsync(new NewModelGroup("ChatAgent", ["sim-fast", "sim-slow"], "Chat Agent", "General chat"), None);
        Assert.Equal(new[] { "sim-fast", "sim-slow" }, chat.Models);
        Assert.Equal(("Chat Agent", "General chat", Clock.GetUtcNow()), (chat.DisplayName, chat.Description, chat.CreatedAt));
        Clock.Advance(TimeSpan.FromSeconds(1));
        var resume = await Store.CreateModelGroupAsync(new NewModelGroup("ResumeAgent", ["sim-slow"]), None);
        Assert.Null(resume.DisplayName);

        Assert.Equivalent(chat, await Store.GetModelGroupAsync("ChatAgent", None));
        Assert.Null(await Store.GetModelGroupAsync("chatagent", None));
        Assert.Equal(["ChatAgent", "ResumeAgent"], (await Store.ListModelGroupsAsync(None)).Select(g => g.Name));

        await Assert.ThrowsAsync<StoreConflictException>(() => Store.CreateModelGroupAsync(new NewModelGroup("ChatAgent", ["sim-fast"]), None));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateModelGroupAsync(new NewModelGroup("Empty", []), None));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateModelGroupAsync(new NewModelGroup("Blank", ["sim-fast", " "]), None));
        Assert.Equal(2, (await Store.ListModelGroupsAsync(None)).Count);
    }

    // ---- Usage ----

    private static UsageEntry Usage(string teamId, string model, CallStatus status = CallStatus.Completed) => new()
    {
        TeamId = teamId,
        Model = model,
        PromptTokens = 11,
        CompletionTokens = 22,
        Duration = TimeSpan.FromMilliseconds(1234.5),
        TimeToFirstToken = TimeSpan.FromMilliseconds(80.25),
        Status = status,
    };

    [Fact]
    public async Task Usage_records_are_appended_singly_and_in_batches_and_listed_newest_first()
    {
        var created = await NewTeamAsync(1);
        var teamId = created.Team.Id;
        var job = await Store.CreateJobAsync(teamId, null, None);
        var first = await Store.AppendUsageAsync(
            Usage(teamId, "sim-fast") with { KeyId = created.FirstKey.Key.Id, JobId = job.Id, RequestId = "req-1" }, None);
        Assert.True(first.Id > 0);
        Assert.Equal(Clock.GetUtcNow(), first.CreatedAt);

        Clock.Advance(TimeSpan.FromSeconds(1));
        await Store.AppendUsageBatchAsync(
            [Usage(teamId, "sim-slow", CallStatus.Failed), Usage(teamId, "sim-slow", CallStatus.Abandoned) with { TimeToFirstToken = null }],
            None);
        await Store.AppendUsageBatchAsync([], None);

        var listed = await Store.ListUsageAsync(teamId, 10, 0, None);
        Assert.Equal([CallStatus.Abandoned, CallStatus.Failed, CallStatus.Completed], listed.Select(u => u.Status));
        Assert.Equal(first, listed[2]);
        Assert.Null(listed[0].TimeToFirstToken);
        Assert.Equal((11L, 22L, TimeSpan.FromMilliseconds(1234.5)), (listed[1].PromptTokens, listed[1].CompletionTokens, listed[1].Duration));
        Assert.Equal([listed[1]], await Store.ListUsageAsync(teamId, 1, 1, None));
    }

    [Fact]
    public async Task A_large_usage_batch_is_stored_whole_and_in_order()
    {
        var teamId = (await NewTeamAsync(1)).Team.Id;
        var batch = Enumerable.Range(0, 1050)
            .Select(i => Usage(teamId, "sim-fast") with { RequestId = "req-" + i, PromptTokens = i, TimeToFirstToken = i % 2 == 0 ? null : TimeSpan.FromMilliseconds(i) })
            .ToList();
        await Store.AppendUsageBatchAsync(batch, None);

        var listed = (await Store.ListUsageAsync(teamId, 1000, 0, None)).Concat(await Store.ListUsageAsync(teamId, 1000, 1000, None)).ToList();
        Assert.Equal(batch.Select(u => u.RequestId).Reverse(), listed.Select(u => u.RequestId));
        Assert.Equal(batch.Select(u => (long)u.PromptTokens).Reverse(), listed.Select(u => (long)u.PromptTokens));
        Assert.Equal(batch.Select(u => u.TimeToFirstToken).Reverse(), listed.Select(u => u.TimeToFirstToken));
        Assert.All(listed, u => Assert.Equal(Clock.GetUtcNow(), u.CreatedAt));
    }

    [Fact]
    public async Task A_usage_batch_keeps_every_field_exactly_whatever_its_text()
    {
        var created = await NewTeamAsync(1);
        var teamId = created.Team.Id;
        var job = await Store.CreateJobAsync(teamId, null, None);

        // Null and set optional fields, every status, non-ASCII and long text (longer than any stack buffer a store
        // may encode into), an explicit creation time and the store's clock.
        var batch = new List<UsageEntry>
        {
            Usage(teamId, "modèle-é-✓") with { KeyId = created.FirstKey.Key.Id, JobId = job.Id, RequestId = "req-" + new string('ü', 300) },
            Usage(teamId, new string('m', 200), CallStatus.Failed) with { RequestId = "req-2", TimeToFirstToken = null, CreatedAt = Clock.GetUtcNow().AddMinutes(-5) },
            Usage(teamId, "sim-fast", CallStatus.Abandoned) with { PromptTokens = long.MaxValue / 2, CompletionTokens = 0, Duration = TimeSpan.FromMilliseconds(0.5) },
        };
        await Store.AppendUsageBatchAsync(batch, None);

        var listed = await Store.ListUsageAsync(teamId, 10, 0, None);
        Assert.Equal(3, listed.Count);
        foreach (var stored in listed)
        {
            var sent = batch.Single(b => b.RequestId == stored.RequestId);
            var expected = sent with { Id = stored.Id, CreatedAt = sent.CreatedAt == default ? Clock.GetUtcNow() : sent.CreatedAt };
            Assert.Equal(expected, stored);
        }
    }

    [Fact]
    public async Task Usage_batch_with_an_unknown_team_stores_nothing()
    {
        var teamId = (await NewTeamAsync(1)).Team.Id;
        await Assert.ThrowsAsync<StoreNotFoundException>(
            () => Store.AppendUsageBatchAsync([Usage(teamId, "sim-fast"), Usage("team_missing", "sim-fast")], None));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.AppendUsageAsync(Usage("team_missing", "sim-fast"), None));
        Assert.Empty(await Store.ListUsageAsync(teamId, 10, 0, None));
    }

    // ---- Rate limits ----

    [Fact]
    public async Task Fixed_window_admits_up_to_the_limit_then_resets_at_the_window_end()
    {
        var window = TimeSpan.FromMinutes(1);
        var resetAt = new DateTimeOffset(2030, 1, 1, 0, 1, 0, TimeSpan.Zero);
        for (var i = 1; i <= 5; i++)
        {
            var ok = await Store.TryConsumeAsync("key:a:rpm", window, 1, 5, None);
            Assert.Equal((true, (long)i, 5L - i, resetAt), (ok.Allowed, ok.Used, ok.Remaining, ok.ResetAt));
        }

        var refused = await Store.TryConsumeAsync("key:a:rpm", window, 1, 5, None);
        Assert.Equal((false, 5L, 0L), (refused.Allowed, refused.Used, refused.Remaining));
        Assert.Equal(TimeSpan.FromSeconds(50), refused.RetryAfter(Clock.GetUtcNow()));
        Assert.True((await Store.TryConsumeAsync("key:b:rpm", window, 1, 5, None)).Allowed);

        Clock.Advance(TimeSpan.FromSeconds(50));
        var next = await Store.TryConsumeAsync("key:a:rpm", window, 1, 5, None);
        Assert.Equal((true, 1L, resetAt + window), (next.Allowed, next.Used, next.ResetAt));
    }

    [Fact]
    public async Task Token_amounts_are_admitted_only_while_they_fit()
    {
        var window = TimeSpan.FromMinutes(1);
        Assert.True((await Store.TryConsumeAsync("tpm", window, 600, 1000, None)).Allowed);
        var tooMuch = await Store.TryConsumeAsync("tpm", window, 500, 1000, None);
        Assert.Equal((false, 600L, 400L), (tooMuch.Allowed, tooMuch.Used, tooMuch.Remaining));
        Assert.True((await Store.TryConsumeAsync("tpm", window, 400, 1000, None)).Allowed);
        var bigger = await Store.TryConsumeAsync("fresh", window, 2000, 1000, None);
        Assert.Equal((false, 0L, 1000L), (bigger.Allowed, bigger.Used, bigger.Remaining));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Store.TryConsumeAsync("tpm", window, 0, 1000, None));
    }

    [Fact]
    public async Task Rate_limit_admits_exactly_the_limit_under_concurrency()
    {
        var decisions = await Task.WhenAll(Enumerable.Range(0, 120).Select(
            _ => Task.Run(() => Store.TryConsumeAsync("key:hot:rpm", TimeSpan.FromMinutes(1), 1, 40, None))));
        Assert.Equal(40, decisions.Count(d => d.Allowed));
        Assert.All(decisions.Where(d => !d.Allowed), d => Assert.Equal(0, d.Remaining));
    }

    [Fact]
    public async Task Rate_limit_admits_exactly_the_limit_across_two_store_instances()
    {
        // Two stores on one database stand for two gateway processes.
        var other = await OpenAsync(ConnectionString);
        var stores = new[] { Store, other };
        var decisions = await Task.WhenAll(Enumerable.Range(0, 100).Select(
            i => Task.Run(() => stores[i % 2].TryConsumeAsync("key:shared:rpm", TimeSpan.FromMinutes(1), 1, 30, None))));
        Assert.Equal(30, decisions.Count(d => d.Allowed));
        Assert.Equal(30, (await other.TryConsumeAsync("key:shared:rpm", TimeSpan.FromMinutes(1), 1, 30, None)).Used);
    }

    [Fact]
    public async Task Concurrency_slots_are_limited_released_renewed_and_expire()
    {
        var lease = TimeSpan.FromSeconds(30);
        var attempts = await Task.WhenAll(Enumerable.Range(0, 12).Select(
            _ => Task.Run(() => Store.AcquireConcurrencyAsync("key:a:streams", 3, lease, None))));
        var held = attempts.Where(a => a.Acquired).ToList();
        Assert.Equal(3, held.Count);
        Assert.All(held, a => Assert.Equal(Clock.GetUtcNow() + lease, a.ExpiresAt));
        Assert.All(attempts.Where(a => !a.Acquired), a => Assert.Null(a.LeaseId));

        Assert.True(await Store.ReleaseConcurrencyAsync(held[0].LeaseId!, None));
        Assert.False(await Store.ReleaseConcurrencyAsync(held[0].LeaseId!, None));
        var replacement = await Store.AcquireConcurrencyAsync("key:a:streams", 3, lease, None);
        Assert.Equal((true, 3), (replacement.Acquired, replacement.Active));
        Assert.False((await Store.AcquireConcurrencyAsync("key:a:streams", 3, lease, None)).Acquired);

        // A crashed holder never releases: its lease lapses. A renewed lease survives.
        Clock.Advance(TimeSpan.FromSeconds(20));
        Assert.True(await Store.RenewConcurrencyAsync(replacement.LeaseId!, lease, None));
        Clock.Advance(TimeSpan.FromSeconds(15));
        var afterExpiry = await Store.AcquireConcurrencyAsync("key:a:streams", 3, lease, None);
        Assert.Equal((true, 2), (afterExpiry.Acquired, afterExpiry.Active));
        Assert.False(await Store.RenewConcurrencyAsync(held[1].LeaseId!, lease, None));
        Assert.False(await Store.ReleaseConcurrencyAsync(held[2].LeaseId!, None));
        Assert.True((await Store.AcquireConcurrencyAsync("key:b:streams", 1, lease, None)).Acquired);
    }

    [Fact]
    public async Task Concurrency_slots_are_shared_across_two_store_instances()
    {
        var other = await OpenAsync(ConnectionString);
        var stores = new[] { Store, other };
        var attempts = await Task.WhenAll(Enumerable.Range(0, 40).Select(
            i => Task.Run(() => stores[i % 2].AcquireConcurrencyAsync("team:t:streams", 5, TimeSpan.FromMinutes(1), None))));
        Assert.Equal(5, attempts.Count(a => a.Acquired));
        var lease = attempts.First(a => a.Acquired && a.LeaseId is not null).LeaseId!;
        Assert.True(await other.ReleaseConcurrencyAsync(lease, None));
        Assert.True((await Store.AcquireConcurrencyAsync("team:t:streams", 5, TimeSpan.FromMinutes(1), None)).Acquired);
    }

    [Fact]
    public async Task Pruning_removes_only_ended_windows_and_leases()
    {
        await Store.TryConsumeAsync("old", TimeSpan.FromMinutes(1), 1, 10, None);
        await Store.AcquireConcurrencyAsync("old", 1, TimeSpan.FromSeconds(5), None);
        Clock.Advance(TimeSpan.FromMinutes(2));
        await Store.TryConsumeAsync("new", TimeSpan.FromMinutes(1), 1, 10, None);
        await Store.AcquireConcurrencyAsync("new", 1, TimeSpan.FromMinutes(5), None);

        Assert.Equal(2, await Store.PruneExpiredAsync(None));
        Assert.Equal(0, await Store.PruneExpiredAsync(None));
        Assert.Equal(2, (await Store.TryConsumeAsync("new", TimeSpan.FromMinutes(1), 1, 10, None)).Used);
        Assert.False((await Store.AcquireConcurrencyAsync("new", 1, TimeSpan.FromMinutes(5), None)).Acquired);
    }

    // ---- Durability and migrations ----

    [Fact]
    public async Task Reopening_the_store_loses_nothing()
    {
        var created = await NewTeamAsync(5, "durable");
        var teamId = created.Team.Id;
        var job = await Store.CreateJobAsync(teamId, created.FirstKey.Key.Id, None);
        await Store.RecordJobCallAsync(teamId, job.Id, new NewJobCall("sim-fast", 1, 2, CallStatus.Completed, TimeSpan.FromMilliseconds(7)), None);
        await Store.CompleteJobAsync(teamId, job.Id, JobStatus.Completed, null, None);
        var open = await Store.CreateJobAsync(teamId, null, None);
        await Store.AppendUsageAsync(Usage(teamId, "sim-fast"), None);
        await Store.TryConsumeAsync("key:r:rpm", TimeSpan.FromMinutes(1), 3, 10, None);
        var slot = await Store.AcquireConcurrencyAsync("key:r:streams", 2, TimeSpan.FromMinutes(1), None);
        var revoked = await Store.CreateKeyAsync(teamId, new NewKey("old"), None);
        await Store.RevokeKeyAsync(teamId, revoked.Key.Id, None);
        var jobBefore = await Store.GetJobAsync(teamId, job.Id, None);
        var ledgerBefore = await WholeLedgerAsync(teamId);

        await Store.DisposeAsync();
        var reopened = await SluiceStoreFactory.OpenAsync(ConnectionString, new SluiceStoreOptions { TimeProvider = Clock });
        Store = reopened;
        _stores.Add(reopened);

        Assert.Equal(4, await reopened.GetBalanceAsync(teamId, None));
        Assert.Equal("durable", (await reopened.GetTeamAsync(teamId, None))!.Name);
        Assert.Equivalent(jobBefore, await reopened.GetJobAsync(teamId, job.Id, None));
        Assert.Equal(JobStatus.Created, (await reopened.GetJobAsync(teamId, open.Id, None))!.Status);
        Assert.Equal(ledgerBefore, await WholeLedgerAsync(teamId));
        Assert.Single(await reopened.ListUsageAsync(teamId, 10, 0, None));
        Assert.Equal(created.FirstKey.Key.Id, (await reopened.FindKeyBySecretAsync(created.FirstKey.Secret, None))!.Id);
        Assert.Null(await reopened.FindKeyBySecretAsync(revoked.Secret, None));
        Assert.Equal(4, (await reopened.TryConsumeAsync("key:r:rpm", TimeSpan.FromMinutes(1), 1, 10, None)).Used);
        Assert.Equal(2, (await reopened.AcquireConcurrencyAsync("key:r:streams", 2, TimeSpan.FromMinutes(1), None)).Active);
        Assert.True(await reopened.ReleaseConcurrencyAsync(slot.LeaseId!, None));
    }

    [Fact]
    public async Task Migrations_are_recorded_once_and_reopening_applies_nothing()
    {
        Assert.Equal(8, Store.SchemaVersion);
        var before = await QueryRawAsync(ConnectionString, "SELECT version, name, applied_at_ms FROM schema_migrations ORDER BY version");
        Assert.Equal([1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L], before.Select(r => Convert.ToInt64(r[0], System.Globalization.CultureInfo.InvariantCulture)));

        Clock.Advance(TimeSpan.FromHours(1));
        var again = await OpenAsync(ConnectionString);
        Assert.Equal(8, again.SchemaVersion);
        Assert.Equal(0, again.MigrationsApplied);
        var after = await QueryRawAsync(ConnectionString, "SELECT version, name, applied_at_ms FROM schema_migrations ORDER BY version");
        Assert.Equal(before.Select(r => string.Join('|', r)), after.Select(r => string.Join('|', r)));
    }

    [Fact]
    public async Task Stores_opening_the_same_new_database_concurrently_all_succeed()
    {
        var fresh = await CreateDatabaseAsync();
        var stores = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => OpenAsync(fresh))));
        Assert.All(stores, s => Assert.Equal(8, s.SchemaVersion));
        Assert.Equal(8, (await QueryRawAsync(fresh, "SELECT version FROM schema_migrations")).Count);

        // One of them migrated; the others found the schema done.
        Assert.Equal(8, stores.Sum(s => s.MigrationsApplied));
        Assert.Single(stores, s => s.MigrationsApplied > 0);

        var org = await stores[0].CreateOrganizationAsync("shared", None);
        Assert.Equal(org, await stores[3].GetOrganizationAsync(org.Id, None));
    }

    [Fact]
    public async Task Newer_schema_than_this_build_is_refused_with_advice()
    {
        await QueryRawAsync(ConnectionString, "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (99, 'future', 0)");
        var error = await Assert.ThrowsAsync<StoreConfigurationException>(() => OpenAsync(ConnectionString));
        Assert.Contains("version 99", error.Message, StringComparison.Ordinal);
        Assert.Contains("Sluice version", error.Message, StringComparison.Ordinal);
    }
    // ---- Sessions ----

    [Fact]
    public async Task Stored_responses_are_read_and_deleted_by_their_owner_only()
    {
        var at = DateTimeOffset.FromUnixTimeMilliseconds(1_765_552_661_000);
        var response = new StoredResponse(
            "resp_" + Guid.NewGuid().ToString("N"), "team_a", "key_1", "sim-fast", "resp_before",
            """{"id":"x","output":[]}""", """[{"role":"user","content":"Hi"}]""", at);
        await Store.SaveResponseAsync(response, None);

        Assert.Equal(response, await Store.GetResponseAsync("team_a", response.Id, None));
        Assert.Null(await Store.GetResponseAsync("team_b", response.Id, None));
        Assert.False(await Store.DeleteResponseAsync("team_b", response.Id, None));
        Assert.NotNull(await Store.GetResponseAsync("team_a", response.Id, None));
        Assert.True(await Store.DeleteResponseAsync("team_a", response.Id, None));
        Assert.Null(await Store.GetResponseAsync("team_a", response.Id, None));
        Assert.False(await Store.DeleteResponseAsync("team_a", response.Id, None));
    }

    [Fact]
    public async Task Session_keeps_its_settings_and_messages_in_order()
    {
        var created = await Store.CreateSessionAsync(
            "team_a",
            new NewChatSession(2048, "Be terse.", "sim-fast", null, new Dictionary<string, string> { ["app"] = "tests" }, "key_1"),
            None);
        Assert.StartsWith("sess_", created.Id, StringComparison.Ordinal);
        Assert.Equal(0, created.MessageCount);
        Assert.Null(created.Title);

        Clock.Advance(TimeSpan.FromSeconds(1));
        await Store.AppendSessionMessageAsync("team_a", created.Id, new NewSessionMessage("user", "How do rivers form?\nAnd why?"), None);
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Store.AppendSessionMessageAsync(
            "team_a", created.Id, new NewSessionMessage("assistant", "Rivers form when", Truncated: true, PromptTokens: 9, CompletionTokens: 3, Error: "client_left"), None);
        await Store.AppendSessionMessageAsync("team_a", created.Id, new NewSessionMessage("user", "Go on"), None);

        var read = await Store.GetSessionAsync("team_a", created.Id, None);
        Assert.NotNull(read);
        Assert.Equal("How do rivers form?", read.Title); // first line of the first user message; a later one does not replace it
        Assert.Equal("Be terse.", read.SystemPrompt);
        Assert.Equal("sim-fast", read.Model);
        Assert.Equal(2048, read.MaxContextTokens);
        Assert.Equal("tests", read.Metadata["app"]);
        Assert.Equal("key_1", read.KeyId);
        Assert.Equal(3, read.MessageCount);
        Assert.Equal(created.CreatedAt + TimeSpan.FromSeconds(2), read.UpdatedAt);
        Assert.Equal(["user", "assistant", "user"], read.Messages.Select(m => m.Role));
        Assert.True(read.Messages.Select(m => m.Id).SequenceEqual(read.Messages.Select(m => m.Id).Order()));
        var reply = read.Messages[1];
        Assert.True(reply.Truncated);
        Assert.Equal("Rivers form when", reply.Content);
        Assert.Equal(9, reply.PromptTokens);
        Assert.Equal(3, reply.CompletionTokens);
        Assert.Equal("client_left", reply.Error);
        Assert.False(read.Messages[0].Truncated);
    }

    [Fact]
    public async Task Trimming_keeps_an_owner_s_newest_responses_and_leaves_other_owners_alone()
    {
        var start = DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000);
        StoredResponse Response(string owner, int minute) => new(
            $"resp_{owner}_{minute}", owner, null, "sim-fast", null, """{"id":"x","output":[]}""", "[]", start.AddMinutes(minute));
        foreach (var minute in new[] { 3, 1, 5, 2, 4 })
        {
            await Store.SaveResponseAsync(Response("team_a", minute), None);
        }

        await Store.SaveResponseAsync(Response("team_b", 0), None);

        Assert.Equal(2, await Store.TrimResponsesAsync("team_a", 3, None));
        foreach (var (minute, kept) in new[] { (1, false), (2, false), (3, true), (4, true), (5, true) })
        {
            Assert.Equal(kept, await Store.GetResponseAsync("team_a", $"resp_team_a_{minute}", None) is not null);
        }

        Assert.NotNull(await Store.GetResponseAsync("team_b", "resp_team_b_0", None));
        Assert.Equal(0, await Store.TrimResponsesAsync("team_a", 3, None));
        Assert.Equal(0, await Store.TrimResponsesAsync("team_b", 1, None));
    }

    [Fact]
    public async Task The_expiry_sweep_deletes_every_owner_s_responses_stored_before_the_cutoff_and_nothing_newer()
    {
        var start = DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000);
        StoredResponse Response(string owner, int minute) => new(
            $"resp_{owner}_{minute}", owner, null, "sim-fast", null, """{"id":"x","output":[]}""", "[]", start.AddMinutes(minute));
        // Owners whose names sort around each other, and one with nothing expired between two that have.
        var stored = new[] { ("team_a", 1), ("team_a", 5), ("team_b", 2), ("team_b", 3), ("team_a2", 4), ("team_c", 1), ("team_c", 9) };
        foreach (var (owner, minute) in stored)
        {
            await Store.SaveResponseAsync(Response(owner, minute), None);
        }

        Assert.Equal(3, await Store.DeleteExpiredResponsesAsync(start.AddMinutes(3), None));
        foreach (var (owner, minute) in stored)
        {
            Assert.Equal(minute >= 3, await Store.GetResponseAsync(owner, $"resp_{owner}_{minute}", None) is not null);
        }

        Assert.Equal(0, await Store.DeleteExpiredResponsesAsync(start.AddMinutes(3), None));
        Assert.Equal(4, await Store.DeleteExpiredResponsesAsync(start.AddMinutes(60), None));
        Assert.Equal(0, await Store.DeleteExpiredResponsesAsync(start.AddMinutes(60), None));
    }

    [Fact]
    public async Task A_session_limit_refuses_the_owner_s_next_one_and_counts_each_owner_apart()
    {
        var limited = new NewChatSession(4096, MaxSessionsPerOwner: 2);
        await Store.CreateSessionAsync("team_a", limited, None);
        var second = await Store.CreateSessionAsync("team_a", limited, None);
        var refused = await Assert.ThrowsAsync<SessionLimitException>(() => Store.CreateSessionAsync("team_a", limited, None));
        Assert.Equal(2, refused.Limit);
        Assert.Equal(2, (await Store.ListSessionsAsync("team_a", 10, 0, None)).Count);

        await Store.CreateSessionAsync("team_b", limited, None);
        Assert.True(await Store.DeleteSessionAsync("team_a", second.Id, None));
        await Store.CreateSessionAsync("team_a", limited, None);
        await Store.CreateSessionAsync("team_a", new NewChatSession(4096), None);
        Assert.Equal(3, (await Store.ListSessionsAsync("team_a", 10, 0, None)).Count);
    }

    [Fact]
    public async Task Sessions_are_isolated_by_owner()
    {
        var mine = await Store.CreateSessionAsync("team_a", new NewChatSession(4096), None);
        Assert.Null(await Store.GetSessionAsync("team_b", mine.Id, None));
        Assert.Empty(await Store.ListSessionsAsync("team_b", 10, 0, None));
        Assert.False(await Store.DeleteSessionAsync("team_b", mine.Id, None));
        var refused = await Assert.ThrowsAsync<StoreNotFoundException>(
            () => Store.AppendSessionMessageAsync("team_b", mine.Id, new NewSessionMessage("user", "hi"), None));
        Assert.Equal("session", refused.Kind);
        Assert.Equal(0, (await Store.GetSessionAsync("team_a", mine.Id, None))!.MessageCount);
    }

    [Fact]
    public async Task Sessions_list_most_recently_used_first_and_delete_with_their_messages()
    {
        var first = await Store.CreateSessionAsync(SessionOwners.Operator, new NewChatSession(4096, Title: "first"), None);
        Clock.Advance(TimeSpan.FromSeconds(1));
        var second = await Store.CreateSessionAsync(SessionOwners.Operator, new NewChatSession(4096, Title: "second"), None);
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Store.AppendSessionMessageAsync(SessionOwners.Operator, first.Id, new NewSessionMessage("user", "back to the first"), None);

        var listed = await Store.ListSessionsAsync(SessionOwners.Operator, 10, 0, None);
        Assert.Equal([first.Id, second.Id], listed.Select(s => s.Id));
        Assert.Equal("first", listed[0].Title); // a given title is kept
        Assert.Empty(listed[0].Messages);
        Assert.Equal([second.Id], (await Store.ListSessionsAsync(SessionOwners.Operator, 1, 1, None)).Select(s => s.Id));

        Assert.True(await Store.DeleteSessionAsync(SessionOwners.Operator, first.Id, None));
        Assert.False(await Store.DeleteSessionAsync(SessionOwners.Operator, first.Id, None));
        Assert.Null(await Store.GetSessionAsync(SessionOwners.Operator, first.Id, None));
        Assert.Empty(await QueryRawAsync(ConnectionString, $"SELECT id FROM session_messages WHERE session_id = '{first.Id}'"));
        await Assert.ThrowsAsync<StoreNotFoundException>(
            () => Store.AppendSessionMessageAsync(SessionOwners.Operator, first.Id, new NewSessionMessage("assistant", "late reply"), None));
    }

    [Fact]
    public async Task Session_input_is_checked()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateSessionAsync("team_a", new NewChatSession(10), None));
        await Assert.ThrowsAsync<ArgumentException>(() => Store.CreateSessionAsync("team_a", new NewChatSession(2_000_000), None));
        var session = await Store.CreateSessionAsync("team_a", new NewChatSession(4096), None);
        await Assert.ThrowsAsync<ArgumentException>(
            () => Store.AppendSessionMessageAsync("team_a", session.Id, new NewSessionMessage("system", "no"), None));
    }

    [Fact]
    public async Task Long_first_message_makes_a_short_title()
    {
        var session = await Store.CreateSessionAsync("team_a", new NewChatSession(4096), None);
        var text = string.Join(' ', Enumerable.Repeat("streaming", 20));
        await Store.AppendSessionMessageAsync("team_a", session.Id, new NewSessionMessage("user", text), None);
        var title = (await Store.GetSessionAsync("team_a", session.Id, None))!.Title!;
        Assert.True(title.Length <= 61, title);
        Assert.EndsWith("streaming…", title, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Session_messages_are_read_a_page_at_a_time_newest_page_first()
    {
        var session = await Store.CreateSessionAsync("team_a", new NewChatSession(4096), None);
        for (var i = 1; i <= 25; i++)
        {
            await Store.AppendSessionMessageAsync("team_a", session.Id, new NewSessionMessage(i % 2 == 1 ? "user" : "assistant", $"m{i}"), None);
        }

        var newest = (await Store.GetSessionAsync("team_a", session.Id, new SessionMessagePage(10), None))!;
        Assert.Equal(Enumerable.Range(16, 10).Select(i => $"m{i}"), newest.Messages.Select(m => m.Content));
        Assert.True(newest.HasOlderMessages);
        Assert.Equal(25, newest.MessageCount);
        var middle = (await Store.GetSessionAsync("team_a", session.Id, new SessionMessagePage(10, newest.Messages[0].Id), None))!;
        Assert.Equal(Enumerable.Range(6, 10).Select(i => $"m{i}"), middle.Messages.Select(m => m.Content));
        var oldest = (await Store.GetSessionAsync("team_a", session.Id, new SessionMessagePage(10, middle.Messages[0].Id), None))!;
        Assert.Equal(Enumerable.Range(1, 5).Select(i => $"m{i}"), oldest.Messages.Select(m => m.Content));
        Assert.False(oldest.HasOlderMessages);
        Assert.Null(await Store.GetSessionAsync("team_b", session.Id, new SessionMessagePage(10), None));
    }

    [Fact]
    public async Task A_turn_reads_only_the_newest_messages_that_fit_the_session_context()
    {
        var session = await Store.CreateSessionAsync("team_a", new NewChatSession(100), None);
        for (var i = 1; i <= 50; i++)
        {
            await Store.AppendSessionMessageAsync("team_a", session.Id, new NewSessionMessage(i % 2 == 1 ? "user" : "assistant", $"m{i}", ContextTokens: 10), None);
        }

        var window = (await Store.GetSessionForTurnAsync("team_a", session.Id, None))!;
        Assert.Equal(Enumerable.Range(41, 10).Select(i => $"m{i}"), window.Messages.Select(m => m.Content));
        Assert.True(window.HasOlderMessages);
        Assert.Equal(50, window.MessageCount);

        // A newest message larger than the whole context: nothing older can fit either.
        await Store.AppendSessionMessageAsync("team_a", session.Id, new NewSessionMessage("user", "huge", ContextTokens: 500), None);
        Assert.Empty((await Store.GetSessionForTurnAsync("team_a", session.Id, None))!.Messages);
        Assert.Null(await Store.GetSessionForTurnAsync("team_b", session.Id, None));
    }

    [Fact]
    public async Task A_session_takes_no_message_beyond_its_cap_even_under_concurrency()
    {
        var session = await Store.CreateSessionAsync("team_a", new NewChatSession(4096), None);
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(async () =>
        {
            try
            {
                await Store.AppendSessionMessageAsync("team_a", session.Id, new NewSessionMessage("user", $"q{i}"), 10, None);
                return true;
            }
            catch (SessionFullException full)
            {
                Assert.Equal((10L, 10), (full.Messages, full.Limit));
                return false;
            }
        })));

        Assert.Equal(10, results.Count(ok => ok));
        Assert.Equal(10, (await Store.GetSessionAsync("team_a", session.Id, None))!.Messages.Count);
        await Assert.ThrowsAsync<StoreNotFoundException>(() => Store.AppendSessionMessageAsync("team_b", session.Id, new NewSessionMessage("user", "x"), 10, None));
    }
}
