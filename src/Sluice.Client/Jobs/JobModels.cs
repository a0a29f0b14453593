using System.Text.Json;
using Sluice.Client.Internal;

namespace Sluice.Client.Jobs;

/// <summary>What <c>POST /api/jobs/create</c> needs. Every field is optional for Sluice (the key names the team).</summary>
public sealed class CreateJobRequest
{
    /// <summary><c>team_id</c>: the team the job bills (the SaaS API requires it to match the key's team).</summary>
    public string? TeamId { get; init; }

    /// <summary><c>job_type</c>: what kind of work this is, for reports (e.g. <c>document_analysis</c>).</summary>
    public string? JobType { get; init; }

    /// <summary><c>user_id</c>: your end user, for reports.</summary>
    public string? UserId { get; init; }

    /// <summary><c>metadata</c>: anything to keep with the job (strings, numbers, booleans, nested dictionaries).</summary>
    public IDictionary<string, object?>? Metadata { get; init; }
}

/// <summary>How a job ended, for <see cref="SluiceJobsClient.CompleteJobAsync"/>.</summary>
public enum JobOutcome
{
    /// <summary><c>completed</c>: the work succeeded; one credit is charged if none of its calls failed.</summary>
    Completed,

    /// <summary><c>failed</c>: the work failed; failed jobs are not charged.</summary>
    Failed,
}

/// <summary>A created job (<c>POST /api/jobs/create</c>).</summary>
/// <param name="JobId"><c>job_id</c>: pass it to the call and complete methods.</param>
/// <param name="Status"><c>status</c>, e.g. <c>pending</c> or <c>created</c>.</param>
/// <param name="CreatedAt"><c>created_at</c>.</param>
/// <param name="Raw">The whole answer, for fields this type does not name.</param>
public sealed record SluiceJob(string JobId, string? Status, DateTimeOffset? CreatedAt, JsonElement Raw)
{
    internal static SluiceJob FromJson(JsonElement root) => new(
        Json.String(root, "job_id") ?? Json.String(root, "id") ?? throw MissingField("job_id", "POST /api/jobs/create"),
        Json.String(root, "status"),
        Json.Time(root, "created_at"),
        root.Clone());

    internal static SluiceServerException MissingField(string field, string call) =>
        new($"The answer to {call} has no '{field}'. Check that the address points at a Sluice gateway with the job API.");
}

/// <summary>A non-streaming call within a job (<c>POST /api/jobs/{id}/llm-call</c>).</summary>
/// <param name="CallId"><c>call_id</c>.</param>
/// <param name="Content"><c>response.content</c>: the answer text.</param>
/// <param name="FinishReason"><c>response.finish_reason</c>.</param>
/// <param name="TokensUsed"><c>metadata.tokens_used</c>: prompt plus completion tokens.</param>
/// <param name="LatencyMs"><c>metadata.latency_ms</c>.</param>
/// <param name="Model"><c>metadata.model</c>: the model or model group that answered.</param>
/// <param name="Raw">The whole answer.</param>
public sealed record JobCallResult(string? CallId, string? Content, string? FinishReason, long? TokensUsed, double? LatencyMs, string? Model, JsonElement Raw)
{
    internal static JobCallResult FromJson(JsonElement root)
    {
        var response = Json.Object(root, "response") ?? root;
        var metadata = Json.Object(root, "metadata") ?? root;
        return new JobCallResult(
            Json.String(root, "call_id"),
            Json.String(response, "content"),
            Json.String(response, "finish_reason"),
            Json.Long(metadata, "tokens_used") ?? Json.Long(metadata, "total_tokens"),
            Json.Double(metadata, "latency_ms"),
            Json.String(metadata, "model"),
            root.Clone());
    }
}

/// <summary>The costs summary of a completed job.</summary>
/// <param name="TotalCalls"><c>total_calls</c>.</param>
/// <param name="SuccessfulCalls"><c>successful_calls</c>.</param>
/// <param name="FailedCalls"><c>failed_calls</c>.</param>
/// <param name="TotalTokens"><c>total_tokens</c>.</param>
/// <param name="CreditApplied"><c>credit_applied</c>: whether this job was charged a credit.</param>
/// <param name="CreditsRemaining"><c>credits_remaining</c>: the team's balance afterwards.</param>
public sealed record JobCosts(long? TotalCalls, long? SuccessfulCalls, long? FailedCalls, long? TotalTokens, bool? CreditApplied, long? CreditsRemaining);

/// <summary>A completed job (<c>POST /api/jobs/{id}/complete</c>).</summary>
/// <param name="JobId"><c>job_id</c>.</param>
/// <param name="Status"><c>status</c>: <c>completed</c> or <c>failed</c>.</param>
/// <param name="CompletedAt"><c>completed_at</c>.</param>
/// <param name="Costs"><c>costs</c>, including <c>credits_remaining</c>.</param>
/// <param name="Raw">The whole answer (e.g. its <c>calls</c>).</param>
public sealed record JobCompletion(string JobId, string? Status, DateTimeOffset? CompletedAt, JobCosts Costs, JsonElement Raw)
{
    /// <summary>The team's credits after this job (<c>costs.credits_remaining</c>).</summary>
    public long? CreditsRemaining => Costs.CreditsRemaining;

    internal static JobCompletion FromJson(JsonElement root, string jobId)
    {
        var costs = Json.Object(root, "costs") ?? root;
        return new JobCompletion(
            Json.String(root, "job_id") ?? jobId,
            Json.String(root, "status"),
            Json.Time(root, "completed_at"),
            new JobCosts(
                Json.Long(costs, "total_calls"),
                Json.Long(costs, "successful_calls"),
                Json.Long(costs, "failed_calls"),
                Json.Long(costs, "total_tokens"),
                Json.Bool(costs, "credit_applied"),
                Json.Long(costs, "credits_remaining") ?? Json.Long(root, "credits_remaining")),
            root.Clone());
    }
}

/// <summary>A team's credit balance (<c>GET /api/credits/teams/{id}/balance</c>).</summary>
/// <param name="TeamId"><c>team_id</c>.</param>
/// <param name="CreditsAllocated"><c>credits_allocated</c>: credits given so far.</param>
/// <param name="CreditsUsed"><c>credits_used</c>, when the server reports it.</param>
/// <param name="CreditsRemaining"><c>credits_remaining</c>: what is left.</param>
/// <param name="Raw">The whole answer.</param>
public sealed record CreditBalance(string TeamId, long? CreditsAllocated, long? CreditsUsed, long CreditsRemaining, JsonElement Raw)
{
    internal static CreditBalance FromJson(JsonElement root, string teamId) => new(
        Json.String(root, "team_id") ?? teamId,
        Json.Long(root, "credits_allocated"),
        Json.Long(root, "credits_used"),
        Json.Long(root, "credits_remaining") ?? Json.Long(root, "balance") ?? throw SluiceJob.MissingField("credits_remaining", "GET /api/credits/teams/{id}/balance"),
        root.Clone());
}

/// <summary>One row of a team's append-only credit ledger.</summary>
/// <param name="Id"><c>transaction_id</c> (or <c>id</c>).</param>
/// <param name="Amount"><c>amount</c>: credits added (positive) or charged (negative).</param>
/// <param name="Reason"><c>reason</c>, e.g. <c>job</c> or an operator's note.</param>
/// <param name="JobId"><c>job_id</c>, for job charges.</param>
/// <param name="BalanceAfter"><c>balance_after</c>: the balance right after this row.</param>
/// <param name="CreatedAt"><c>created_at</c>.</param>
/// <param name="Raw">The whole row.</param>
public sealed record CreditTransaction(string? Id, long? Amount, string? Reason, string? JobId, long? BalanceAfter, DateTimeOffset? CreatedAt, JsonElement Raw)
{
    internal static CreditTransaction FromJson(JsonElement row) => new(
        Json.String(row, "transaction_id") ?? Json.String(row, "id"),
        Json.Long(row, "amount") ?? Json.Long(row, "credits_amount"),
        Json.String(row, "reason"),
        Json.String(row, "job_id"),
        Json.Long(row, "balance_after") ?? Json.Long(row, "credits_after"),
        Json.Time(row, "created_at"),
        row.Clone());
}

/// <summary>A page of the ledger (<c>GET /api/credits/teams/{id}/transactions</c>), newest first as the server orders it.</summary>
/// <param name="TeamId"><c>team_id</c>.</param>
/// <param name="Total"><c>total</c>, when the server reports it.</param>
/// <param name="Transactions"><c>transactions</c>.</param>
public sealed record CreditTransactionPage(string TeamId, long? Total, IReadOnlyList<CreditTransaction> Transactions)
{
    internal static CreditTransactionPage FromJson(JsonElement root, string teamId)
    {
        var rows = root.ValueKind == JsonValueKind.Array ? root
            : root.ValueKind == JsonValueKind.Object && root.TryGetProperty("transactions", out var list) && list.ValueKind == JsonValueKind.Array ? list
            : throw SluiceJob.MissingField("transactions", "GET /api/credits/teams/{id}/transactions");
        var transactions = rows.EnumerateArray().Select(CreditTransaction.FromJson).ToList();
        return new CreditTransactionPage(Json.String(root, "team_id") ?? teamId, Json.Long(root, "total"), transactions);
    }
}
