using System.Net;
using Sluice.Gateway.Tests.Tenancy;

namespace Sluice.Gateway.Tests.Responses;

/// <summary>
/// Stored responses belong to the team that created them: another team's key gets the unknown id's 404 on read,
/// input items, delete and as <c>previous_response_id</c>, word for word but for the id; the owner gets it.
/// </summary>
public sealed class OwnerScopedResponsesTests : TenancyTestBase
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();

    [Fact]
    public async Task A_team_keeps_its_newest_stored_responses_and_the_oldest_are_deleted()
    {
        var host = await StartGatewayAsync(configure: o => o.Responses.MaxStoredPerTeam = 2);
        var (_, key) = await host.NewTeamAsync(1000);
        var (_, otherKey) = await host.NewTeamAsync(10);
        using var team = host.NewClient(key);
        using var other = host.NewClient(otherKey);
        var others = (await TenancyHost.SendAsync(other, HttpMethod.Post, "v1/responses", """{"model": "sim-fast", "input": "Hi", "max_output_tokens": 2}""")).Json.GetProperty("id").GetString();

        // The trim runs at a team's first store in a process and then every 100th: after 101 stores, 2 are left.
        var ids = new List<string>();
        for (var i = 0; i < 1 + Gateway.Responses.StoredResponseRetention.TrimEvery; i++)
        {
            var created = await TenancyHost.SendAsync(team, HttpMethod.Post, "v1/responses", """{"model": "sim-fast", "input": "Hi", "max_output_tokens": 2}""");
            created.AssertStatus(HttpStatusCode.OK);
            ids.Add(created.Json.GetProperty("id").GetString()!);
        }

        var kept = new List<string>();
        foreach (var id in ids)
        {
            var read = await TenancyHost.SendAsync(team, HttpMethod.Get, $"v1/responses/{id}");
            if (read.Status == HttpStatusCode.OK)
            {
                kept.Add(id);
            }
            else
            {
                read.AssertError(HttpStatusCode.NotFound, "invalid_request_error");
            }
        }

        Assert.Equal(2, kept.Count);
        Assert.DoesNotContain(ids[0], kept);
        (await TenancyHost.SendAsync(other, HttpMethod.Get, $"v1/responses/{others}")).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Another_teams_key_gets_the_unknown_id_404_on_get_delete_and_previous_response_id()
    {
        var (_, ownerKey) = await Host.NewTeamAsync(10);
        var (_, otherKey) = await Host.NewTeamAsync(10);
        using var owner = Host.NewClient(ownerKey);
        using var other = Host.NewClient(otherKey);
        var created = await TenancyHost.SendAsync(owner, HttpMethod.Post, "v1/responses", """{"model": "sim-fast", "input": "Tell me about rivers", "max_output_tokens": 8}""");
        created.AssertStatus(HttpStatusCode.OK);
        var id = created.Json.GetProperty("id").GetString()!;
        const string Unknown = "resp_00000000000000000000000000000000";

        var unknownGet = await TenancyHost.SendAsync(other, HttpMethod.Get, $"v1/responses/{Unknown}");
        unknownGet.AssertError(HttpStatusCode.NotFound, "invalid_request_error");
        foreach (var refused in new[]
        {
            await TenancyHost.SendAsync(other, HttpMethod.Get, $"v1/responses/{id}"),
            await TenancyHost.SendAsync(other, HttpMethod.Delete, $"v1/responses/{id}"),
            await TenancyHost.SendAsync(other, HttpMethod.Get, $"v1/responses/{id}/input_items"),
        })
        {
            refused.AssertError(HttpStatusCode.NotFound, "invalid_request_error");
            Assert.Equal(
                unknownGet.Error.GetProperty("message").GetString()!.Replace(Unknown, id, StringComparison.Ordinal),
                refused.Error.GetProperty("message").GetString());
        }

        var unknownChain = await TenancyHost.SendAsync(other, HttpMethod.Post, "v1/responses", $$"""{"model": "sim-fast", "input": "More?", "previous_response_id": "{{Unknown}}"}""");
        var chained = await TenancyHost.SendAsync(other, HttpMethod.Post, "v1/responses", $$"""{"model": "sim-fast", "input": "More?", "previous_response_id": "{{id}}"}""");
        unknownChain.AssertError(HttpStatusCode.NotFound, "invalid_request_error");
        chained.AssertError(HttpStatusCode.NotFound, "invalid_request_error");
        Assert.Equal(
            unknownChain.Error.GetProperty("message").GetString()!.Replace(Unknown, id, StringComparison.Ordinal),
            chained.Error.GetProperty("message").GetString());

        // Refused deletes deleted nothing: the owner still reads it, then deletes it. (The master key's own responses are
        // its own, as with sessions: a team's stored conversation is not read through it.)
        (await TenancyHost.SendAsync(owner, HttpMethod.Get, $"v1/responses/{id}")).AssertStatus(HttpStatusCode.OK);
        (await TenancyHost.SendAsync(owner, HttpMethod.Get, $"v1/responses/{id}/input_items")).AssertStatus(HttpStatusCode.OK);
        (await TenancyHost.SendAsync(Host.Admin, HttpMethod.Get, $"v1/responses/{id}")).AssertError(HttpStatusCode.NotFound, "invalid_request_error");
        (await TenancyHost.SendAsync(owner, HttpMethod.Delete, $"v1/responses/{id}")).AssertStatus(HttpStatusCode.OK);
        (await TenancyHost.SendAsync(owner, HttpMethod.Get, $"v1/responses/{id}")).AssertError(HttpStatusCode.NotFound, "invalid_request_error");
    }
}
