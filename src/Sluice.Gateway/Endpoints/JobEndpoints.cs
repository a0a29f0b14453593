using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// The job API of the SaaS LiteLLM integration guide: create a job, make model calls in it (plain or streamed in
/// the same SSE chunk format as <c>/v1</c>), complete it. A job completed with no failed call costs one credit,
/// charged at most once however many times it is completed; failed jobs cost nothing.
/// </summary>
internal sealed partial class JobEndpoints(
    TenancyRuntime runtime,
    TenantDirectory directory,
    HttpCalls calls,
    GatewayOptions options,
    TimeProvider time,
    CallTelemetry telemetry,
    ILogger<JobEndpoints> logger)
{
    private const int MaxJobTypeChars = 100;
    private const int MaxErrorMessageChars = 2_000;

    private IJobStore Store => runtime.Store;

    private TimeProvider Time => time;

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/api/jobs/create", c => Run(c, CreateAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/jobs/{id}", c => Run(c, GetAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/jobs/{id}/llm-call", c => CallAsync(c, stream: false)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/jobs/{id}/llm-call-stream", c => CallAsync(c, stream: true)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/jobs/{id}/complete", c => Run(c, CompleteAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/teams/{id}/jobs", c => Run(c, ListAsync)).WithPolicy(EndpointPolicy.Key);
    }

    private static Task Run(HttpContext context, Func<HttpContext, Task> handler) => ApiHandler.RunAsync(context, () => handler(context));

    private static string Route(HttpContext context) => context.Request.RouteValues["id"] as string ?? string.Empty;

    private async Task CreateAsync(HttpContext context)
    {
        var caller = context.GetCaller();
        using var body = await ApiJson.ReadAsync(context, options.Limits.MaxRequestBodyBytes);
        var root = ApiJson.RequireObject(body);
        var named = ApiJson.OptionalName(root, "team_id", NameKind.Id);
        string teamId;
        if (caller.TeamId is { } own)
        {
            // A key works for its own team only; naming another team looks exactly like naming a missing one.
            if (named is not null && named != own)
            {
                throw SluiceErrors.NotFound("team", named);
            }

            teamId = own;
        }
        else
        {
            teamId = named ?? throw ChatException.BadRequest(
                "team_id is required with the master key (a team's virtual key implies its team), e.g. \"team_id\": \"team_engineering\".",
                "team_id", "missing_required_parameter");
        }

        // Everything is validated before the job exists: a refused request leaves nothing behind.
        var jobType = ApiJson.OptionalName(root, "job_type", NameKind.Label, MaxJobTypeChars);
        var job = await Store.CreateJobAsync(teamId, caller.Key?.Id, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("job_id", job.Id);
            json.WriteString("team_id", job.TeamId);
            json.WriteString("job_type", jobType);
            json.WriteString("status", StatusOf(job));
            json.WriteTime("created_at", job.CreatedAt);
            json.WriteEndObject();
        });
    }

    private async Task GetAsync(HttpContext context)
    {
        var job = await FindJobAsync(context);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            WriteJobFields(json, job);
            WriteCosts(json, job, null);
            WriteCalls(json, job);
            json.WriteEndObject();
        });
    }

    private async Task ListAsync(HttpContext context)
    {
        var teamId = Route(context);
        context.GetCaller().RequireTeam(teamId);
        _ = await directory.GetTeamAsync(teamId, context.RequestAborted) ?? throw SluiceErrors.NotFound("team", teamId);
        var (limit, offset) = ApiJson.Page(context, 100);
        var jobs = await Store.ListJobsAsync(teamId, limit, offset, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("team_id", teamId);
            json.WriteNumber("limit", limit);
            json.WriteNumber("offset", offset);
            json.WriteStartArray("jobs");
            foreach (var job in jobs)
            {
                json.WriteStartObject();
                WriteJobFields(json, job);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        });
    }

    private async Task CompleteAsync(HttpContext context)
    {
        var job = await FindJobAsync(context);
        using var body = await ApiJson.ReadAsync(context, options.Limits.MaxRequestBodyBytes);
        var root = ApiJson.RequireObject(body);
        var status = ApiJson.OptionalString(root, "status") switch
        {
            "completed" => JobStatus.Completed,
            "failed" => JobStatus.Failed,
            null => throw ChatException.BadRequest("status is required: \"completed\" or \"failed\".", "status", "missing_required_parameter"),
            var other => throw ChatException.BadRequest($"status must be \"completed\" or \"failed\" (got \"{other}\").", "status"),
        };
        var error = ApiJson.OptionalName(root, "error_message", NameKind.Text, MaxErrorMessageChars);

        // Atomic in the store: one credit at most, however many callers complete the job at once.
        var completion = await Store.CompleteJobAsync(job.TeamId, job.Id, status, error, context.RequestAborted);
        directory.SetBalance(job.TeamId, completion.BalanceAfter);
        if (!completion.AlreadyFinished && completion.Job.Charge == JobCharge.Charged)
        {
            telemetry.CreditsCharged(job.TeamId, 1);
        }
        var finished = await Store.GetJobAsync(job.TeamId, job.Id, context.RequestAborted) ?? completion.Job;
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            WriteJobFields(json, finished);
            json.WriteBoolean("already_completed", completion.AlreadyFinished);
            WriteCosts(json, finished, completion.BalanceAfter);
            WriteCalls(json, finished);
            json.WriteEndObject();
        });
    }

    /// <summary>A model call in a job, through the call pipeline: admitted and billed against the job's team.</summary>
    private Task CallAsync(HttpContext context, bool stream)
    {
        var stage = new JobStage(this, Route(context), stream);
        var answer = new HttpAnswer(
            call => new OpenAIStreamFormat(
                new OpenAIChunkWriter("chatcmpl-" + call.RequestId, time.GetUtcNow().ToUnixTimeSeconds(), call.Model.Name) { WritesUsageNull = call.Request.IncludeUsage }, call.Request.IncludeUsage),
            (output, call, answer, usage) => WriteCallResult(output, call, stage, answer, usage));
        return calls.RunAsync(context, CallDialect.Job, answer, stage);
    }

    private void WriteCallResult(IBufferWriter<byte> output, ChatCall call, JobStage stage, ChatCompletionAccumulator answer, ChatUsage usage)
    {
        var choice = answer.Choices.FirstOrDefault();
        using var json = new Utf8JsonWriter(output);
        json.WriteStartObject();
        json.WriteString("call_id", stage.RecordedCall?.Id.ToString(CultureInfo.InvariantCulture));
        json.WriteString("job_id", stage.Job.Id);
        json.WriteStartObject("response");
        json.WriteString("content", choice?.Content ?? string.Empty);
        json.WriteString("finish_reason", choice?.FinishReason);
        json.WriteEndObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("tokens_used", usage.PromptTokens + usage.CompletionTokens);
        json.WriteNumber("prompt_tokens", usage.PromptTokens);
        json.WriteNumber("completion_tokens", usage.CompletionTokens);
        json.WriteNumber("latency_ms", Math.Round(time.GetElapsedTime(call.StartTimestamp).TotalMilliseconds, 1));
        json.WriteString("model_group", call.Request.Model);
        json.WriteString("request_id", call.RequestId);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Records a call in the job; a job completed meanwhile keeps its outcome (the call is only logged).</summary>
    private async Task<JobCall?> RecordAsync(Job job, string model, long promptTokens, long completionTokens, UsageStatus status, TimeSpan latency)
    {
        var call = new NewJobCall(
            model,
            promptTokens,
            completionTokens,
            status switch
            {
                UsageStatus.Completed => CallStatus.Completed,
                UsageStatus.Failed => CallStatus.Failed,
                _ => CallStatus.Abandoned,
            },
            latency);
        try
        {
            // Not the request's token: the outcome is recorded even when the client has gone.
            return await Store.RecordJobCallAsync(job.TeamId, job.Id, call, CancellationToken.None);
        }
        catch (StoreConflictException)
        {
            LogJobFinished(logger, job.Id, call.Status);
            return null;
        }
    }

    /// <summary>
    /// A job call as a pipeline stage: the job must be the caller's (another team's is a 404) and still open; the call
    /// names its model with <c>model_group</c> (or <c>model</c>), is admitted against the job's team, and is recorded in
    /// the job before the terminal frame, so a client completing the job right after is charged according to it.
    /// </summary>
    private sealed class JobStage(JobEndpoints endpoints, string jobId, bool stream) : CallStage
    {
        private Job? _job;

        public Job Job => _job ?? throw new InvalidOperationException("The job is not loaded yet.");

        public JobCall? RecordedCall { get; private set; }

        public override async ValueTask PrepareAsync(ChatCall call, CancellationToken cancellationToken)
        {
            _job = await endpoints.FindJobAsync(call.Caller, jobId, cancellationToken);
            if (_job.Status != JobStatus.Created)
            {
                throw Finished(_job);
            }

            string? groupName;
            using (var document = JsonInput.Parse(call.Body))
            {
                groupName = ApiJson.OptionalName(document.RootElement, "model_group", NameKind.ModelName);
            }

            var name = groupName ?? (call.Request.Model.Length > 0 ? call.Request.Model : null)
                ?? throw ChatException.BadRequest("model_group is required: the model group (or model) to call, e.g. \"model_group\": \"ChatAgent\".", "model_group", "missing_required_parameter");

            // The client's body carries job fields (model_group, purpose) an upstream would refuse: send the parsed request.
            call.Request = call.Request with { Model = name, Stream = stream, RawBody = ReadOnlyMemory<byte>.Empty };
            call.BillingTeamId = _job.TeamId;
            call.JobId = _job.Id;
        }

        public override async ValueTask SettleAsync(ChatCall call, UsageStatus status, ChatUsage usage) =>
            RecordedCall = await endpoints.RecordAsync(Job, call.Request.Model, usage.PromptTokens, usage.CompletionTokens, status, endpoints.Time.GetElapsedTime(call.StartTimestamp));
    }

    /// <summary>The caller's job: a team key sees its own team's jobs only; others are 404 like missing ones.</summary>
    private Task<Job> FindJobAsync(HttpContext context) => FindJobAsync(context.GetCaller(), Route(context), context.RequestAborted);

    private async Task<Job> FindJobAsync(Caller caller, string id, CancellationToken cancellationToken)
    {
        var teamId = caller.TeamId ?? await Store.FindJobTeamAsync(id, cancellationToken);
        var job = teamId is null ? null : await Store.GetJobAsync(teamId, id, cancellationToken);
        return job ?? throw SluiceErrors.NotFound("job", id);
    }

    private static ChatException Finished(Job job) => new(
        StatusCodes.Status409Conflict,
        new ErrorInfo(
            $"Job '{job.Id}' is already {StatusOf(job)}; model calls can only be made in an open job. Create a new job (POST /api/jobs/create).",
            ErrorTypes.InvalidRequest, null, "job_finished"));

    private static string StatusOf(Job job) => job.Status switch
    {
        JobStatus.Completed => "completed",
        JobStatus.Failed => "failed",
        _ => job.CallCount > 0 ? "in_progress" : "pending",
    };

    private static string ChargeOf(JobCharge charge) => charge switch
    {
        JobCharge.Charged => "charged",
        JobCharge.NotBillable => "not_billable",
        JobCharge.InsufficientCredits => "insufficient_credits",
        _ => "pending",
    };

    private static void WriteJobFields(Utf8JsonWriter json, Job job)
    {
        json.WriteString("job_id", job.Id);
        json.WriteString("team_id", job.TeamId);
        json.WriteString("key_id", job.KeyId);
        json.WriteString("status", StatusOf(job));
        json.WriteString("charge", ChargeOf(job.Charge));
        json.WriteBoolean("credit_applied", job.Charge == JobCharge.Charged);
        json.WriteString("error_message", job.Error);
        json.WriteTime("created_at", job.CreatedAt);
        json.WriteTime("completed_at", job.CompletedAt);
    }

    private static void WriteCosts(Utf8JsonWriter json, Job job, long? creditsRemaining)
    {
        json.WriteStartObject("costs");
        json.WriteNumber("total_calls", job.CallCount);
        json.WriteNumber("successful_calls", job.Calls.Count(c => c.Status == CallStatus.Completed));
        json.WriteNumber("failed_calls", job.FailedCalls);
        json.WriteNumber("total_tokens", job.Calls.Sum(c => c.PromptTokens + c.CompletionTokens));
        json.WriteNumber("avg_latency_ms", job.Calls.Count == 0 ? 0 : Math.Round(job.Calls.Average(c => c.Latency.TotalMilliseconds), 1));
        json.WriteBoolean("credit_applied", job.Charge == JobCharge.Charged);
        json.WriteNumber("credits_charged", job.Charge == JobCharge.Charged ? 1 : 0);
        if (creditsRemaining is { } remaining)
        {
            json.WriteNumber("credits_remaining", remaining);
        }

        json.WriteEndObject();
    }

    private static void WriteCalls(Utf8JsonWriter json, Job job)
    {
        json.WriteStartArray("calls");
        foreach (var call in job.Calls)
        {
            json.WriteStartObject();
            json.WriteString("call_id", call.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            json.WriteString("model_group", call.Model);
            json.WriteNumber("prompt_tokens", call.PromptTokens);
            json.WriteNumber("completion_tokens", call.CompletionTokens);
            json.WriteNumber("tokens", call.PromptTokens + call.CompletionTokens);
            json.WriteNumber("latency_ms", Math.Round(call.Latency.TotalMilliseconds, 1));
            json.WriteString("status", call.Status switch
            {
                CallStatus.Completed => "completed",
                CallStatus.Failed => "failed",
                _ => "abandoned",
            });
            json.WriteString("error", call.Status == CallStatus.Failed ? "the model call failed" : null);
            json.WriteTime("created_at", call.CreatedAt);
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId} was finished before its {Status} call could be recorded; the job keeps its outcome")]
    private static partial void LogJobFinished(ILogger logger, string jobId, CallStatus status);
}
