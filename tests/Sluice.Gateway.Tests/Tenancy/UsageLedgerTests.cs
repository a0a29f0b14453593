using System.ClientModel;
using System.Net;
using OpenAI;
using OpenAI.Chat;
using Sluice.Storage;
using Sluice.Testing;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>The usage ledger, restarts and the OpenAI SDK with virtual keys.</summary>
public abstract class UsageLedgerTests : TenancyTestBase
{
    [Fact]
    public async Task Every_call_streamed_or_not_finished_failed_or_abandoned_writes_one_usage_row()
    {
        var (teamId, key) = await Host.NewTeamAsync(10);
        using var client = Host.NewClient(key);
        var keyId = (await GetAsync(client, $"api/teams/{teamId}/keys")).Json.GetProperty("keys")[0].GetProperty("key_id").GetString();

        // Finished, not streamed.
        (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);

        // Finished, streamed.
        using (var streamed = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = Json("""{"model": "sim-fast", "prompt": "Explain tides", "stream": true, "max_tokens": 6}"""),
            },
            HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.True((await SseTestClient.ReadAllAsync(streamed))[^1].IsDone);
        }

        // Failed before the first token, and failed mid-stream.
        Assert.Equal(HttpStatusCode.InternalServerError, (await ChatAsync(client, extra: """, "metadata": {"sim_fail_status": "500"}""")).Status);
        using (var broken = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = Json("""{"model": "sim-fast", "prompt": "x", "stream": true, "max_tokens": 9, "metadata": {"sim_fail_after_tokens": "2"}}"""),
            },
            HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.DoesNotContain(await SseTestClient.ReadAllAsync(broken), e => e.IsDone);
        }

        // Abandoned: the client leaves after the first chunk of a paced stream.
        using (var abandoned = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = Json("""{"model": "sim-paced", "prompt": "A long tale", "stream": true, "max_tokens": 200}"""),
            },
            HttpCompletionOption.ResponseHeadersRead))
        {
            await using var body = await abandoned.Content.ReadAsStreamAsync();
            Assert.True(await body.ReadAsync(new byte[64]) > 0);
        }

        // A job call carries its job.
        var job = (await PostAsync(client, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        (await PostAsync(client, $"api/jobs/{job}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}""")).AssertStatus(HttpStatusCode.OK);

        var rows = (await Host.WaitForUsageAsync(teamId, 6)).OrderBy(r => r.Id).ToList();
        Assert.Equal(6, rows.Count);
        Assert.All(rows, r => Assert.Equal((teamId, keyId), (r.TeamId, r.KeyId)));
        Assert.All(rows, r => Assert.True(r.Duration > TimeSpan.Zero));
        Assert.All(rows, r => Assert.False(string.IsNullOrEmpty(r.RequestId)));
        Assert.Equal(6, rows.Select(r => r.RequestId).Distinct().Count());

        var statuses = rows.Select(r => r.Status).ToList();
        Assert.Equal(3, statuses.Count(s => s == CallStatus.Completed));
        Assert.Equal(2, statuses.Count(s => s == CallStatus.Failed));
        Assert.Equal(1, statuses.Count(s => s == CallStatus.Abandoned));

        var plain = rows.First(r => r.Status == CallStatus.Completed && r.JobId is null && r.CompletionTokens == 8);
        Assert.True(plain.PromptTokens > 0);
        var stream = rows.Single(r => r.Status == CallStatus.Completed && r.CompletionTokens == 6);
        Assert.NotNull(stream.TimeToFirstToken);
        Assert.True(stream.TimeToFirstToken <= stream.Duration);
        var midStream = rows.Single(r => r.Status == CallStatus.Failed && r.CompletionTokens == 2);
        Assert.NotNull(midStream.TimeToFirstToken);
        var gone = rows.Single(r => r.Status == CallStatus.Abandoned);
        Assert.Equal("sim-paced", gone.Model);
        Assert.InRange(gone.CompletionTokens, 1, 199);
        var jobRow = rows.Single(r => r.JobId is not null);
        Assert.Equal((job, 4L), (jobRow.JobId, jobRow.CompletionTokens));

        // Calls with the master key bill no team.
        (await ChatAsync(Host.Admin)).AssertStatus(HttpStatusCode.OK);
        await Host.DrainLedgerAsync();
        Assert.Equal(6, (await Host.Store.ListUsageAsync(teamId, 100, 0, CancellationToken.None)).Count);
    }

    [Fact]
    public async Task A_full_usage_queue_makes_requests_wait_instead_of_dropping_records()
    {
        // A queue of one record: nearly every finishing request finds it full and must wait for room.
        var tiny = await StartGatewayAsync(configure: o =>
        {
            o.Tenancy.UsageQueueCapacity = 1;
            o.Tenancy.UsageBatchSize = 1;
        });
        var (teamId, key) = await tiny.NewTeamAsync(5);
        using var client = tiny.NewClient(key);

        var answers = await Task.WhenAll(Enumerable.Range(0, 60).Select(_ => Task.Run(() => ChatAsync(client))));

        Assert.All(answers, a => a.AssertStatus(HttpStatusCode.OK));
        var rows = await tiny.WaitForUsageAsync(teamId, 60);
        Assert.Equal(60, rows.Count);
        Assert.Equal(60, rows.Select(r => r.RequestId).Distinct().Count());
        await tiny.DrainLedgerAsync();
        Assert.Equal(60, tiny.Ledger.Written);

        // The wait path was taken (typically by nearly all 60), and still nothing was lost.
        Assert.True(tiny.Ledger.WaitedForRoom > 0);
    }

    [Fact]
    public async Task Records_of_requests_finishing_close_together_share_a_transaction()
    {
        // One request after another, each finishing a few milliseconds after the last: without the gathering delay
        // each would commit its own transaction (20); with it they share a few.
        var host = await StartGatewayAsync(configure: o => o.Tenancy.UsageFlushDelayMs = 1_000);
        var (teamId, key) = await host.NewTeamAsync(5);
        using var client = host.NewClient(key);
        await host.DrainLedgerAsync();
        var before = host.Ledger.BatchesWritten;

        for (var i = 0; i < 20; i++)
        {
            (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
        }

        Assert.Equal(20, (await host.WaitForUsageAsync(teamId, 20)).Count);
        await host.DrainLedgerAsync();
        Assert.InRange(host.Ledger.BatchesWritten - before, 1, 10);
    }

    [Fact]
    public async Task Restarting_on_the_same_store_loses_nothing()
    {
        (await PostAsync(Host.Admin, "api/model-groups/create", """{"group_name": "ChatAgent", "models": ["sim-fast"]}""")).AssertStatus(HttpStatusCode.OK);
        var (teamId, key) = await Host.NewTeamAsync(10, """, "model_groups": ["ChatAgent"]""");
        var revokedKey = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", "{}")).Json;
        (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys/{revokedKey.GetProperty("key_id").GetString()}/revoke")).AssertStatus(HttpStatusCode.OK);
        (await PostAsync(Host.Admin, $"api/credits/teams/{teamId}/add", """{"credits_amount": 5}""")).AssertStatus(HttpStatusCode.OK);
        using (var client = Host.NewClient(key))
        {
            var done = (await PostAsync(client, "api/jobs/create")).Json.GetProperty("job_id").GetString();
            (await PostAsync(client, $"api/jobs/{done}/llm-call", """{"model_group": "ChatAgent", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}""")).AssertStatus(HttpStatusCode.OK);
            (await PostAsync(client, $"api/jobs/{done}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK);
            (await PostAsync(client, "api/jobs/create")).AssertStatus(HttpStatusCode.OK);

            // Calls made right before the stop: their usage is flushed on shutdown.
            await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => ChatAsync(client, "ChatAgent")));
        }

        var before = new
        {
            Team = (await GetAsync(Host.Admin, $"api/teams/{teamId}")).Body,
            Keys = (await GetAsync(Host.Admin, $"api/teams/{teamId}/keys")).Body,
            Ledger = (await GetAsync(Host.Admin, $"api/credits/teams/{teamId}/transactions")).Body,
            Jobs = (await GetAsync(Host.Admin, $"api/teams/{teamId}/jobs")).Body,
        };

        await RestartAsync();

        Assert.Equal(before.Team, (await GetAsync(Host.Admin, $"api/teams/{teamId}")).Body);
        Assert.Equal(before.Ledger, (await GetAsync(Host.Admin, $"api/credits/teams/{teamId}/transactions")).Body);
        Assert.Equal(before.Jobs, (await GetAsync(Host.Admin, $"api/teams/{teamId}/jobs")).Body);
        var keysAfter = (await GetAsync(Host.Admin, $"api/teams/{teamId}/keys")).Body;
        Assert.Equal(before.Keys, keysAfter);
        Assert.Equal(21, (await Host.Store.ListUsageAsync(teamId, 100, 0, CancellationToken.None)).Count);
        Assert.Equal(14, (await GetAsync(Host.Admin, $"api/credits/teams/{teamId}/balance")).Json.GetProperty("credits_remaining").GetInt64());

        using var again = Host.NewClient(key);
        (await ChatAsync(again, "ChatAgent")).AssertStatus(HttpStatusCode.OK);
        using var revoked = Host.NewClient(revokedKey.GetProperty("virtual_key").GetString());
        (await ChatAsync(revoked, "ChatAgent")).AssertError(HttpStatusCode.Unauthorized, "authentication_error");
    }

    [Fact]
    public async Task The_OpenAI_SDK_works_with_a_virtual_key_and_gets_401_with_a_bad_one()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        ChatClient Client(string apiKey) => new(
            "sim-fast",
            new ApiKeyCredential(apiKey),
            new OpenAIClientOptions { Endpoint = new Uri(Host.BaseAddress, "v1"), NetworkTimeout = TimeSpan.FromSeconds(30) });

        var text = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in Client(key).CompleteChatStreamingAsync([new UserChatMessage("Describe glaciers")], new ChatCompletionOptions { MaxOutputTokenCount = 12 }))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
        }

        Assert.False(string.IsNullOrWhiteSpace(text.ToString()));
        Assert.Equal(12, usage?.OutputTokenCount);
        ChatCompletion completion = await Client(key).CompleteChatAsync([new UserChatMessage("Describe glaciers")], new ChatCompletionOptions { MaxOutputTokenCount = 5 });
        Assert.Equal(5, completion.Usage.OutputTokenCount);

        var error = await Assert.ThrowsAsync<ClientResultException>(() => Client("sk-sluice-" + new string('Z', 40)).CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, error.Status);
        Assert.Equal(2, (await Host.WaitForUsageAsync(teamId, 2)).Count);
    }
}

public sealed class SqliteUsageLedgerTests : UsageLedgerTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}

public sealed class PostgresUsageLedgerTests : UsageLedgerTests
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();
}
