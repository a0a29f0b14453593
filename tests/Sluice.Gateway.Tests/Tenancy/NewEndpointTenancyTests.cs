using System.Net;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>
/// The endpoints added after the entry-point matrix — legacy completions and embeddings — go through the same pipeline:
/// a bad key is the dialect's 401, a team's requests-per-minute limit refuses the next call with 429, and each call is
/// billed to the key's team in the usage ledger.
/// </summary>
public sealed class NewEndpointTenancyTests : TenancyTestBase
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();

    [Theory]
    [InlineData("v1/completions", """{"model": "sim-fast", "prompt": "Tell me about rivers", "max_tokens": 3}""")]
    [InlineData("v1/embeddings", """{"model": "sim-embed", "input": "rivers and lakes"}""")]
    [InlineData("api/embed", """{"model": "sim-embed", "input": ["rivers", "lakes"]}""")]
    public async Task Keys_limits_and_the_ledger_apply_like_chat(string path, string body)
    {
        using var stranger = Host.NewClient("sk-sluice-not-a-real-key");
        var refused = await SendAsync(stranger, HttpMethod.Post, path, body);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.Status);
        Assert.NotNull(refused.Header("x-request-id"));

        var (teamId, key) = await Host.NewTeamAsync(10, """, "rpm_limit": 1""");
        using var team = Host.NewClient(key);
        (await SendAsync(team, HttpMethod.Post, path, body)).AssertStatus(HttpStatusCode.OK);
        var limited = await SendAsync(team, HttpMethod.Post, path, body);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.Status);

        await Host.DrainLedgerAsync();
        var usage = Assert.Single(await Host.Store.ListUsageAsync(teamId, 10, 0, CancellationToken.None));
        Assert.True(usage.PromptTokens > 0);
    }
}
