using System.Net;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>The Anthropic and Ollama dialects obey the same keys, model access, credits and billing as /v1.</summary>
public abstract class DialectTenancyTests : TenancyTestBase
{
    [Fact]
    public async Task Anthropic_and_ollama_calls_check_model_access_and_bill_the_keys_team()
    {
        var (teamId, key) = await Host.NewTeamAsync(5, """, "model_groups": ["sim-fast"]""");
        using var client = Host.NewClient(key, asApiKeyHeader: true);

        (await PostAsync(Host.Anonymous, "v1/messages", """{"model": "sim-fast", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}"""))
            .AssertStatus(HttpStatusCode.Unauthorized);

        var refused = (await PostAsync(client, "v1/messages", """{"model": "sim-realistic", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}"""))
            .AssertStatus(HttpStatusCode.Forbidden);
        Assert.Equal("error", refused.Json.GetProperty("type").GetString());
        Assert.Equal("permission_error", refused.Json.GetProperty("error").GetProperty("type").GetString());

        var ollamaRefused = (await PostAsync(client, "api/chat", """{"model": "sim-realistic", "stream": false, "messages": [{"role": "user", "content": "hi"}]}"""))
            .AssertStatus(HttpStatusCode.Forbidden);
        Assert.False(string.IsNullOrEmpty(ollamaRefused.Json.GetProperty("error").GetString()));

        (await PostAsync(client, "v1/messages", """{"model": "sim-fast", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}"""))
            .AssertStatus(HttpStatusCode.OK);
        (await PostAsync(client, "api/chat", """{"model": "sim-fast", "stream": false, "options": {"num_predict": 5}, "messages": [{"role": "user", "content": "hi"}]}"""))
            .AssertStatus(HttpStatusCode.OK);

        var rows = await Host.WaitForUsageAsync(teamId, 2);
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.Equal("sim-fast", r.Model));
    }
}

public sealed class SqliteDialectTenancyTests : DialectTenancyTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}
