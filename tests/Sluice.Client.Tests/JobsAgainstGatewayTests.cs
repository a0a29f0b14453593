using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Sluice.Client.Jobs;
using Sluice.Gateway.Hosting;

namespace Sluice.Client.Tests;

/// <summary>SluiceJobsClient against the REAL tenancy API (not a scripted server): the field names must match.</summary>
public sealed class JobsAgainstGatewayTests
{
    private const string MasterKey = "sk-master-jobs-client-tests";

    [Fact]
    public async Task A_team_key_runs_a_job_end_to_end_and_sees_its_credits()
    {
        var data = Directory.CreateTempSubdirectory("sluice-jobs-client-");
        try
        {
            await using var gateway = await SluiceGateway.StartAsync(
                new GatewayOptions { Port = 0, MasterKey = MasterKey, DataDirectory = data.FullName },
                configureLogging: logging => logging.SetMinimumLevel(LogLevel.Warning));
            using var http = new HttpClient { BaseAddress = gateway.BaseAddress };
            var org = await AdminPostAsync(http, "api/organizations/create", """{"name": "jobs-client"}""");
            var team = await AdminPostAsync(
                http,
                "api/teams/create",
                $$"""{"organization_id": "{{org.GetProperty("organization_id").GetString()}}", "team_alias": "jobs", "credits_allocated": 3}""");
            var teamId = team.GetProperty("team_id").GetString()!;

            using var jobs = new SluiceJobsClient(new SluiceClientOptions
            {
                Endpoint = gateway.BaseAddress,
                ApiKey = team.GetProperty("virtual_key").GetString(),
                DefaultModel = "sim-fast",
            });

            var job = await jobs.CreateJobAsync();
            Assert.False(string.IsNullOrEmpty(job.JobId));

            var call = await jobs.CallAsync(job.JobId, [new ChatMessage(ChatRole.User, "Summarise the tides")], new ChatOptions { MaxOutputTokens = 12 });
            Assert.False(string.IsNullOrEmpty(call.Content));
            Assert.Equal("length", call.FinishReason);

            var streamed = new StringBuilder();
            await foreach (var update in jobs.StreamAsync(job.JobId, [new ChatMessage(ChatRole.User, "And the moon?")], new ChatOptions { MaxOutputTokens = 8 }))
            {
                streamed.Append(update.Text);
            }

            Assert.True(streamed.Length > 0);

            var completion = await jobs.CompleteJobAsync(job.JobId);
            Assert.Equal(2, completion.CreditsRemaining);
            Assert.Equal(2, (await jobs.GetBalanceAsync(teamId)).CreditsRemaining);
            var transactions = await jobs.GetTransactionsAsync(teamId, limit: 10);
            Assert.Contains(transactions.Transactions, t => t.JobId == job.JobId && t.BalanceAfter == 2);

            // Completing again charges nothing more.
            Assert.Equal(2, (await jobs.CompleteJobAsync(job.JobId)).CreditsRemaining);
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    private static async Task<JsonElement> AdminPostAsync(HttpClient http, string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", MasterKey);
        using var response = await http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.Clone();
    }
}
