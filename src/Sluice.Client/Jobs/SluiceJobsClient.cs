using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Sluice.Client.Internal;

namespace Sluice.Client.Jobs;

/// <summary>
/// The SaaS job API: create a job, make calls (whole or streamed) within it, complete it — one credit is charged for
/// a completed job with no failed calls — and read the team's credit balance and ledger.
/// </summary>
/// <remarks>
/// Authenticate with the team's virtual key (<see cref="SluiceClientOptions.ApiKey"/>). A team without credits gets
/// <see cref="SluiceInsufficientCreditsException"/>. Connection failures and 429 are retried; 5xx only for calls that
/// are safe to repeat (reads and <c>complete</c>, which is idempotent), never for create or a model call.
/// Thread-safe.
/// </remarks>
public sealed class SluiceJobsClient : IDisposable
{
    private readonly SluiceTransport _transport;

    /// <summary>Creates a client.</summary>
    /// <param name="options">Where to connect (the server root; <c>/api/…</c> paths are added) and the limits.</param>
    /// <param name="httpClient">An <see cref="HttpClient"/> to use (not disposed by this client), or null to own one.</param>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    public SluiceJobsClient(SluiceClientOptions options, HttpClient? httpClient = null) =>
        _transport = new SluiceTransport(options, httpClient);

    /// <summary>Creates a job (<c>POST /api/jobs/create</c>).</summary>
    /// <param name="request">Team, job type, user and metadata; null for none.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The job; its <see cref="SluiceJob.JobId"/> goes to the other calls.</returns>
    /// <exception cref="SluiceException">The call failed (e.g. <see cref="SluiceInsufficientCreditsException"/>).</exception>
    public async Task<SluiceJob> CreateJobAsync(CreateJobRequest? request = null, CancellationToken cancellationToken = default)
    {
        var payload = JsonBody.Write(json =>
        {
            JsonBody.WriteOptional(json, "team_id", request?.TeamId);
            JsonBody.WriteOptional(json, "job_type", request?.JobType);
            JsonBody.WriteOptional(json, "user_id", request?.UserId);
            if (request?.Metadata is { } metadata)
            {
                json.WritePropertyName("metadata");
                JsonSerializer.Serialize(json, metadata, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>)));
            }
        });
        using var document = await _transport.SendJsonAsync(HttpMethod.Post, _transport.Endpoints.Api("/api/jobs/create"), payload, idempotent: false, cancellationToken).ConfigureAwait(false);
        return SluiceJob.FromJson(document.RootElement);
    }

    /// <summary>Makes a model call within a job and waits for the whole answer (<c>POST /api/jobs/{id}/llm-call</c>).</summary>
    /// <param name="jobId">The job.</param>
    /// <param name="messages">The conversation.</param>
    /// <param name="options">Model (or model group), sampling and tools; <see cref="SluiceClientOptions.DefaultModel"/> when it names no model.</param>
    /// <param name="purpose">What this call is for, for reports; null for none.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The answer, its finish reason, tokens and latency.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public async Task<JobCallResult> CallAsync(
        string jobId, IEnumerable<ChatMessage> messages, ChatOptions? options = null, string? purpose = null, CancellationToken cancellationToken = default)
    {
        var payload = ChatRequestWriter.Write(messages, options, _transport.Options.DefaultModel, stream: false, json => JsonBody.WriteOptional(json, "purpose", purpose));
        using var document = await _transport.SendJsonAsync(HttpMethod.Post, JobUrl(jobId, "llm-call"), payload, idempotent: false, cancellationToken).ConfigureAwait(false);
        return JobCallResult.FromJson(document.RootElement);
    }

    /// <summary>
    /// Makes a model call within a job and streams the answer (<c>POST /api/jobs/{id}/llm-call-stream</c>, the
    /// <c>/v1</c> chunk format), with the same updates, limits and error types as <see cref="SluiceChatClient"/>.
    /// </summary>
    /// <param name="jobId">The job.</param>
    /// <param name="messages">The conversation.</param>
    /// <param name="options">Model (or model group), sampling and tools.</param>
    /// <param name="purpose">What this call is for, for reports; null for none.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The updates, as they arrive.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public IAsyncEnumerable<ChatResponseUpdate> StreamAsync(
        string jobId, IEnumerable<ChatMessage> messages, ChatOptions? options = null, string? purpose = null, CancellationToken cancellationToken = default)
    {
        var payload = ChatRequestWriter.Write(messages, options, _transport.Options.DefaultModel, stream: true, json => JsonBody.WriteOptional(json, "purpose", purpose));
        return UpdateAssembler.StreamAsync(_transport, JobUrl(jobId, "llm-call-stream"), payload, cancellationToken);
    }

    /// <summary>Completes a job (<c>POST /api/jobs/{id}/complete</c>); completing twice changes nothing.</summary>
    /// <param name="jobId">The job.</param>
    /// <param name="outcome">Completed (charged one credit if no call failed) or failed (not charged).</param>
    /// <param name="errorMessage">Why it failed, for failed jobs.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The costs summary, with the team's <c>credits_remaining</c>.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public async Task<JobCompletion> CompleteJobAsync(
        string jobId, JobOutcome outcome = JobOutcome.Completed, string? errorMessage = null, CancellationToken cancellationToken = default)
    {
        var payload = JsonBody.Write(json =>
        {
            json.WriteString("status", outcome == JobOutcome.Completed ? "completed" : "failed");
            JsonBody.WriteOptional(json, "error_message", errorMessage);
        });
        using var document = await _transport.SendJsonAsync(HttpMethod.Post, JobUrl(jobId, "complete"), payload, idempotent: true, cancellationToken).ConfigureAwait(false);
        return JobCompletion.FromJson(document.RootElement, jobId);
    }

    /// <summary>Reads a team's credit balance (<c>GET /api/credits/teams/{id}/balance</c>).</summary>
    /// <param name="teamId">The team.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The balance.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public async Task<CreditBalance> GetBalanceAsync(string teamId, CancellationToken cancellationToken = default)
    {
        using var document = await _transport.SendJsonAsync(HttpMethod.Get, TeamUrl(teamId, "balance"), null, idempotent: true, cancellationToken).ConfigureAwait(false);
        return CreditBalance.FromJson(document.RootElement, teamId);
    }

    /// <summary>Reads a page of a team's credit ledger (<c>GET /api/credits/teams/{id}/transactions?limit&amp;offset</c>).</summary>
    /// <param name="teamId">The team.</param>
    /// <param name="limit">Most rows to return; null for the server's default.</param>
    /// <param name="offset">Rows to skip; null for none.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The rows.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public async Task<CreditTransactionPage> GetTransactionsAsync(string teamId, int? limit = null, int? offset = null, CancellationToken cancellationToken = default)
    {
        var url = new Uri(TeamUrl(teamId, "transactions") + JsonBody.PageQuery(limit, offset));
        using var document = await _transport.SendJsonAsync(HttpMethod.Get, url, null, idempotent: true, cancellationToken).ConfigureAwait(false);
        return CreditTransactionPage.FromJson(document.RootElement, teamId);
    }

    /// <summary>
    /// An <see cref="IChatClient"/> whose calls stream within job <paramref name="jobId"/>, so a
    /// <see cref="ChatSession"/> (or any IChatClient consumer) can bill to the job. It shares this client's connections.
    /// </summary>
    /// <param name="jobId">The job.</param>
    /// <returns>The chat client; disposing it does nothing.</returns>
    public IChatClient AsChatClient(string jobId)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        return new JobChatClient(this, jobId);
    }

    /// <summary>Releases the connection pool (when the client created it).</summary>
    public void Dispose() => _transport.Dispose();

    private Uri JobUrl(string jobId, string action)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        return _transport.Endpoints.Api($"/api/jobs/{Uri.EscapeDataString(jobId)}/{action}");
    }

    private Uri TeamUrl(string teamId, string action)
    {
        ArgumentException.ThrowIfNullOrEmpty(teamId);
        return _transport.Endpoints.Api($"/api/credits/teams/{Uri.EscapeDataString(teamId)}/{action}");
    }



    private sealed class JobChatClient(SluiceJobsClient jobs, string jobId) : IChatClient
    {
        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            jobs.StreamAsync(jobId, messages, options, null, cancellationToken);

        public Task<ChatResponse> GetResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

        public object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceKey is null && serviceType == typeof(ChatClientMetadata)
                ? new ChatClientMetadata("sluice", jobs._transport.Endpoints.Root, jobs._transport.Options.DefaultModel)
                : serviceKey is null && serviceType?.IsInstanceOfType(this) == true ? this : null;

        public void Dispose()
        {
            // The jobs client owns the connections.
        }
    }
}
