using System.Diagnostics;
using System.Net;
using Sluice.Storage;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>
/// Two gateway instances (two Kestrel servers on two ports) sharing one PostgreSQL database: limits and credits
/// hold across both.
/// </summary>
public sealed class PostgresMultiGatewayTests : TenancyTestBase
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();

    public override Task InitializeAsync()
    {
        // Both gateways share this clock, set one second into a minute: every request below falls in one window.
        Time.AlignToMinuteStart();
        return base.InitializeAsync();
    }

    [Fact]
    public async Task A_teams_requests_per_minute_hold_across_two_gateways()
    {
        var second = await StartGatewayAsync();
        Assert.NotEqual(Host.BaseAddress.Port, second.BaseAddress.Port);
        const int limit = 10;
        var (teamId, key) = await Host.NewTeamAsync(100, $$""", "rpm_limit": {{limit}}""");
        var otherKey = (await PostAsync(second.Admin, $"api/teams/{teamId}/keys", "{}")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("virtual_key").GetString();
        using var viaFirst = Host.NewClient(key);
        using var viaSecond = second.NewClient(otherKey);

        var answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Task.Run(() => ChatAsync(i % 2 == 0 ? viaFirst : viaSecond))));

        // The counter is one atomic row in the shared database: within a window the documented drift is zero.
        var admitted = answers.Count(a => a.Status == HttpStatusCode.OK);
        Assert.Equal(limit, admitted);
        Assert.All(answers.Where(a => a.Status != HttpStatusCode.OK), a => a.AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error"));
        Assert.Contains(answers, a => a.Status == HttpStatusCode.OK && a.Header("x-ratelimit-remaining-requests") == "0");

        // Each gateway sent 20 and together they admitted 10: each refused at least 10 on the shared count.
        Assert.True(answers.Where((_, i) => i % 2 == 0).Count(a => a.Status == HttpStatusCode.TooManyRequests) >= 10);
        Assert.True(answers.Where((_, i) => i % 2 == 1).Count(a => a.Status == HttpStatusCode.TooManyRequests) >= 10);

        // Every admitted call (and only those) is in the shared usage ledger.
        Assert.Equal(limit, (await Host.WaitForUsageAsync(teamId, limit)).Count);
    }

    [Fact]
    public async Task Credits_stay_exact_when_two_gateways_complete_jobs_concurrently()
    {
        var second = await StartGatewayAsync();
        var (teamId, key) = await Host.NewTeamAsync(15);
        using var viaFirst = Host.NewClient(key);
        using var viaSecond = second.NewClient(key);
        var created = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => PostAsync(i % 2 == 0 ? viaFirst : viaSecond, "api/jobs/create"))));

        // Open jobs hold credits in the shared store: across both gateways, 15 jobs open and 5 are refused.
        var jobs = created.Where(c => c.Status == HttpStatusCode.OK).Select(c => c.Json.GetProperty("job_id").GetString()!).ToList();
        Assert.Equal(15, jobs.Count);
        Assert.All(created.Where(c => c.Status != HttpStatusCode.OK), c => c.AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits"));

        // Every job is completed twice at once, once through each gateway.
        var completions = await Task.WhenAll(jobs.SelectMany(job => new[]
        {
            Task.Run(() => PostAsync(viaFirst, $"api/jobs/{job}/complete", """{"status": "completed"}""")),
            Task.Run(() => PostAsync(viaSecond, $"api/jobs/{job}/complete", """{"status": "completed"}""")),
        }));

        Assert.All(completions, c => c.AssertStatus(HttpStatusCode.OK));
        Assert.Equal(15, completions.Count(c => !c.Json.GetProperty("already_completed").GetBoolean()));
        Assert.Equal(0, await Host.Store.GetBalanceAsync(teamId, CancellationToken.None));
        var ledger = await second.Store.ListTransactionsAsync(teamId, 1000, 0, CancellationToken.None);
        Assert.Equal(15, ledger.Count(t => t.Reason == CreditReasons.JobCharge));
        Assert.Equal(15, ledger.Where(t => t.JobId is not null).Select(t => t.JobId).Distinct().Count());
        Assert.All(ledger, t => Assert.True(t.BalanceAfter >= 0));

        // Both gateways now refuse new work for the team.
        (await PostAsync(viaFirst, "api/jobs/create")).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
        (await PostAsync(viaSecond, "api/jobs/create")).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
    }

    [Fact]
    public async Task A_model_group_created_through_one_gateway_is_routable_through_the_other()
    {
        var second = await StartGatewayAsync();
        (await ChatAsync(second.Admin, "ResumeAgent")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "ResumeAgent", "models": ["sim-fast"]}""")).AssertStatus(HttpStatusCode.OK);
        var (_, key) = await Host.NewTeamAsync(5, """, "model_groups": ["ResumeAgent"]""");
        using var viaSecond = second.NewClient(key);

        // A miss is remembered for a few seconds; bounded wait until the second gateway looks again.
        var deadline = Stopwatch.GetTimestamp() + (15 * Stopwatch.Frequency);
        ApiResponse answer;
        do
        {
            answer = await ChatAsync(viaSecond, "ResumeAgent");
            if (answer.Status == HttpStatusCode.OK)
            {
                break;
            }

            await Task.Delay(100);
        }
        while (Stopwatch.GetTimestamp() < deadline);

        Assert.Equal("ResumeAgent", answer.AssertStatus(HttpStatusCode.OK).Json.GetProperty("model").GetString());
    }

    [Fact]
    public async Task A_database_outage_answers_503_with_advice_not_a_bare_500()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        var database = new Npgsql.NpgsqlConnectionStringBuilder(StoreConnection).Database;
        await using (var admin = new Npgsql.NpgsqlConnection(PostgresDatabases.Admin()))
        {
            await admin.OpenAsync();
            await using var drop = new Npgsql.NpgsqlCommand($"DROP DATABASE {database} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        }

        using var unknown = Host.NewClient("sk-sluice-" + new string('Q', 40));
        var outage = (await ChatAsync(unknown)).AssertError(HttpStatusCode.ServiceUnavailable, "server_error", "store_unavailable");
        Assert.Equal("1", outage.Header("retry-after"));
        (await GetAsync(Host.Admin, $"api/teams/{teamId}")).AssertError(HttpStatusCode.ServiceUnavailable, "server_error", "store_unavailable");
        Assert.False(string.IsNullOrEmpty(key));
    }

    [Fact]
    public async Task A_key_revoked_through_one_gateway_stops_on_the_other_within_the_cache_time()
    {
        var second = await StartGatewayAsync(configure: o => o.Tenancy.KeyCacheSeconds = 0.5);
        var (teamId, key) = await Host.NewTeamAsync(5);
        using var viaSecond = second.NewClient(key);
        (await ChatAsync(viaSecond)).AssertStatus(HttpStatusCode.OK);
        var keyId = (await GetAsync(Host.Admin, $"api/teams/{teamId}/keys")).Json.GetProperty("keys")[0].GetProperty("key_id").GetString();
        (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys/{keyId}/revoke")).AssertStatus(HttpStatusCode.OK);
        using var viaFirst = Host.NewClient(key);
        (await ChatAsync(viaFirst)).AssertError(HttpStatusCode.Unauthorized, "authentication_error");

        // The second gateway learns of it when its cached entry expires (bounded wait, generous for a busy machine).
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        ApiResponse answer;
        do
        {
            answer = await ChatAsync(viaSecond);
            if (answer.Status == HttpStatusCode.Unauthorized)
            {
                break;
            }

            await Task.Delay(50);
        }
        while (Stopwatch.GetTimestamp() < deadline);

        answer.AssertError(HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");
    }
}
