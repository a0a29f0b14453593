using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Sluice.Client.Jobs;
using static Sluice.Client.Tests.Streams;

namespace Sluice.Client.Tests;

/// <summary>
/// SluiceJobsClient against a loopback server that emulates the job and credit endpoints of the tenancy API
/// (paths and field names as the SaaS integration guide and the tenancy issue define them).
/// </summary>
public sealed class JobsClientTests : IAsyncLifetime
{
    private const string Key = "sk-sluice-test";
    private readonly FakeJobApi _api = new();
    private ScriptedServer? _server;

    public async Task InitializeAsync() => _server = await ScriptedServer.StartAsync(_api.Map);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Create_call_stream_complete_charges_one_credit_and_the_ledger_shows_it()
    {
        _api.Credits = 5;
        using var jobs = Client();

        var job = await jobs.CreateJobAsync(new CreateJobRequest { TeamId = "team-1", JobType = "document_analysis", UserId = "u-7", Metadata = new Dictionary<string, object?> { ["doc"] = "a.pdf", ["pages"] = 3 } });
        var call = await jobs.CallAsync(job.JobId, User("Summarise"), new ChatOptions { ModelId = "fast-group", MaxOutputTokens = 50, Temperature = 0.2f }, purpose: "summary");
        var streamed = await CollectAsync(jobs.StreamAsync(job.JobId, User("Now in French"), new ChatOptions { ModelId = "fast-group" }, purpose: "translation"));
        var completion = await jobs.CompleteJobAsync(job.JobId);
        var again = await jobs.CompleteJobAsync(job.JobId);
        var balance = await jobs.GetBalanceAsync("team-1");
        var ledger = await jobs.GetTransactionsAsync("team-1", limit: 10, offset: 0);

        Assert.Equal("job_1", job.JobId);
        Assert.Equal("pending", job.Status);
        Assert.NotNull(job.CreatedAt);
        var created = _api.Bodies["create"];
        Assert.Equal("team-1", created.GetProperty("team_id").GetString());
        Assert.Equal("document_analysis", created.GetProperty("job_type").GetString());
        Assert.Equal("u-7", created.GetProperty("user_id").GetString());
        Assert.Equal(3, created.GetProperty("metadata").GetProperty("pages").GetInt32());

        Assert.Equal("Summary of the document.", call.Content);
        Assert.Equal("stop", call.FinishReason);
        Assert.Equal(42, call.TokensUsed);
        Assert.Equal(12.5, call.LatencyMs);
        Assert.Equal("fast-group", call.Model);
        var callBody = _api.Bodies["llm-call"];
        Assert.Equal("fast-group", callBody.GetProperty("model").GetString());
        Assert.Equal("summary", callBody.GetProperty("purpose").GetString());
        Assert.Equal(50, callBody.GetProperty("max_tokens").GetInt32());
        Assert.False(callBody.TryGetProperty("stream", out _));

        Assert.Equal("Bonjour le monde", Text(streamed));
        Assert.Equal(ChatFinishReason.Stop, Assert.Single(streamed, u => u.FinishReason is not null).FinishReason);
        Assert.Equal("translation", _api.Bodies["llm-call-stream"].GetProperty("purpose").GetString());

        Assert.Equal("completed", completion.Status);
        Assert.Equal(4, completion.CreditsRemaining);
        Assert.Equal(true, completion.Costs.CreditApplied);
        Assert.Equal(2, completion.Costs.TotalCalls);
        Assert.Equal(4, again.CreditsRemaining);
        Assert.Equal(false, again.Costs.CreditApplied);

        Assert.Equal(4, balance.CreditsRemaining);
        Assert.Equal(5, balance.CreditsAllocated);
        Assert.Equal("team-1", balance.TeamId);
        Assert.Equal(2, ledger.Transactions.Count);
        var charge = ledger.Transactions[0];
        Assert.Equal(-1, charge.Amount);
        Assert.Equal("job_1", charge.JobId);
        Assert.Equal(4, charge.BalanceAfter);
        Assert.Equal("job", charge.Reason);
        Assert.Equal(5, ledger.Transactions[1].BalanceAfter);
        Assert.Equal("limit=10&offset=0", _api.LastQuery);
        Assert.All(_api.Authorizations, a => Assert.Equal("Bearer " + Key, a));
    }

    [Fact]
    public async Task A_failed_job_is_not_charged()
    {
        _api.Credits = 2;
        using var jobs = Client();
        var job = await jobs.CreateJobAsync();

        var completion = await jobs.CompleteJobAsync(job.JobId, JobOutcome.Failed, "the parser crashed");

        Assert.Equal("failed", completion.Status);
        Assert.Equal(2, completion.CreditsRemaining);
        Assert.Equal("the parser crashed", _api.Bodies["complete"].GetProperty("error_message").GetString());
        Assert.Equal("failed", _api.Bodies["complete"].GetProperty("status").GetString());
    }

    [Fact]
    public async Task No_credits_raises_insufficient_credits_and_unknown_jobs_are_not_found()
    {
        _api.Credits = 0;
        using var jobs = Client();

        var credits = await Assert.ThrowsAsync<SluiceInsufficientCreditsException>(() => jobs.CreateJobAsync());
        var missing = await Assert.ThrowsAsync<SluiceNotFoundException>(() => jobs.CallAsync("job_404", User("Hi")));
        var missingStream = await Assert.ThrowsAsync<SluiceNotFoundException>(() => CollectAsync(jobs.StreamAsync("job_404", User("Hi"))));

        Assert.Equal(403, credits.StatusCode);
        Assert.Equal("req-jobs", credits.RequestId);
        Assert.Contains("no credits", credits.ServerMessage, StringComparison.Ordinal);
        Assert.Equal("job_not_found", missing.ErrorCode);
        Assert.Equal("job_not_found", missingStream.ErrorCode);
    }

    [Fact]
    public async Task A_job_bound_chat_client_lets_a_session_bill_its_turns_to_the_job()
    {
        _api.Credits = 1;
        using var jobs = Client();
        var job = await jobs.CreateJobAsync();
        var session = new ChatSession(jobs.AsChatClient(job.JobId), "Translate to French", new ChatOptions { ModelId = "fast-group" });

        var reply = await session.SendAsync("Hello world");

        Assert.Equal("Bonjour le monde", reply.Text);
        Assert.Equal(2, session.History.Count);
        var sent = _api.Bodies["llm-call-stream"].GetProperty("messages");
        Assert.Equal("system", sent[0].GetProperty("role").GetString());
    }

    private SluiceJobsClient Client() => new(new SluiceClientOptions { Endpoint = _server!.Url, ApiKey = Key });

    /// <summary>The job API in memory: one team, its credits and ledger, jobs charged once.</summary>
    private sealed class FakeJobApi
    {
        private readonly ConcurrentDictionary<string, (bool Finished, string Status)> _jobs = new();
        private readonly List<object> _ledger = [];
        private int _nextJob;

        public long Credits { get; set; }

        public ConcurrentDictionary<string, JsonElement> Bodies { get; } = new();

        public ConcurrentQueue<string> Authorizations { get; } = new();

        public string? LastQuery { get; private set; }

        public void Map(WebApplication app)
        {
            app.Use(async (context, next) =>
            {
                Authorizations.Enqueue(context.Request.Headers.Authorization.ToString());
                context.Response.Headers["x-request-id"] = "req-jobs";
                await next(context);
            });
            app.MapPost("/api/jobs/create", async (HttpContext context) =>
            {
                await Record(context, "create");
                if (Credits <= 0)
                {
                    return Error(403, "Team team-1 has no credits left. Add credits, then retry.", "insufficient_credits");
                }

                if (_ledger.Count == 0)
                {
                    _ledger.Add(new { transaction_id = "tx_1", team_id = "team-1", amount = Credits, reason = "initial allocation", job_id = (string?)null, balance_after = Credits, created_at = "2025-01-01T00:00:00Z" });
                }

                var id = $"job_{Interlocked.Increment(ref _nextJob)}";
                _jobs[id] = (false, "pending");
                return Results.Json(new { job_id = id, status = "pending", created_at = "2025-01-01T10:00:00Z" });
            });
            app.MapPost("/api/jobs/{id}/llm-call", async (HttpContext context, string id) =>
            {
                await Record(context, "llm-call");
                return !_jobs.ContainsKey(id)
                    ? Error(404, $"Job {id} not found.", "job_not_found")
                    : Results.Json(new { call_id = "call_1", response = new { content = "Summary of the document.", finish_reason = "stop" }, metadata = new { tokens_used = 42, latency_ms = 12.5, model = "fast-group" } });
            });
            app.MapPost("/api/jobs/{id}/llm-call-stream", async (HttpContext context, string id) =>
            {
                await Record(context, "llm-call-stream");
                if (!_jobs.ContainsKey(id))
                {
                    await Error(404, $"Job {id} not found.", "job_not_found").ExecuteAsync(context);
                    return;
                }

                ScriptedServer.StartStream(context);
                foreach (var piece in new[] { "Bonjour", " le", " monde" })
                {
                    await ScriptedServer.WriteEventAsync(context, ScriptedServer.TextChunk(piece));
                }

                await ScriptedServer.WriteEventAsync(context, ScriptedServer.FinishChunk());
                await ScriptedServer.WriteEventAsync(context, "[DONE]");
            });
            app.MapPost("/api/jobs/{id}/complete", async (HttpContext context, string id) =>
            {
                var body = await Record(context, "complete");
                if (!_jobs.TryGetValue(id, out var job))
                {
                    return Error(404, $"Job {id} not found.", "job_not_found");
                }

                var status = body.GetProperty("status").GetString()!;
                var charged = false;
                if (!job.Finished)
                {
                    _jobs[id] = (true, status);
                    if (status == "completed" && Credits > 0)
                    {
                        Credits--;
                        charged = true;
                        _ledger.Insert(0, new { transaction_id = $"tx_{_ledger.Count + 1}", team_id = "team-1", amount = -1, reason = "job", job_id = id, balance_after = Credits, created_at = "2025-01-01T10:05:00Z" });
                    }
                }

                return Results.Json(new
                {
                    job_id = id,
                    status = _jobs[id].Status,
                    completed_at = "2025-01-01T10:05:00Z",
                    costs = new { total_calls = 2, successful_calls = 2, failed_calls = 0, total_tokens = 84, credit_applied = charged, credits_remaining = Credits },
                    calls = Array.Empty<object>(),
                });
            });
            app.MapGet("/api/credits/teams/{id}/balance", (string id) =>
                Results.Json(new { team_id = id, credits_allocated = 5, credits_remaining = Credits }));
            app.MapGet("/api/credits/teams/{id}/transactions", (HttpContext context, string id) =>
            {
                LastQuery = context.Request.QueryString.Value?.TrimStart('?');
                return Results.Json(new { team_id = id, total = _ledger.Count, transactions = _ledger });
            });
        }

        private async Task<JsonElement> Record(HttpContext context, string name)
        {
            using var document = await JsonDocument.ParseAsync(context.Request.Body);
            var body = document.RootElement.Clone();
            Bodies[name] = body;
            return body;
        }

        private static IResult Error(int status, string message, string code) =>
            Results.Json(new { error = new { message, type = status == 404 ? "invalid_request_error" : "permission_error", code } }, statusCode: status);
    }
}
