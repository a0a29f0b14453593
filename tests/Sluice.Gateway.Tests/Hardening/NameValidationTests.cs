using System.Net;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Storage;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Every name and id an operator or a tenant sets goes through one validator: NUL, a right-to-left override and a
/// 100,000-character value are refused with a 400 naming the field, and nothing is stored.
/// </summary>
public sealed class NameValidationTests : IAsyncLifetime
{
    private static readonly string Huge = new('n', 100_000);
    private readonly SqliteDatabases _databases = new();
    private TenancyHost _host = null!;
    private string _teamId = "";
    private string _organizationId = "";

    public async Task InitializeAsync()
    {
        _host = await StartAsync(await _databases.CreateAsync());
        (_teamId, _) = await _host.NewTeamAsync(10);
        _organizationId = (await _host.Store.GetTeamAsync(_teamId, CancellationToken.None))!.OrganizationId;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _databases.DisposeAsync();
    }

    /// <summary>Path and body with <c>@@</c> where the name goes, and the field the 400 must name.</summary>
    public static TheoryData<string, string, string> Fields() => new()
    {
        { "api/model-groups/create", """{"group_name": "@@", "models": ["sim-fast"]}""", "group_name" },
        { "api/model-groups/create", """{"group_name": "ok-group", "display_name": "@@", "models": ["sim-fast"]}""", "display_name" },
        { "api/model-groups/create", """{"group_name": "ok-group", "description": "@@", "models": ["sim-fast"]}""", "description" },
        { "api/model-groups/create", """{"group_name": "ok-group", "models": ["@@"]}""", "models[0]" },
        { "api/organizations/create", """{"name": "@@"}""", "name" },
        { "api/organizations/create", """{"organization_id": "@@", "name": "Fine"}""", "organization_id" },
        { "api/teams/create", """{"organization_id": "{org}", "team_alias": "@@"}""", "team_alias" },
        { "api/teams/create", """{"organization_id": "{org}", "team_id": "@@", "team_alias": "Fine"}""", "team_id" },
        { "api/teams/create", """{"organization_id": "{org}", "team_alias": "Fine", "key_alias": "@@"}""", "key_alias" },
        { "api/teams/{team}/keys", """{"key_alias": "@@"}""", "key_alias" },
        { "api/sessions", """{"title": "@@"}""", "title" },
        { "api/sessions", """{"metadata": {"app": "@@"}}""", "metadata.app" },
        { "api/sessions", """{"metadata": {"@@": "x"}}""", "metadata" },
        { "api/jobs/create", """{"team_id": "{team}", "job_type": "@@"}""", "job_type" },
        { "api/credits/teams/{team}/add", """{"credits_amount": 1, "reason": "@@"}""", "reason" },
    };

    [Theory]
    [MemberData(nameof(Fields))]
    public async Task NUL_is_refused(string path, string body, string field) => await AssertRefusedAsync(path, body, "a\\u0000b", field);

    [Theory]
    [MemberData(nameof(Fields))]
    public async Task A_right_to_left_override_is_refused(string path, string body, string field) => await AssertRefusedAsync(path, body, "\\u202Egnp.exe", field);

    [Theory]
    [MemberData(nameof(Fields))]
    public async Task A_100000_character_name_is_refused(string path, string body, string field) => await AssertRefusedAsync(path, body, Huge, field);

    [Fact]
    public async Task Ordinary_names_emoji_and_accents_are_accepted()
    {
        (await PostAsync(_host.Admin, "api/model-groups/create", """{"group_name": "llama3.1:8b-chat", "display_name": "Café ☕ 👩‍💻", "models": ["sim-fast"]}"""))
            .AssertStatus(HttpStatusCode.OK);
        (await PostAsync(_host.Admin, "api/sessions", """{"title": "Réunion d'équipe 👨‍👩‍👧", "metadata": {"app": "line one\nline two"}}""")).AssertStatus(HttpStatusCode.Created);
    }

    [Fact]
    public async Task The_store_refuses_what_the_gateway_would_have_refused()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => _host.Store.CreateModelGroupAsync(new NewModelGroup("bad\u202Ename", ["sim-fast"]), CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(() => _host.Store.CreateOrganizationAsync("nul\0name", CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(() => _host.Store.CreateKeyAsync(_teamId, new NewKey(Huge), CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(() => _host.Store.CreateSessionAsync("owner", new NewChatSession(4096, Title: "\u202E"), CancellationToken.None));
    }

    [Fact]
    public async Task A_session_title_taken_from_the_first_message_drops_control_and_bidi_characters()
    {
        using var response = await _host.Admin.PostAsync("api/llm/chat/session/stream", Json("""{"message": "\u202Eevil\u0007 title", "max_tokens": 3}"""));
        var sessionId = Assert.Single(response.Headers.GetValues("x-sluice-session-id"));
        _ = await response.Content.ReadAsStringAsync();
        var session = await _host.Store.GetSessionAsync(SessionOwners.Operator, sessionId, CancellationToken.None);
        Assert.Equal("evil  title", session!.Title?.Trim());
        Assert.Null(NameRules.Check(NameKind.Label, session.Title!));
    }

    private async Task AssertRefusedAsync(string path, string body, string value, string field)
    {
        path = path.Replace("{team}", _teamId, StringComparison.Ordinal);
        body = body.Replace("{org}", _organizationId, StringComparison.Ordinal).Replace("{team}", _teamId, StringComparison.Ordinal)
            .Replace("@@", value, StringComparison.Ordinal);
        var before = await CountsAsync();
        var response = await PostAsync(_host.Admin, path, body);
        response.AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        Assert.Equal(field, response.Error.GetProperty("param").GetString());
        var message = response.Error.GetProperty("message").GetString()!;
        Assert.True(message.Length < 400, "the message does not echo the value: " + message[..Math.Min(400, message.Length)]);
        Assert.DoesNotContain('\u202E', message);
        Assert.DoesNotContain('\0', message);
        Assert.Equal(before, await CountsAsync());
    }

    private async Task<string> CountsAsync()
    {
        var store = _host.Store;
        return string.Join(
            ",",
            (await store.ListModelGroupsAsync(CancellationToken.None)).Count,
            (await store.ListTeamsAsync(_organizationId, CancellationToken.None)).Count,
            (await store.ListKeysAsync(_teamId, CancellationToken.None)).Count,
            (await store.ListSessionsAsync(SessionOwners.Operator, 1000, 0, CancellationToken.None)).Count,
            (await store.ListJobsAsync(_teamId, 1000, 0, CancellationToken.None)).Count,
            (await store.ListTransactionsAsync(_teamId, 1000, 0, CancellationToken.None)).Count);
    }
}
