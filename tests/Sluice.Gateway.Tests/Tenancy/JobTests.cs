using System.Net;
using System.Text.Json;
using Sluice.Storage;
using Sluice.Testing;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>Jobs: calls (plain and streamed), completion, and the credit rule under concurrency.</summary>
public abstract class JobTests : TenancyTestBase
{
    private const string Call = """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "Summarise the history of canals"}], "max_tokens": 12, "purpose": "summary"}""";

    private static string CreateJob => """{"job_type": "document_analysis", "user_id": "user_123", "metadata": {"document_id": "doc_456"}}""";

    [Fact]
    public async Task Job_lifecycle_charges_one_credit_once()
    {
        var (teamId, key) = await Host.NewTeamAsync(10);
        using var team = Host.NewClient(key);
        var created = (await PostAsync(team, "api/jobs/create", CreateJob)).AssertStatus(HttpStatusCode.OK).Json;
        var job = created.GetProperty("job_id").GetString()!;
        Assert.Equal(("pending", teamId, "document_analysis"), (created.GetProperty("status").GetString(), created.GetProperty("team_id").GetString(), created.GetProperty("job_type").GetString()));

        var call = (await PostAsync(team, $"api/jobs/{job}/llm-call", Call)).AssertStatus(HttpStatusCode.OK).Json;
        Assert.False(string.IsNullOrWhiteSpace(call.GetProperty("response").GetProperty("content").GetString()));
        Assert.Equal("length", call.GetProperty("response").GetProperty("finish_reason").GetString());
        var metadata = call.GetProperty("metadata");
        Assert.Equal(12, metadata.GetProperty("completion_tokens").GetInt64());
        Assert.Equal(metadata.GetProperty("prompt_tokens").GetInt64() + 12, metadata.GetProperty("tokens_used").GetInt64());
        Assert.Equal("sim-fast", metadata.GetProperty("model_group").GetString());
        Assert.True(metadata.GetProperty("latency_ms").GetDouble() >= 0);

        var open = (await GetAsync(team, $"api/jobs/{job}")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("in_progress", open.GetProperty("status").GetString());
        Assert.Equal(1, open.GetProperty("calls").GetArrayLength());

        var completed = (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed", "metadata": {"result": "success"}}""")).AssertStatus(HttpStatusCode.OK).Json;
        var costs = completed.GetProperty("costs");
        Assert.Equal("completed", completed.GetProperty("status").GetString());
        Assert.False(completed.GetProperty("already_completed").GetBoolean());
        Assert.True(costs.GetProperty("credit_applied").GetBoolean());
        Assert.Equal((9, 1, 1, 0), (costs.GetProperty("credits_remaining").GetInt64(), costs.GetProperty("total_calls").GetInt64(), costs.GetProperty("successful_calls").GetInt64(), costs.GetProperty("failed_calls").GetInt64()));
        Assert.Equal(metadata.GetProperty("tokens_used").GetInt64(), costs.GetProperty("total_tokens").GetInt64());
        Assert.Equal("sim-fast", completed.GetProperty("calls")[0].GetProperty("model_group").GetString());

        var again = (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.True(again.GetProperty("already_completed").GetBoolean());
        Assert.Equal(9, again.GetProperty("costs").GetProperty("credits_remaining").GetInt64());
        (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "failed"}""")).AssertStatus(HttpStatusCode.OK);
        Assert.Equal("completed", (await GetAsync(team, $"api/jobs/{job}")).Json.GetProperty("status").GetString());

        var charges = (await GetAsync(team, $"api/credits/teams/{teamId}/transactions")).Json.GetProperty("transactions").EnumerateArray().Where(t => t.GetProperty("job_id").GetString() == job);
        Assert.Equal(9, Assert.Single(charges).GetProperty("balance_after").GetInt64());

        (await PostAsync(team, $"api/jobs/{job}/llm-call", Call)).AssertError(HttpStatusCode.Conflict, "invalid_request_error", "job_finished");
        (await PostAsync(team, $"api/jobs/{job}/llm-call-stream", Call)).AssertError(HttpStatusCode.Conflict, "invalid_request_error", "job_finished");
    }

    [Fact]
    public async Task Failed_jobs_and_jobs_with_a_failed_call_are_free()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        using var team = Host.NewClient(key);
        var failedJob = (await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        var failed = (await PostAsync(team, $"api/jobs/{failedJob}/complete", """{"status": "failed", "error_message": "Document parsing failed"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.False(failed.GetProperty("costs").GetProperty("credit_applied").GetBoolean());
        Assert.Equal("Document parsing failed", failed.GetProperty("error_message").GetString());
        Assert.Equal(5, failed.GetProperty("costs").GetProperty("credits_remaining").GetInt64());

        var job = (await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        (await PostAsync(team, $"api/jobs/{job}/llm-call", Call)).AssertStatus(HttpStatusCode.OK);
        var broken = await PostAsync(
            team, $"api/jobs/{job}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "x"}], "metadata": {"sim_fail_status": "500"}}""");
        Assert.Equal(HttpStatusCode.InternalServerError, broken.Status);
        var completed = (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal("not_billable", completed.GetProperty("charge").GetString());
        Assert.False(completed.GetProperty("costs").GetProperty("credit_applied").GetBoolean());
        Assert.Equal((2, 1), (completed.GetProperty("costs").GetProperty("total_calls").GetInt64(), completed.GetProperty("costs").GetProperty("failed_calls").GetInt64()));
        Assert.Equal(["completed", "failed"], completed.GetProperty("calls").EnumerateArray().Select(c => c.GetProperty("status").GetString()));
        Assert.Equal(5, (await GetAsync(team, $"api/credits/teams/{teamId}/balance")).Json.GetProperty("credits_remaining").GetInt64());
    }

    [Fact]
    public async Task Streamed_calls_use_the_v1_chunk_format_and_are_in_the_job_before_the_stream_ends()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        using var team = Host.NewClient(key);
        var job = (await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString();

        using (var response = await team.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, $"api/jobs/{job}/llm-call-stream")
            {
                Content = Json("""{"model_group": "sim-fast", "messages": [{"role": "user", "content": "Describe lighthouses"}], "max_tokens": 10, "stream_options": {"include_usage": true}}"""),
            },
            HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();
            Assert.True(events[^1].IsDone);
            var chunks = events.SkipLast(1).Select(e => e.Json()).ToList();
            Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
            Assert.All(chunks, c => Assert.Equal("sim-fast", c.GetProperty("model").GetString()));
            Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
            Assert.Equal(10, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }

        // The call was recorded before [DONE]: no waiting needed.
        var afterStream = (await GetAsync(team, $"api/jobs/{job}")).Json;
        var recorded = Assert.Single(afterStream.GetProperty("calls").EnumerateArray());
        Assert.Equal(("completed", 10), (recorded.GetProperty("status").GetString(), recorded.GetProperty("completion_tokens").GetInt64()));

        // A stream failing mid-way: error frame, no [DONE], and completing right after is not charged.
        using (var response = await team.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, $"api/jobs/{job}/llm-call-stream")
            {
                Content = Json("""{"model_group": "sim-fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10, "metadata": {"sim_fail_after_tokens": "3"}}"""),
            },
            HttpCompletionOption.ResponseHeadersRead))
        {
            var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();
            Assert.DoesNotContain(events, e => e.IsDone);
            Assert.True(events[^1].Json().TryGetProperty("error", out _));
        }

        var completed = (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(1, completed.GetProperty("costs").GetProperty("failed_calls").GetInt64());
        Assert.False(completed.GetProperty("costs").GetProperty("credit_applied").GetBoolean());
        Assert.Equal(5, completed.GetProperty("costs").GetProperty("credits_remaining").GetInt64());
        Assert.Equal(teamId, completed.GetProperty("team_id").GetString());
    }

    [Fact]
    public async Task Team_jobs_are_listed_newest_first_with_paging_and_the_operator_can_work_any_job()
    {
        var (teamId, key) = await Host.NewTeamAsync(5);
        using var team = Host.NewClient(key);
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString()!);
        }

        var listed = (await GetAsync(team, $"api/teams/{teamId}/jobs")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("jobs").EnumerateArray().Select(j => j.GetProperty("job_id").GetString());
        Assert.Equal(Enumerable.Reverse(ids), listed);
        var page = (await GetAsync(team, $"api/teams/{teamId}/jobs?limit=1&offset=1")).Json.GetProperty("jobs");
        Assert.Equal(ids[1], Assert.Single(page.EnumerateArray()).GetProperty("job_id").GetString());

        // The operator names the team when creating, and reaches any job by its id alone.
        var operatorJob = (await PostAsync(Host.Admin, "api/jobs/create", $$"""{"team_id": "{{teamId}}"}""")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString();
        (await PostAsync(Host.Admin, "api/jobs/create")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "missing_required_parameter");
        (await PostAsync(Host.Admin, $"api/jobs/{ids[0]}/llm-call", Call)).AssertStatus(HttpStatusCode.OK);
        Assert.True((await PostAsync(Host.Admin, $"api/jobs/{ids[0]}/complete", """{"status": "completed"}""")).Json.GetProperty("costs").GetProperty("credit_applied").GetBoolean());
        Assert.Equal("pending", (await GetAsync(team, $"api/jobs/{operatorJob}")).Json.GetProperty("status").GetString());

        // Usage of job calls is billed to the job's team, with the job id.
        var usage = await Host.WaitForUsageAsync(teamId, 1);
        Assert.Equal(ids[0], Assert.Single(usage).JobId);
    }

    [Fact]
    public async Task Job_requests_are_validated()
    {
        var (_, key) = await Host.NewTeamAsync(5);
        using var team = Host.NewClient(key);
        var job = (await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        (await PostAsync(team, $"api/jobs/{job}/complete", "{}")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "missing_required_parameter");
        (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "done"}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await PostAsync(team, $"api/jobs/{job}/llm-call", """{"messages": [{"role": "user", "content": "hi"}]}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error", "missing_required_parameter");
        (await PostAsync(team, $"api/jobs/{job}/llm-call", """{"model_group": "Nope", "messages": [{"role": "user", "content": "hi"}]}""")).AssertError(HttpStatusCode.NotFound, "invalid_request_error", "model_not_found");
        (await PostAsync(team, $"api/jobs/{job}/llm-call", """{"model_group": "sim-fast"}""")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        var open = (await GetAsync(team, $"api/jobs/{job}")).Json;
        Assert.Equal(0, open.GetProperty("calls").GetArrayLength());
    }

    [Fact]
    public async Task Two_hundred_concurrent_completes_of_one_job_charge_exactly_one_credit()
    {
        var (teamId, key) = await Host.NewTeamAsync(10);
        using var team = Host.NewClient(key);
        var job = (await PostAsync(team, "api/jobs/create")).Json.GetProperty("job_id").GetString()!;
        (await PostAsync(team, $"api/jobs/{job}/llm-call", Call)).AssertStatus(HttpStatusCode.OK);

        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => Task.Run(() => PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}"""))));

        Assert.All(answers, a => a.AssertStatus(HttpStatusCode.OK));
        Assert.Single(answers, a => !a.Json.GetProperty("already_completed").GetBoolean());
        Assert.All(answers, a => Assert.Equal(9, a.Json.GetProperty("costs").GetProperty("credits_remaining").GetInt64()));
        Assert.Equal(9, await Host.Store.GetBalanceAsync(teamId, CancellationToken.None));
        var ledger = await Host.Store.ListTransactionsAsync(teamId, 100, 0, CancellationToken.None);
        Assert.Single(ledger, t => t.JobId == job);
    }

    [Fact]
    public async Task Hundred_concurrent_creates_on_fifty_credits_open_exactly_fifty_jobs_and_each_is_charged()
    {
        var (teamId, key) = await Host.NewTeamAsync(50);
        using var team = Host.NewClient(key);
        var created = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Task.Run(() => PostAsync(team, "api/jobs/create"))));

        // Each open job holds a credit: 50 open, 50 refused before anything ran.
        var jobs = created.Where(c => c.Status == HttpStatusCode.OK).Select(c => c.Json.GetProperty("job_id").GetString()!).ToList();
        Assert.Equal(50, jobs.Count);
        Assert.All(created.Where(c => c.Status != HttpStatusCode.OK), c => c.AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits"));
        var balance = (await GetAsync(team, $"api/credits/teams/{teamId}/balance")).Json;
        Assert.Equal((50, 50, 0), (balance.GetProperty("credits_remaining").GetInt64(), balance.GetProperty("credits_held").GetInt64(), balance.GetProperty("credits_available").GetInt64()));

        var completed = await Task.WhenAll(jobs.Select(job => Task.Run(() => PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}"""))));

        Assert.All(completed, c => c.AssertStatus(HttpStatusCode.OK));
        Assert.All(completed, c => Assert.True(c.Json.GetProperty("costs").GetProperty("credit_applied").GetBoolean()));
        Assert.Equal(0, await Host.Store.GetBalanceAsync(teamId, CancellationToken.None));
        var ledger = await Host.Store.ListTransactionsAsync(teamId, 1000, 0, CancellationToken.None);
        Assert.Equal(50, ledger.Count(t => t.Reason == CreditReasons.JobCharge));
        Assert.All(ledger, t => Assert.True(t.BalanceAfter >= 0));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), ledger.Where(t => t.JobId is not null).Select(t => t.BalanceAfter).Order());

        // No credit left: new jobs and model calls are refused.
        (await PostAsync(team, "api/jobs/create")).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
        (await ChatAsync(team)).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
    }

    [Fact]
    public async Task A_team_with_one_credit_opens_one_job_however_many_it_asks_for_at_once()
    {
        // The probe: 1 credit, 20 jobs created at once, 20 model calls ran, 1 credit charged. Now one job opens.
        var (teamId, key) = await Host.NewTeamAsync(1);
        using var team = Host.NewClient(key);
        var created = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(() => PostAsync(team, "api/jobs/create", CreateJob))));
        var job = Assert.Single(created, c => c.Status == HttpStatusCode.OK).Json.GetProperty("job_id").GetString()!;
        foreach (var refused in created.Where(c => c.Status != HttpStatusCode.OK))
        {
            refused.AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
            Assert.Contains("open job", refused.Error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        Assert.Single(await Host.Store.ListJobsAsync(teamId, 100, 0, CancellationToken.None));
        (await PostAsync(team, $"api/jobs/{job}/llm-call", Call)).AssertStatus(HttpStatusCode.OK);
        var check = (await PostAsync(team, $"api/credits/teams/{teamId}/check", """{"credits_required": 1}""")).Json;
        Assert.False(check.GetProperty("available").GetBoolean());

        // Failing the job frees its credit (nothing charged); the next job can open.
        (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "failed"}""")).AssertStatus(HttpStatusCode.OK);
        var next = (await PostAsync(team, "api/jobs/create", CreateJob)).AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString()!;
        var done = (await PostAsync(team, $"api/jobs/{next}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(0, done.GetProperty("costs").GetProperty("credits_remaining").GetInt64());
        (await PostAsync(team, "api/jobs/create", CreateJob)).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");
    }

    [Fact]
    public async Task An_open_job_past_its_lifetime_expires_uncharged_and_frees_its_credit()
    {
        var (teamId, key) = await Host.NewTeamAsync(1);
        using var team = Host.NewClient(key);
        var job = (await PostAsync(team, "api/jobs/create")).AssertStatus(HttpStatusCode.OK).Json.GetProperty("job_id").GetString()!;
        (await PostAsync(team, "api/jobs/create")).AssertError(HttpStatusCode.Forbidden, "permission_error", "insufficient_credits");

        Time.Advance(TimeSpan.FromHours(24) + TimeSpan.FromMinutes(1));
        var expired = (await GetAsync(team, $"api/jobs/{job}")).Json;
        Assert.Equal(("failed", "not_billable"), (expired.GetProperty("status").GetString(), expired.GetProperty("charge").GetString()));
        Assert.Contains("expired", expired.GetProperty("error_message").GetString(), StringComparison.Ordinal);
        (await PostAsync(team, $"api/jobs/{job}/llm-call", Call)).AssertError(HttpStatusCode.Conflict, "invalid_request_error", "job_finished");
        Assert.False((await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).Json.GetProperty("costs").GetProperty("credit_applied").GetBoolean());
        (await PostAsync(team, "api/jobs/create")).AssertStatus(HttpStatusCode.OK);
        Assert.Equal(1, await Host.Store.GetBalanceAsync(teamId, CancellationToken.None));
    }
}

public sealed class SqliteJobTests : JobTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}

public sealed class PostgresJobTests : JobTests
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();
}
