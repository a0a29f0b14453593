using System.Text.Json;

namespace Sluice.Cli.Tests;

/// <summary><c>sluice admin</c> run as a real process against a gateway with a master key and its own SQLite store.</summary>
[Collection(GatewayCollection.Name)]
public sealed class AdminCommandTests(TenantGatewayFixture gateway) : IClassFixture<TenantGatewayFixture>
{
    private Task<CliResult> AdminAsync(params string[] args) =>
        CliProcess.RunAsync(["admin", .. args, "--url", gateway.Url, "--master-key", TenantGatewayFixture.MasterKey]);

    private static JsonDocument Json(CliResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        return JsonDocument.Parse(result.Stdout);
    }

    [Fact]
    public async Task Round_trip_org_team_key_credits_job_chat_and_balance()
    {
        using (var org = Json(await AdminAsync("orgs", "create", "Acme", "--id", "org_acme", "--json")))
        {
            Assert.Equal("org_acme", org.RootElement.GetProperty("organization_id").GetString());
            Assert.Equal("Acme", org.RootElement.GetProperty("name").GetString());
        }

        using (var team = Json(await AdminAsync("teams", "create", "--org", "org_acme", "--name", "Engineering", "--id", "team_eng", "--credits", "10", "--groups", "sim-fast", "--json")))
        {
            Assert.Equal("team_eng", team.RootElement.GetProperty("team_id").GetString());
            Assert.Equal(10, team.RootElement.GetProperty("credits_remaining").GetInt64());
            Assert.StartsWith("sk-", team.RootElement.GetProperty("virtual_key").GetString(), StringComparison.Ordinal);
        }

        string teamKey;
        string keyId;
        using (var key = Json(await AdminAsync("keys", "create", "team_eng", "--name", "ci", "--json")))
        {
            teamKey = key.RootElement.GetProperty("virtual_key").GetString()!;
            keyId = key.RootElement.GetProperty("key_id").GetString()!;
            Assert.Equal("ci", key.RootElement.GetProperty("key_alias").GetString());
        }

        using (var added = Json(await AdminAsync("credits", "add", "team_eng", "5", "--reason", "top-up", "--json")))
        {
            Assert.Equal(15, added.RootElement.GetProperty("credits_remaining").GetInt64());
        }

        using (var ledger = Json(await AdminAsync("credits", "transactions", "team_eng", "--json")))
        {
            var transactions = ledger.RootElement.GetProperty("transactions").EnumerateArray().ToList();
            Assert.Equal(2, transactions.Count);
            Assert.Contains(transactions, t => t.GetProperty("reason").GetString() == "top-up" && t.GetProperty("amount").GetInt64() == 5);
        }

        // The table form names the transaction for people.
        var ledgerTable = await AdminAsync("credits", "transactions", "team_eng");
        Assert.True(ledgerTable.ExitCode == 0, ledgerTable.ToString());
        Assert.Contains("top-up", ledgerTable.Stdout, StringComparison.Ordinal);
        Assert.Contains("2 rows.", ledgerTable.Stdout, StringComparison.Ordinal);

        // A job made with the team's key (the SaaS API over HTTP) shows up in the admin views.
        string jobId;
        using (var job = await gateway.SendAsync(HttpMethod.Post, "/api/jobs/create", teamKey, new { job_type = "cli-test" }))
        {
            jobId = job.RootElement.GetProperty("job_id").GetString()!;
        }

        using (var jobs = Json(await AdminAsync("jobs", "list", "team_eng", "--json")))
        {
            Assert.Contains(jobs.RootElement.GetProperty("jobs").EnumerateArray(), j => j.GetProperty("job_id").GetString() == jobId);
        }

        using (var shown = Json(await AdminAsync("jobs", "show", jobId, "--json")))
        {
            Assert.Equal(keyId, shown.RootElement.GetProperty("key_id").GetString());
        }

        // The key works for chat.
        var chat = await CliProcess.RunAsync(["chat", "Hello there", "--url", gateway.Url, "--api-key", teamKey, "--model", "sim-fast", "--max-tokens", "12", "--seed", "7"]);
        Assert.True(chat.ExitCode == 0, chat.ToString());
        Assert.False(string.IsNullOrWhiteSpace(chat.Stdout), chat.ToString());

        // A job with one model call, completed, costs the team one credit; the table shows the new balance.
        using (await gateway.SendAsync(HttpMethod.Post, $"/api/jobs/{jobId}/llm-call", teamKey, new
        {
            model_group = "sim-fast",
            messages = new[] { new { role = "user", content = "Summarise this." } },
            max_tokens = 8,
        }))
        using (await gateway.SendAsync(HttpMethod.Post, $"/api/jobs/{jobId}/complete", teamKey, new { status = "completed" }))
        {
        }

        var table = await AdminAsync("credits", "balance", "team_eng");
        Assert.True(table.ExitCode == 0, table.ToString());
        var row = table.Stdout.Split('\n').Single(l => l.Contains("credits_remaining", StringComparison.Ordinal));
        Assert.Equal("14", row.Split('│')[2].Trim());

        var jobTable = await AdminAsync("jobs", "show", jobId);
        Assert.True(jobTable.ExitCode == 0, jobTable.ToString());
        Assert.Contains(jobTable.Stdout.Split('\n'), l => l.Contains("charge", StringComparison.Ordinal) && l.Contains("charged", StringComparison.Ordinal));
        Assert.Contains(jobTable.Stdout.Split('\n'), l => l.Contains("sim-fast", StringComparison.Ordinal) && l.Contains("completed", StringComparison.Ordinal));

        // Revoked keys stop working at once.
        var revoke = await AdminAsync("keys", "revoke", "team_eng", keyId);
        Assert.True(revoke.ExitCode == 0, revoke.ToString());
        Assert.Contains("revoked", revoke.Stdout, StringComparison.Ordinal);
        var refused = await CliProcess.RunAsync(["chat", "Hello", "--url", gateway.Url, "--api-key", teamKey, "--model", "sim-fast", "--max-tokens", "4"]);
        Assert.True(refused.ExitCode == 11, refused.ToString());
    }

    [Fact]
    public async Task Groups_create_list_show_and_set_on_a_team()
    {
        var created = await AdminAsync("groups", "create", "CliAgent", "--models", "sim-slow,sim-fast", "--description", "fallback pair");
        Assert.True(created.ExitCode == 0, created.ToString());
        Assert.Contains("sim-slow, sim-fast", created.Stdout, StringComparison.Ordinal);

        using (var list = Json(await AdminAsync("groups", "list", "--json")))
        {
            var group = list.RootElement.EnumerateArray().Single(g => g.GetProperty("group_name").GetString() == "CliAgent");
            Assert.Equal(["sim-slow", "sim-fast"], group.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("model_name").GetString()));
        }

        using (var shown = Json(await AdminAsync("groups", "show", "CliAgent", "--json")))
        {
            Assert.Equal("fallback pair", shown.RootElement.GetProperty("description").GetString());
        }

        Json(await AdminAsync("orgs", "create", "Groups Org", "--id", "org_groups", "--json")).Dispose();
        Json(await AdminAsync("teams", "create", "--org", "org_groups", "--name", "Agents", "--id", "team_agents", "--json")).Dispose();
        using (var team = Json(await AdminAsync("teams", "set-groups", "team_agents", "CliAgent", "sim-fast", "--json")))
        {
            Assert.Equal(["CliAgent", "sim-fast"], team.RootElement.GetProperty("model_groups").EnumerateArray().Select(g => g.GetString()));
        }

        var teams = await AdminAsync("orgs", "teams", "org_groups");
        Assert.True(teams.ExitCode == 0, teams.ToString());
        Assert.Contains("team_agents", teams.Stdout, StringComparison.Ordinal);
        Assert.Contains("1 row.", teams.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_wrong_master_key_exits_11_with_the_servers_message_and_what_to_do()
    {
        var result = await CliProcess.RunAsync(["admin", "orgs", "show", "org_acme", "--url", gateway.Url, "--master-key", "sk-wrong"]);

        Assert.True(result.ExitCode == 11, result.ToString());
        Assert.Contains("HTTP 401", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("--master-key", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, result.Stdout);
    }

    [Fact]
    public async Task The_master_key_comes_from_the_environment_and_unknown_ids_exit_11()
    {
        var result = await CliProcess.RunAsync(
            ["admin", "teams", "show", "team_missing", "--url", gateway.Url],
            environment: new Dictionary<string, string> { ["SLUICE_MASTER_KEY"] = TenantGatewayFixture.MasterKey });

        Assert.True(result.ExitCode == 11, result.ToString());
        Assert.Contains("HTTP 404", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("team_missing", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connection_refused_exits_10()
    {
        var result = await CliProcess.RunAsync(["admin", "groups", "list", "--url", $"http://127.0.0.1:{GatewayFixture.UnusedPort()}"]);

        Assert.True(result.ExitCode == 10, result.ToString());
        Assert.Contains("sluice serve", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("admin")]
    [InlineData("admin keys create")]
    [InlineData("admin credits add")]
    [InlineData("admin jobs show")]
    [InlineData("replay")]
    public async Task Help_shows_an_example(string command)
    {
        var result = await CliProcess.RunAsync([.. command.Split(' '), "--help"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Example", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("sluice " + command, result.Stdout, StringComparison.Ordinal);
    }
}
