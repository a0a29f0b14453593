using Microsoft.Extensions.Logging;
using Sluice.Client.Jobs;
using Sluice.Gateway.Hosting;
using Sluice.Samples;
using Sluice.Samples.Examples;

namespace Sluice.Client.Tests;

/// <summary>
/// The samples' SaaS flow against a real gateway with keys on: <c>init</c> sets up a team and prints its key; with it,
/// each example runs within a job, completes it, and reports the credits left.
/// </summary>
public sealed class SampleSaasFlowTests
{
    private const string MasterKey = "sk-master-samples-saas-flow";

    [Fact]
    public async Task Init_prints_a_team_key_and_examples_run_within_jobs_that_charge_one_credit_each()
    {
        var data = Directory.CreateTempSubdirectory("sluice-samples-saas-");
        try
        {
            await using var gateway = await SluiceGateway.StartAsync(
                new GatewayOptions { Port = 0, MasterKey = MasterKey, DataDirectory = data.FullName },
                configureLogging: logging => logging.SetMinimumLevel(LogLevel.Warning));

            using var setup = new StringWriter();
            var team = await Init.RunAsync(new SampleContext { Endpoint = gateway.BaseAddress, Output = setup }, MasterKey);
            Assert.StartsWith("sk-sluice-", team.VirtualKey, StringComparison.Ordinal);
            Assert.Contains($"export SLUICE_API_KEY={team.VirtualKey}", setup.ToString(), StringComparison.Ordinal);
            Assert.Equal(Init.Credits, team.Credits);

            // A second init reuses the organization and makes another team.
            var again = await Init.RunAsync(new SampleContext { Endpoint = gateway.BaseAddress, Output = new StringWriter() }, MasterKey);
            Assert.NotEqual(team.TeamId, again.TeamId);

            using var output = new StringWriter();
            var context = new SampleContext { Endpoint = gateway.BaseAddress, ApiKey = team.VirtualKey, Model = "sim-fast", Output = output, Seed = 1 };
            var answer = await BasicStreaming.RunAsync(context);
            Assert.False(string.IsNullOrWhiteSpace(answer));
            await MultiDocumentAnalysis.RunAsync(context);

            var lines = output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, lines.Count(l => l.StartsWith("[job ", StringComparison.Ordinal) && l.Contains("] created (", StringComparison.Ordinal)));
            Assert.Contains(lines, l => l.EndsWith($"completed — credits remaining: {Init.Credits - 1}", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.EndsWith($"completed — credits remaining: {Init.Credits - 2}", StringComparison.Ordinal));

            // The gateway agrees: two jobs charged, one credit each.
            using var jobs = new SluiceJobsClient(new SluiceClientOptions { Endpoint = gateway.BaseAddress, ApiKey = team.VirtualKey });
            Assert.Equal(Init.Credits - 2, (await jobs.GetBalanceAsync(team.TeamId)).CreditsRemaining);
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }
}
