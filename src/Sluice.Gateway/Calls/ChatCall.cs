using System.Diagnostics;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol.Chat;
using Sluice.Providers;

namespace Sluice.Gateway.Calls;

/// <summary>
/// One chat call, whatever transport and dialect brought it: created by the transport's first stage (id, clock,
/// caller, dialect), filled in by the <see cref="CallPipeline"/> (request, model, billing, lease) and read by the
/// relay, the sinks and the usage meter. The per-call state that YARP keeps in a request feature.
/// </summary>
/// <remarks>Owned by one call; not shared between threads except through the pipeline's awaits.</remarks>
internal sealed class ChatCall
{
    private ChatRequest? _request;
    private ModelEntry? _model;

    /// <param name="requestId">The request id (also sent as <c>x-request-id</c>).</param>
    /// <param name="startTimestamp">When the call arrived (<see cref="TimeProvider.GetTimestamp"/> of the gateway's clock).</param>
    /// <param name="caller">Who is calling.</param>
    /// <param name="dialect">The dialect it speaks.</param>
    /// <param name="aborted">Cancelled when the client leaves (its connection, or its cancel message).</param>
    public ChatCall(string requestId, long startTimestamp, Caller caller, CallDialect dialect, CancellationToken aborted)
    {
        RequestId = requestId;
        StartTimestamp = startTimestamp;
        Caller = caller;
        Dialect = dialect;
        Aborted = aborted;
    }

    public string RequestId { get; }

    public long StartTimestamp { get; }

    public Caller Caller { get; }

    public CallDialect Dialect { get; }

    /// <summary>Cancelled when the client is gone.</summary>
    public CancellationToken Aborted { get; }

    /// <summary>The request body as received (stages read their own fields from it, e.g. a session turn's <c>message</c>).</summary>
    public ReadOnlyMemory<byte> Body { get; set; }

    /// <summary>The parsed request; stages replace it with changed copies (<c>with</c>), never mutate it.</summary>
    public ChatRequest Request
    {
        get => _request ?? throw new InvalidOperationException("The call has not been parsed yet.");
        set => _request = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Whether <see cref="Request"/> is set.</summary>
    public bool IsParsed => _request is not null;

    /// <summary>The model name exactly as the client sent it (Ollama answers echo it); empty for "the default model".</summary>
    public string RequestedModel { get; set; } = string.Empty;

    /// <summary>The resolved model (configured model, alias or group).</summary>
    public ModelEntry Model
    {
        get => _model ?? throw new InvalidOperationException("The call's model has not been resolved yet.");
        set => _model = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Whether <see cref="Model"/> is set.</summary>
    public bool IsResolved => _model is not null;

    /// <summary>What answers: the model's backend, possibly wrapped by a stage (e.g. a session capturing its reply).</summary>
    public IChatBackend? Backend { get; set; }

    /// <summary>The team the call is billed to and admitted against: the key's team, or the team of the job it runs in.</summary>
    public string? BillingTeamId { get; set; }

    /// <summary>The job the call runs in, if any.</summary>
    public string? JobId { get; set; }

    /// <summary>Who is billed once admitted (null: open mode or the master key outside a job).</summary>
    public UsageOwner? Owner { get; set; }

    /// <summary>The concurrent-stream slots the call holds (released by the pipeline when it ends).</summary>
    public CallLease Lease { get; set; } = CallLease.None;

    /// <summary>Whether the answer is written in the Responses API format, which takes an upstream's Responses events as they are.</summary>
    public bool AcceptsResponsesEvents { get; set; }

    /// <summary>Whether the answer is written as Anthropic Messages events, which take an Anthropic upstream's content blocks as they are.</summary>
    public bool AcceptsAnthropicBlocks { get; set; }

    /// <summary>The rate-limit state admission saw (HTTP turns it into <c>x-ratelimit-*</c> headers).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> RateLimitFacts { get; set; } = [];

    /// <summary>The gateway span of this call, when traces are collected.</summary>
    public Activity? Activity { get; set; }

    /// <summary>Whether the call's end was reported (metrics, access log, span): exactly once per call.</summary>
    public bool TelemetryEnded { get; set; }
}

/// <summary>Who a call is billed to.</summary>
/// <param name="TeamId">The team.</param>
/// <param name="KeyId">The virtual key, if one was used.</param>
/// <param name="JobId">The job, for job calls.</param>
internal sealed record UsageOwner(string TeamId, string? KeyId, string? JobId);
