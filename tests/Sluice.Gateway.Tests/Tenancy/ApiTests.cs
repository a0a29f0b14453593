using System.Net;
using System.Text.Json;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>Organizations, model groups, teams, keys and credits, with the integration guide's paths and fields.</summary>
public abstract class ApiTests : TenancyTestBase
{
    [Fact]
    public async Task Organizations_are_created_read_and_list_their_teams()
    {
        var created = (await PostAsync(Host.Admin, "api/organizations/create", """{"organization_id": "org_acme", "name": "Acme"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(("org_acme", "Acme", "active"), (created.GetProperty("organization_id").GetString(), created.GetProperty("name").GetString(), created.GetProperty("status").GetString()));

        (await PostAsync(Host.Admin, "api/organizations/create", """{"organization_id": "org_acme", "name": "Other"}""")).AssertError(HttpStatusCode.Conflict, "invalid_request_error", "conflict");
        (await PostAsync(Host.Admin, "api/organizations/create", """{"organization_id": "has space", "name": "Bad"}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await PostAsync(Host.Admin, "api/organizations/create", "{}")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "missing_required_parameter");
        (await PostAsync(Host.Admin, "api/organizations/create", "{not json")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "invalid_json");

        Assert.Equal("Acme", (await GetAsync(Host.Admin, "api/organizations/org_acme")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("name").GetString());
        (await GetAsync(Host.Admin, "api/organizations/org_nope")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "organization_not_found");

        Assert.Equal(0, (await GetAsync(Host.Admin, "api/organizations/org_acme/teams")).Json.GetProperty("teams").GetArrayLength());
        (await PostAsync(Host.Admin, "api/teams/create", """{"organization_id": "org_acme", "team_id": "team_eng", "team_alias": "Engineering", "credits_allocated": 5}""")).AssertStatus(HttpStatusCode.OK);
        var teams = (await GetAsync(Host.Admin, "api/organizations/org_acme/teams")).Json;
        Assert.Equal(1, teams.GetProperty("team_count").GetInt32());
        var team = teams.GetProperty("teams")[0];
        Assert.Equal(("team_eng", "Engineering"), (team.GetProperty("team_id").GetString(), team.GetProperty("team_alias").GetString()));
        Assert.False(team.TryGetProperty("virtual_key", out _));
        (await GetAsync(Host.Admin, "api/organizations/org_nope/teams")).AssertError(HttpStatusCode.NotFound, "invalid_request_error");
    }

    [Fact]
    public async Task Model_groups_are_stored_in_priority_order_listed_read_and_routable()
    {
        var created = (await PostAsync(
            Host.Admin,
            "api/model-groups/create",
            """{"group_name": "ChatAgent", "display_name": "Chat Agent", "description": "General chat", "models": [{"model_name": "sim-slow", "priority": 1}, {"model_name": "sim-fast", "priority": 0}]}"""))
            .AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("ChatAgent", created.GetProperty("group_name").GetString());
        Assert.Equal(["sim-fast", "sim-slow"], created.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("model_name").GetString()));
        Assert.Equal([0, 1], created.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("priority").GetInt32()));

        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "Plain", "models": ["sim-realistic"]}""")).AssertStatus(HttpStatusCode.OK);
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "ChatAgent", "models": ["sim-fast"]}""")).AssertError(HttpStatusCode.Conflict, "invalid_request_error", "conflict");
        var unknown = (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "Bad", "models": ["gpt-9"]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Contains("gpt-9", unknown.Error.GetProperty("message").GetString(), StringComparison.Ordinal);
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "sim-fast", "models": ["sim-slow"]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "Empty", "models": []}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "missing_required_parameter");

        var list = (await GetAsync(Host.Admin, "api/model-groups")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(["ChatAgent", "Plain"], list.EnumerateArray().Select(g => g.GetProperty("group_name").GetString()));
        Assert.Equal("Chat Agent", (await GetAsync(Host.Admin, "api/model-groups/ChatAgent")).Json.GetProperty("display_name").GetString());
        (await GetAsync(Host.Admin, "api/model-groups/Nope")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "model_group_not_found");

        // A created group is a routing target at once: /v1 serves it and lists it.
        var chat = (await ChatAsync(Host.Admin, "ChatAgent")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("ChatAgent", chat.GetProperty("model").GetString());
        Assert.False(string.IsNullOrEmpty(chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()));
        var models = (await GetAsync(Host.Admin, "v1/models")).Json.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.Contains("ChatAgent", models);
        Assert.Contains("Plain", models);
    }

    [Fact]
    public async Task Teams_are_created_with_a_virtual_key_credits_and_model_groups()
    {
        (await PostAsync(Host.Admin, "api/organizations/create", """{"organization_id": "org_x", "name": "X"}""")).AssertStatus(HttpStatusCode.OK);
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "ChatAgent", "models": ["sim-fast"]}""")).AssertStatus(HttpStatusCode.OK);
        var created = (await PostAsync(
            Host.Admin,
            "api/teams/create",
            """{"organization_id": "org_x", "team_id": "team_engineering", "team_alias": "Engineering Team", "model_groups": ["ChatAgent"], "credits_allocated": 100, "metadata": {"x": 1}}"""))
            .AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("team_engineering", created.GetProperty("team_id").GetString());
        Assert.StartsWith("sk-sluice-", created.GetProperty("virtual_key").GetString(), StringComparison.Ordinal);
        Assert.Equal((100, 100), (created.GetProperty("credits_allocated").GetInt64(), created.GetProperty("credits_remaining").GetInt64()));
        Assert.Equal(["ChatAgent"], created.GetProperty("model_groups").EnumerateArray().Select(g => g.GetString()));

        using var team = Host.NewClient(created.GetProperty("virtual_key").GetString());
        var read = (await GetAsync(team, "api/teams/team_engineering")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("Engineering Team", read.GetProperty("team_alias").GetString());
        Assert.Equal(0, read.GetProperty("credits").GetProperty("credits_used").GetInt64());
        Assert.False(read.TryGetProperty("virtual_key", out _));

        (await PostAsync(Host.Admin, "api/teams/create", """{"organization_id": "org_x", "team_id": "team_engineering", "team_alias": "Again"}""")).AssertError(HttpStatusCode.Conflict, "invalid_request_error");
        (await PostAsync(Host.Admin, "api/teams/create", """{"organization_id": "org_missing", "team_alias": "T"}""")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "organization_not_found");
        (await PostAsync(Host.Admin, "api/teams/create", """{"organization_id": "org_x", "team_alias": "T", "model_groups": ["Nope"]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "model_not_found");
        (await PostAsync(Host.Admin, "api/teams/create", """{"organization_id": "org_x", "team_alias": "T", "credits_allocated": -1}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");

        var reassigned = (await SendAsync(Host.Admin, HttpMethod.Put, "api/teams/team_engineering/model-groups", """["ChatAgent", "sim-realistic"]""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(["ChatAgent", "sim-realistic"], reassigned.GetProperty("model_groups").EnumerateArray().Select(g => g.GetString()));
        (await SendAsync(Host.Admin, HttpMethod.Put, "api/teams/team_engineering/model-groups", """{"model_groups": ["Nope"]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await SendAsync(Host.Admin, HttpMethod.Put, "api/teams/team_missing/model-groups", """["ChatAgent"]""")).AssertError(HttpStatusCode.NotFound, "invalid_request_error");
        (await ChatAsync(team, "sim-realistic")).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Keys_are_created_listed_without_secrets_and_revoked()
    {
        var (teamId, firstKey) = await Host.NewTeamAsync(5);
        var created = (await PostAsync(
            Host.Admin, $"api/teams/{teamId}/keys", """{"key_alias": "ci", "models": ["sim-fast"], "rpm_limit": 100, "tpm_limit": 5000, "max_parallel_requests": 3}"""))
            .AssertStatus(HttpStatusCode.OK).Json;
        var secret = created.GetProperty("virtual_key").GetString()!;
        Assert.StartsWith("sk-sluice-", secret, StringComparison.Ordinal);
        Assert.Equal(("ci", "active", 100), (created.GetProperty("key_alias").GetString(), created.GetProperty("status").GetString(), created.GetProperty("rpm_limit").GetInt32()));
        Assert.Equal(secret[..16], created.GetProperty("key_prefix").GetString());

        using var team = Host.NewClient(firstKey);
        var listing = (await GetAsync(team, $"api/teams/{teamId}/keys")).AssertStatus(HttpStatusCode.OK);
        var keys = listing.Json.GetProperty("keys").EnumerateArray().ToList();
        Assert.Equal(["default", "ci"], keys.Select(k => k.GetProperty("key_alias").GetString()));
        Assert.DoesNotContain(secret, listing.Body, StringComparison.Ordinal);
        Assert.DoesNotContain(firstKey, listing.Body, StringComparison.Ordinal);
        Assert.All(keys, k => Assert.False(k.TryGetProperty("virtual_key", out _)));

        var keyId = created.GetProperty("key_id").GetString();
        (await SendAsync(Host.Admin, HttpMethod.Delete, $"api/teams/{teamId}/keys/{keyId}")).AssertStatus(HttpStatusCode.OK);
        var again = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys/{keyId}/revoke")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("revoked", again.GetProperty("status").GetString());
        (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys/key_missing/revoke")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "key_not_found");
        (await PostAsync(Host.Admin, "api/teams/team_missing/keys", "{}")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "team_not_found");
        (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"expires_at": "2001-01-01T00:00:00Z"}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"models": ["gpt-9"]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "model_not_found");
        (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"rpm_limit": 0}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");

        var statuses = (await GetAsync(Host.Admin, $"api/teams/{teamId}/keys")).Json.GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("status").GetString());
        Assert.Equal(["active", "revoked"], statuses);
    }

    [Fact]
    public async Task Model_access_is_enforced_per_team_and_per_key_with_403()
    {
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "ChatAgent", "models": ["sim-fast", "sim-slow"]}""")).AssertStatus(HttpStatusCode.OK);
        var (restrictedTeam, restrictedKey) = await Host.NewTeamAsync(5, """, "model_groups": ["ChatAgent"]""");
        using var restricted = Host.NewClient(restrictedKey);
        var refused = (await ChatAsync(restricted, "sim-fast")).AssertError(HttpStatusCode.Forbidden, "permission_error", "model_not_allowed");
        Assert.Equal("model", refused.Error.GetProperty("param").GetString());
        (await ChatAsync(restricted, "ChatAgent")).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(restricted, "no-such-model")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");

        var job = (await PostAsync(restricted, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        (await PostAsync(restricted, $"api/jobs/{job}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "hi"}]}"""))
            .AssertError(HttpStatusCode.Forbidden, "permission_error", "model_not_allowed");
        (await PostAsync(restricted, $"api/jobs/{job}/llm-call", """{"model_group": "ChatAgent", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}""")).AssertStatus(HttpStatusCode.OK);

        // A key may narrow what its (unrestricted) team may use.
        var (teamId, _) = await Host.NewTeamAsync(5);
        var narrow = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"models": ["sim-fast"]}""")).Json.GetProperty("virtual_key").GetString();
        using var narrowed = Host.NewClient(narrow);
        (await ChatAsync(narrowed, "sim-fast")).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(narrowed, "sim-realistic")).AssertError(HttpStatusCode.Forbidden, "permission_error", "model_not_allowed");
        Assert.NotEqual(restrictedTeam, teamId);
    }

    [Fact]
    public async Task Credits_balance_add_check_and_paged_transactions()
    {
        var (teamId, key) = await Host.NewTeamAsync(3);
        using var team = Host.NewClient(key);
        var balance = (await GetAsync(team, $"api/credits/teams/{teamId}/balance")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal((3, 0, 3), (balance.GetProperty("credits_allocated").GetInt64(), balance.GetProperty("credits_used").GetInt64(), balance.GetProperty("credits_remaining").GetInt64()));

        var check = (await PostAsync(team, $"api/credits/teams/{teamId}/check", """{"credits_required": 5}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.False(check.GetProperty("available").GetBoolean());
        Assert.True((await PostAsync(team, $"api/credits/teams/{teamId}/check")).Json.GetProperty("available").GetBoolean());

        var added = (await PostAsync(Host.Admin, $"api/credits/teams/{teamId}/add", """{"credits_amount": 10, "reason": "Monthly refill"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(13, added.GetProperty("credits_remaining").GetInt64());
        Assert.Equal(13, added.GetProperty("transaction").GetProperty("balance_after").GetInt64());
        (await PostAsync(Host.Admin, $"api/credits/teams/{teamId}/add", """{"credits_amount": 0}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await PostAsync(Host.Admin, $"api/credits/teams/{teamId}/add", """{"credits_amount": "ten"}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "invalid_type");
        (await PostAsync(Host.Admin, "api/credits/teams/team_missing/add", """{"credits_amount": 1}""")).AssertError(HttpStatusCode.NotFound, "invalid_request_error");

        var job = (await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK);

        var all = (await GetAsync(team, $"api/credits/teams/{teamId}/transactions")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("transactions").EnumerateArray().ToList();
        Assert.Equal([-1L, 10L, 3L], all.Select(t => t.GetProperty("amount").GetInt64()));
        Assert.Equal([12L, 13L, 3L], all.Select(t => t.GetProperty("balance_after").GetInt64()));
        Assert.Equal(["deduction", "addition", "allocation"], all.Select(t => t.GetProperty("transaction_type").GetString()));
        Assert.Equal(job, all[0].GetProperty("job_id").GetString());
        Assert.Equal("Monthly refill", all[1].GetProperty("reason").GetString());

        var page = (await GetAsync(team, $"api/credits/teams/{teamId}/transactions?limit=1&offset=1")).Json.GetProperty("transactions");
        Assert.Equal(10, Assert.Single(page.EnumerateArray()).GetProperty("amount").GetInt64());
        (await GetAsync(team, $"api/credits/teams/{teamId}/transactions?limit=0")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await GetAsync(team, $"api/credits/teams/{teamId}/transactions?offset=-1")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Equal(12, (await GetAsync(Host.Admin, $"api/credits/teams/{teamId}/balance")).Json.GetProperty("credits_remaining").GetInt64());
    }

    [Fact]
    public async Task A_team_without_credits_gets_403_on_model_calls_and_jobs_until_credits_are_added()
    {
        var (teamId, key) = await Host.NewTeamAsync(0);
        using var team = Host.NewClient(key);
        (await ChatAsync(team)).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
        (await PostAsync(team, "api/jobs/create", """{"job_type": "document_analysis"}""")).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
        (await PostAsync(Host.Admin, "api/jobs/create", $$"""{"team_id": "{{teamId}}"}""")).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");

        (await PostAsync(Host.Admin, $"api/credits/teams/{teamId}/add", """{"credits_amount": 1}""")).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(team)).AssertStatus(HttpStatusCode.OK);
        var job = (await PostAsync(team, "api/jobs/create")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString();

        // Spending the last credit (here) closes the door again at once.
        (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(team)).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
        Assert.Equal(0, (await GetAsync(team, $"api/credits/teams/{teamId}/balance")).Json.GetProperty("credits_remaining").GetInt64());
    }

    [Fact]
    public async Task Bad_request_bodies_name_the_field()
    {
        var wrongType = (await PostAsync(Host.Admin, "api/organizations/create", """{"name": 5}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "invalid_type");
        Assert.Equal("name", wrongType.Error.GetProperty("param").GetString());
        var array = (await PostAsync(Host.Admin, "api/organizations/create", """["name"]""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "invalid_type");
        Assert.Equal(JsonValueKind.Null, array.Error.GetProperty("param").ValueKind);
        var models = (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "g", "models": [{"priority": 0}]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Equal("models[0].model_name", models.Error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task A_misspelt_field_is_refused_naming_it_and_the_closest_known_one_and_nothing_is_created()
    {
        (await PostAsync(Host.Admin, "api/organizations/create", """{"organization_id": "org_typo"}""")).AssertStatus(HttpStatusCode.OK);
        foreach (var (path, body, field, closest) in new[]
        {
            ("api/teams/create", """{"organization_id": "org_typo", "team_id": "team_typo", "credits": 500}""", "credits", "credits_allocated"),
            ("api/teams/create", """{"organization_id": "org_typo", "team_id": "team_typo", "rpm": 10}""", "rpm", "rpm_limit"),
            ("api/teams/create", """{"organization_id": "org_typo", "team_id": "team_typo", "max_budget": 10}""", "max_budget", null),
        })
        {
            var refused = (await PostAsync(Host.Admin, path, body)).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "unknown_parameter");
            Assert.Equal(field, refused.Error.GetProperty("param").GetString());
            var message = refused.Error.GetProperty("message").GetString()!;
            Assert.Contains("credits_allocated", message, StringComparison.Ordinal);
            if (closest is not null)
            {
                Assert.Contains($"Did you mean '{closest}'?", message, StringComparison.Ordinal);
            }
            else
            {
                Assert.DoesNotContain("Did you mean", message, StringComparison.Ordinal);
            }
        }

        (await TenancyHost.SendAsync(Host.Admin, HttpMethod.Get, "api/teams/team_typo")).AssertError(HttpStatusCode.NotFound, "invalid_request_error");

        // A hostile name is echoed shortened, without a suggestion.
        var huge = new string('x', 100_000);
        var echoed = (await PostAsync(Host.Admin, "api/teams/create", $$"""{"organization_id": "org_typo", "{{huge}}": 1}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "unknown_parameter");
        Assert.True(echoed.Body.Length < 2_000, $"{echoed.Body.Length} bytes");
        var (team, _) = await Host.NewTeamAsync(10);
        var key = (await PostAsync(Host.Admin, $"api/teams/{team}/keys", """{"rpm_limt": 5}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "unknown_parameter");
        Assert.Contains("Did you mean 'rpm_limit'?", key.Error.GetProperty("message").GetString(), StringComparison.Ordinal);
        var credits = (await PostAsync(Host.Admin, $"api/credits/teams/{team}/add", """{"amount": 5}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "unknown_parameter");
        Assert.Equal("amount", credits.Error.GetProperty("param").GetString());
        (await TenancyHost.SendAsync(Host.Admin, HttpMethod.Put, $"api/teams/{team}/limits", """{"tpm": 5}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "unknown_parameter");
    }
}

public sealed class SqliteApiTests : ApiTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}

public sealed class PostgresApiTests : ApiTests
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();
}
