using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
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

    [Fact]
    public async Task Count_tokens_checks_model_access_and_the_request_limit_but_needs_no_credits_and_bills_nothing()
    {
        // No credits at all, two requests a minute, one model.
        var (teamId, key) = await Host.NewTeamAsync(0, """, "model_groups": ["sim-fast"], "rpm_limit": 2""");
        using var client = Host.NewClient(key, asApiKeyHeader: true);
        const string Count = """{"model": "MODEL", "messages": [{"role": "user", "content": "How many tokens is this?"}]}""";

        (await PostAsync(Host.Anonymous, "v1/messages/count_tokens", Count.Replace("MODEL", "sim-fast", StringComparison.Ordinal)))
            .AssertStatus(HttpStatusCode.Unauthorized);

        var refused = (await PostAsync(client, "v1/messages/count_tokens", Count.Replace("MODEL", "sim-realistic", StringComparison.Ordinal)))
            .AssertStatus(HttpStatusCode.Forbidden);
        Assert.Equal("permission_error", refused.Json.GetProperty("error").GetProperty("type").GetString());

        for (var i = 0; i < 2; i++)
        {
            var counted = (await PostAsync(client, "v1/messages/count_tokens", Count.Replace("MODEL", "sim-fast", StringComparison.Ordinal)))
                .AssertStatus(HttpStatusCode.OK);
            Assert.True(counted.Json.GetProperty("input_tokens").GetInt32() > 0);
        }

        // Each count is a request: the limit of two is reached.
        var limited = (await PostAsync(client, "v1/messages/count_tokens", Count.Replace("MODEL", "sim-fast", StringComparison.Ordinal)))
            .AssertStatus(HttpStatusCode.TooManyRequests);
        Assert.Equal("rate_limit_error", limited.Json.GetProperty("error").GetProperty("type").GetString());

        await Host.DrainLedgerAsync();
        Assert.Empty(await Host.Store.ListUsageAsync(teamId, 10, 0, CancellationToken.None));
    }

    [Fact]
    public async Task WebSocket_calls_with_a_virtual_key_are_admitted_one_by_one_and_billed_to_its_team()
    {
        var (teamId, key) = await Host.NewTeamAsync(5, """, "model_groups": ["sim-fast"]""");
        var uri = new UriBuilder(Host.BaseAddress) { Scheme = "ws", Path = "/api/llm/ws" }.Uri;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        // No key: the upgrade itself is refused, as any /api request.
        using (var anonymous = new ClientWebSocket())
        {
            await Assert.ThrowsAsync<WebSocketException>(() => anonymous.ConnectAsync(uri, cts.Token));
        }

        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + key);
        await socket.ConnectAsync(uri, cts.Token);

        async Task<List<JsonElement>> AskAsync(string id, string model)
        {
            var json = $$"""{"type": "chat", "id": "{{id}}", "model": "{{model}}", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}""";
            await socket.SendAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text, true, cts.Token);
            var received = new List<JsonElement>();
            while (true)
            {
                var buffer = new byte[64 * 1024];
                var result = await socket.ReceiveAsync(buffer, cts.Token);
                var message = JsonDocument.Parse(buffer.AsMemory(0, result.Count)).RootElement.Clone();
                received.Add(message);
                if (message.GetProperty("type").GetString() is "done" or "error")
                {
                    return received;
                }
            }
        }

        // A model outside the team's groups is refused for this request only; the socket stays usable.
        var refused = await AskAsync("r1", "sim-realistic");
        Assert.Equal("model_not_allowed", Assert.Single(refused).GetProperty("code").GetString());
        var answered = await AskAsync("r2", "sim-fast");
        Assert.Equal("done", answered[^1].GetProperty("type").GetString());
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);

        var rows = await Host.WaitForUsageAsync(teamId, 1);
        var row = Assert.Single(rows);
        Assert.Equal("sim-fast", row.Model);
        Assert.Equal(5, row.CompletionTokens);
    }
}

public sealed class SqliteDialectTenancyTests : DialectTenancyTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}
