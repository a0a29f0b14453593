using System.Net;
using Sluice.Gateway.Tests.Tenancy;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>What the info endpoints tell whom: liveness for anyone, figures for the operator, models a key can call.</summary>
public sealed class InfoAccessTests : IAsyncLifetime
{
    private readonly SqliteDatabases _databases = new();
    private TenancyHost _host = null!;

    public async Task InitializeAsync() => _host = await StartAsync(await _databases.CreateAsync());

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _databases.DisposeAsync();
    }

    [Fact]
    public async Task Health_is_public_liveness_and_its_figures_need_the_master_key()
    {
        var (_, key) = await _host.NewTeamAsync(5);
        using var team = _host.NewClient(key);
        (await ChatAsync(_host.Admin)).AssertStatus(HttpStatusCode.OK);

        foreach (var client in new[] { _host.Anonymous, team, _host.NewClient("sk-sluice-not-a-real-key") })
        {
            var open = (await GetAsync(client, "health")).AssertStatus(HttpStatusCode.OK).Json;
            Assert.Equal("ok", open.GetProperty("status").GetString());
            Assert.Equal(["status"], open.EnumerateObject().Select(p => p.Name));
        }

        var full = (await GetAsync(_host.Admin, "health")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("ok", full.GetProperty("status").GetString());
        Assert.True(full.GetProperty("usage").GetProperty("requests").GetInt64() >= 1);
        Assert.True(full.GetProperty("models").GetInt32() > 0);
        Assert.True(full.GetProperty("runtime").GetProperty("gc_pause_ms").GetDouble() >= 0);
        Assert.True(full.GetProperty("runtime").GetProperty("thread_pool_completed_items").GetInt64() > 0);
        Assert.True(full.GetProperty("runtime").GetProperty("lock_contentions").GetInt64() >= 0);
        var replay = full.GetProperty("replay");
        Assert.Equal(64L * 1024 * 1024, replay.GetProperty("budget_bytes").GetInt64());
        Assert.InRange(replay.GetProperty("reserved_bytes").GetInt64(), 0, replay.GetProperty("budget_bytes").GetInt64());
        Assert.True(replay.GetProperty("pooled_segments").GetInt32() >= 0);
    }

    [Fact]
    public async Task Models_lists_only_what_the_key_may_call()
    {
        (await PostAsync(_host.Admin, "api/model-groups/create", """{"group_name": "Writers", "models": ["sim-fast", "sim-slow"]}""")).AssertStatus(HttpStatusCode.OK);
        var (teamId, key) = await _host.NewTeamAsync(5, """, "model_groups": ["Writers", "sim-realistic"]""");
        var narrow = (await PostAsync(_host.Admin, $"api/teams/{teamId}/keys", """{"key_alias": "narrow", "model_groups": ["Writers"]}""")).AssertStatus(HttpStatusCode.OK)
            .Json.GetProperty("virtual_key").GetString()!;

        static async Task<List<string>> IdsAsync(HttpClient client) =>
            [.. (await GetAsync(client, "v1/models")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!)];

        using var teamClient = _host.NewClient(key);
        using var narrowClient = _host.NewClient(narrow);
        Assert.Equal(["Writers", "sim-realistic"], (await IdsAsync(teamClient)).Order(StringComparer.Ordinal));
        Assert.Equal(["Writers"], await IdsAsync(narrowClient));
        var all = await IdsAsync(_host.Admin);
        Assert.Contains("sim-slow", all);
        Assert.Contains("Writers", all);

        // A model the key may not call reads exactly like one that does not exist.
        (await GetAsync(narrowClient, "v1/models/sim-realistic")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");
        (await GetAsync(narrowClient, "v1/models/Writers")).AssertStatus(HttpStatusCode.OK);
    }
}
