using System.Net;
using Sluice.Gateway.Tenancy;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

public abstract class AuthTests : TenancyTestBase
{
    [Fact]
    public async Task Without_a_key_v1_and_api_answer_401_in_the_openai_shape_while_health_stays_open()
    {
        // Unknown paths declare no key: they answer the JSON 404 (under /api in Ollama's shape, for its clients' probes).
        var unknown = (await GetAsync(Host.Anonymous, "api/no-such-endpoint")).AssertStatus(HttpStatusCode.NotFound);
        Assert.Contains("api/no-such-endpoint", unknown.Json.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.NotNull(unknown.Header("x-request-id"));

        (await ChatAsync(Host.Anonymous)).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "missing_api_key");
        (await GetAsync(Host.Anonymous, "v1/models")).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "missing_api_key");
        (await GetAsync(Host.Anonymous, "api/model-groups")).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "missing_api_key");
        (await PostAsync(Host.Anonymous, "api/jobs/create")).AssertError(HttpStatusCode.Unauthorized, "authentication_error");

        var health = (await GetAsync(Host.Anonymous, "health")).AssertStatus(HttpStatusCode.OK);
        Assert.Equal("ok", health.Json.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Master_key_works_as_bearer_and_x_api_key_and_a_wrong_one_is_refused()
    {
        (await ChatAsync(Host.Admin)).AssertStatus(HttpStatusCode.OK);
        using var header = Host.NewClient(MasterKey, asApiKeyHeader: true);
        (await ChatAsync(header)).AssertStatus(HttpStatusCode.OK);
        (await GetAsync(header, "api/model-groups")).AssertStatus(HttpStatusCode.OK);

        using var wrong = Host.NewClient(MasterKey + "x");
        (await ChatAsync(wrong)).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");
    }

    [Fact]
    public async Task Virtual_keys_work_both_ways_and_unknown_revoked_and_expired_keys_get_the_same_401()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        using var bearer = Host.NewClient(key);
        using var header = Host.NewClient(key, asApiKeyHeader: true);
        (await ChatAsync(bearer)).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(header)).AssertStatus(HttpStatusCode.OK);

        using var unknown = Host.NewClient("sk-sluice-" + new string('A', 40));
        var unknownAnswer = (await ChatAsync(unknown)).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");

        // Revoked through the API: refused at once by this gateway (its cache entry is dropped).
        var extra = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"key_alias": "ci"}""")).AssertStatus(HttpStatusCode.OK);
        using var revokedClient = Host.NewClient(extra.Json.GetProperty("virtual_key").GetString());
        (await ChatAsync(revokedClient)).AssertStatus(HttpStatusCode.OK);
        var revoke = await PostAsync(Host.Admin, $"api/teams/{teamId}/keys/{extra.Json.GetProperty("key_id").GetString()}/revoke");
        Assert.Equal("revoked", revoke.AssertStatus(HttpStatusCode.OK).Json.GetProperty("status").GetString());
        var revokedAnswer = (await ChatAsync(revokedClient)).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");

        // Expired: checked on every use, even while the key is cached.
        var expiring = await PostAsync(
            Host.Admin, $"api/teams/{teamId}/keys", $$"""{"expires_at": "{{Time.GetUtcNow().AddHours(1):O}}"}""");
        using var expiringClient = Host.NewClient(expiring.AssertStatus(HttpStatusCode.OK).Json.GetProperty("virtual_key").GetString());
        (await ChatAsync(expiringClient)).AssertStatus(HttpStatusCode.OK);
        Time.Advance(TimeSpan.FromHours(2));
        var expiredAnswer = (await ChatAsync(expiringClient)).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");

        Assert.Equal(unknownAnswer.Body, revokedAnswer.Body);
        Assert.Equal(unknownAnswer.Body, expiredAnswer.Body);
        (await ChatAsync(bearer)).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task A_cached_virtual_key_and_the_master_key_are_checked_from_a_slice_of_the_header_without_copying_them()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        var authenticator = Host.Gateway.GetRequiredService<KeyAuthenticator>();

        // Slices of longer values, as the HTTP path hands them over (no string of the key alone exists).
        var virtualKey = ("Bearer " + key + "  ").AsMemory()["Bearer ".Length..].Trim();
        var masterKey = ("Bearer " + MasterKey).AsMemory()["Bearer ".Length..];
        var (caller, error) = await authenticator.AuthenticateAsync(virtualKey, CancellationToken.None);
        Assert.Null(error);
        Assert.Equal(teamId, caller!.TeamId);
        Assert.True((await authenticator.AuthenticateAsync(masterKey, CancellationToken.None)).Caller!.IsOperator);
        var wrong = ("x" + MasterKey).AsMemory()[1..^1];
        Assert.Equal("invalid_api_key", (await authenticator.AuthenticateAsync(wrong, CancellationToken.None)).Error!.Error.Code);

        // Warm: a Caller per virtual-key call (32 bytes), nothing per master-key call. Encoding the presented key to
        // compare it with the master key, or cutting it out of the header, would be ~100 bytes a call.
        const int Calls = 200;
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Calls; i++)
        {
            var checkedKey = authenticator.AuthenticateAsync(i % 2 == 0 ? virtualKey : masterKey, CancellationToken.None);
            Assert.True(checkedKey.IsCompletedSuccessfully);
            Assert.Null((await checkedKey).Error);
        }

        var perCall = (GC.GetAllocatedBytesForCurrentThread() - before) / (double)Calls;
#if DEBUG
        // Debug builds make every async state machine a class: an object per call whatever the code does.
        const double Allowed = 400;
#else
        const double Allowed = 40;
#endif
        Assert.InRange(perCall, 0, Allowed);
    }

    [Fact]
    public async Task Team_keys_cannot_use_operator_endpoints()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        using var team = Host.NewClient(key);
        var keys = await GetAsync(Host.Admin, $"api/teams/{teamId}/keys");
        var keyId = keys.AssertStatus(HttpStatusCode.OK).Json.GetProperty("keys")[0].GetProperty("key_id").GetString();

        var refused = new[]
        {
            await PostAsync(team, "api/organizations/create", """{"name": "mine"}"""),
            await GetAsync(team, "api/organizations/org_whatever"),
            await GetAsync(team, "api/organizations/org_whatever/teams"),
            await PostAsync(team, "api/model-groups/create", """{"group_name": "g", "models": ["sim-fast"]}"""),
            await PostAsync(team, "api/teams/create", """{"organization_id": "o", "team_alias": "t"}"""),
            await SendAsync(team, HttpMethod.Put, $"api/teams/{teamId}/model-groups", """["sim-fast"]"""),
            await SendAsync(team, HttpMethod.Put, $"api/teams/{teamId}/limits", """{"rpm_limit": 1000}"""),
            await PostAsync(team, $"api/teams/{teamId}/keys", "{}"),
            await PostAsync(team, $"api/teams/{teamId}/keys/{keyId}/revoke"),
            await PostAsync(team, $"api/credits/teams/{teamId}/add", """{"credits_amount": 1000}"""),
        };
        Assert.All(refused, r => r.AssertError(HttpStatusCode.Forbidden, "permission_error", "master_key_required"));
        Assert.Equal(5, (await GetAsync(team, $"api/credits/teams/{teamId}/balance")).Json.GetProperty("credits_remaining").GetInt64());
        (await ChatAsync(team)).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Another_teams_objects_look_exactly_like_missing_ones()
    {
        var (teamA, keyA) = await Host.NewTeamAsync(5);
        var (teamB, keyB) = await Host.NewTeamAsync(5);
        using var a = Host.NewClient(keyA);
        using var b = Host.NewClient(keyB);
        var jobB = (await PostAsync(b, "api/jobs/create")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString()!;
        const string missingTeam = "team_missing_0123456789";
        const string missingJob = "job_missing_0123456789";

        async Task SameAsMissing(Func<string, Task<ApiResponse>> call, string existing, string missing)
        {
            var other = await call(existing);
            var absent = await call(missing);
            other.AssertError(HttpStatusCode.NotFound, "invalid_request_error");
            Assert.Equal(absent.Status, other.Status);
            Assert.Equal(absent.Body.Replace(missing, "ID", StringComparison.Ordinal), other.Body.Replace(existing, "ID", StringComparison.Ordinal));
        }

        await SameAsMissing(id => GetAsync(a, $"api/teams/{id}"), teamB, missingTeam);
        await SameAsMissing(id => GetAsync(a, $"api/teams/{id}/keys"), teamB, missingTeam);
        await SameAsMissing(id => GetAsync(a, $"api/teams/{id}/jobs"), teamB, missingTeam);
        await SameAsMissing(id => GetAsync(a, $"api/credits/teams/{id}/balance"), teamB, missingTeam);
        await SameAsMissing(id => PostAsync(a, $"api/credits/teams/{id}/check", """{"credits_required": 1}"""), teamB, missingTeam);
        await SameAsMissing(id => GetAsync(a, $"api/credits/teams/{id}/transactions"), teamB, missingTeam);
        await SameAsMissing(id => PostAsync(a, "api/jobs/create", $$"""{"team_id": "{{id}}"}"""), teamB, missingTeam);
        await SameAsMissing(id => GetAsync(a, $"api/jobs/{id}"), jobB, missingJob);
        await SameAsMissing(
            id => PostAsync(a, $"api/jobs/{id}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "hi"}]}"""), jobB, missingJob);
        await SameAsMissing(
            id => PostAsync(a, $"api/jobs/{id}/llm-call-stream", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "hi"}]}"""), jobB, missingJob);
        await SameAsMissing(id => PostAsync(a, $"api/jobs/{id}/complete", """{"status": "completed"}"""), jobB, missingJob);

        // Nothing of B changed, and B's own view is intact.
        var job = (await GetAsync(b, $"api/jobs/{jobB}")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("pending", job.GetProperty("status").GetString());
        Assert.Equal(5, (await GetAsync(b, $"api/credits/teams/{teamB}/balance")).Json.GetProperty("credits_remaining").GetInt64());
        (await GetAsync(a, $"api/teams/{teamA}")).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Open_mode_needs_no_key_but_still_checks_and_bills_sluice_keys()
    {
        var open = await StartGatewayAsync(masterKey: null);
        (await ChatAsync(open.Anonymous)).AssertStatus(HttpStatusCode.OK);
        using var foreign = open.NewClient("sk-test-anything");
        (await ChatAsync(foreign)).AssertStatus(HttpStatusCode.OK);
        (await PostAsync(open.Anonymous, "api/organizations/create", """{"name": "local"}""")).AssertStatus(HttpStatusCode.OK);

        using var bad = open.NewClient("sk-sluice-" + new string('B', 40));
        (await ChatAsync(bad)).AssertError(HttpStatusCode.Unauthorized, "authentication_error", "invalid_api_key");

        var (teamId, key) = await open.NewTeamAsync(3);
        using var team = open.NewClient(key);
        (await ChatAsync(team)).AssertStatus(HttpStatusCode.OK);
        var row = Assert.Single(await open.WaitForUsageAsync(teamId, 1));
        Assert.Equal(teamId, row.TeamId);
        Assert.NotNull(row.KeyId);
    }
}

public sealed class SqliteAuthTests : AuthTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}

public sealed class PostgresAuthTests : AuthTests
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();
}
