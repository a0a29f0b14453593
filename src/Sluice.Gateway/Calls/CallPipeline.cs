using Sluice.Gateway.Cluster;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Calls;

/// <summary>
/// The one pipeline every chat call goes through — <c>/v1/chat/completions</c>, Anthropic <c>/v1/messages</c>, the
/// Ollama API, the portal and session streams, job calls, WebSocket and MQTT requests alike — so that each step exists
/// once: parse → prepare → resolve → admit → commit → relay.
/// </summary>
/// <remarks>
/// <para>Shaped like YARP's and Microsoft.Extensions.AI's pipelines: a fixed first stage (the transport creates the
/// <see cref="ChatCall"/>: request id, clock, caller, dialect), a customisable middle (a <see cref="CallStage"/>:
/// sessions, jobs), and a fixed last stage (admission, the <see cref="StreamRelay"/> into the transport's
/// <see cref="IAnswerSink"/>, usage). The transport only says how to answer (<see cref="ICallResponder"/>).</para>
/// <para>The steps of <see cref="RunAsync"/>, marked <c>// :: Step N</c>:</para>
/// <list type="number">
/// <item>Refuse when the instance is draining (503, retryable); parse the body in the call's dialect (unless the transport
/// already did), keeping the model name as sent.</item>
/// <item>Prepare: the stage reads what it needs (a session's history, a job) and may change the request.</item>
/// <item>Resolve the model with the one store-aware resolver (dialect spellings normalised); the request now names
/// the catalog's model. A model that can tell it would refuse the request at once (<see cref="IChatRequestCheck"/>:
/// answer length, context) refuses it here, before anything is admitted or stored.</item>
/// <item>Admit against the billing team (the key's, or the job's): access, credits, rate and concurrency limits. The
/// limit facts go to the responder either way (HTTP headers).</item>
/// <item>Commit: the stage writes what must exist before the model runs.</item>
/// <item>Relay the answer into the responder's sink; the lease is released when it ends.</item>
/// </list>
/// Any refusal up to step 5 is answered through the responder in the dialect's shape, before anything is sent.
/// </remarks>
internal sealed class CallPipeline(ModelResolver resolver, CallAdmission admission, StreamRelay relay, CallTelemetry telemetry, GatewayOptions options, TimeProvider time, GatewayDrain drain)
{
    /// <summary>The limits parsers apply to every dialect.</summary>
    public ChatRequestLimits Limits { get; } = new()
    {
        MaxPromptChars = options.Limits.MaxPromptChars,
        MaxAttachments = options.Limits.MaxAttachments,
        MaxAttachmentBytes = options.Limits.MaxAttachmentBytes,
    };

    /// <summary>The gateway's clock (call start times, keep-alive, usage timings).</summary>
    public TimeProvider Time => time;

    /// <summary>The fixed first stage: a new call, stamped now.</summary>
    public ChatCall Begin(string requestId, Caller caller, CallDialect dialect, CancellationToken aborted) =>
        new(requestId, time.GetTimestamp(), caller, dialect, aborted);

    /// <summary>Runs <paramref name="call"/> to its end (see the remarks); never throws for the call's own failures.</summary>
    public async Task RunAsync(ChatCall call, ICallResponder responder, CallStage? stage = null)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(responder);
        CallTelemetry.Begin(call);
        try
        {
            await RunStepsAsync(call, responder, stage);
        }
        finally
        {
            // Every way out reports the call once (a refusal, a client gone early, the relay's end — or a bug).
            telemetry.EnsureEnded(call);
        }
    }

    private async Task RunStepsAsync(ChatCall call, ICallResponder responder, CallStage? stage)
    {
        var cancellationToken = call.Aborted;
        try
        {
            // :: Step 1
            if (drain.IsDraining)
            {
                // A draining instance starts nothing new: the client retries and the load balancer picks another.
                throw GatewayDrain.Refusal();
            }

            if (!call.IsParsed)
            {
                call.Request = call.Dialect.Parse(call.Body, Limits);
            }

            call.RequestedModel = call.Request.Model;
            call.BillingTeamId ??= call.Caller.TeamId;

            // :: Step 2
            if (stage is not null)
            {
                await stage.PrepareAsync(call, cancellationToken);
            }

            // :: Step 3
            call.Model = await resolver.ResolveAsync(call.Request.Model, call.Dialect, cancellationToken);
            if (!string.Equals(call.Request.Model, call.Model.Name, StringComparison.Ordinal))
            {
                call.Request = call.Request with { Model = call.Model.Name };
            }

            call.Backend ??= call.Model.Backend;

            // A request the model would refuse at once is refused now, before it is admitted or a stage stores anything.
            if (resolver.FirstSource(call.Model) is IChatRequestCheck check && check.Check(call.Request) is { } refused)
            {
                throw refused;
            }

            // :: Step 4
            var refusal = await admission.AdmitAsync(call, cancellationToken);
            responder.OnAdmitted(call);
            if (refusal is not null)
            {
                throw refusal;
            }

            // :: Step 5
            if (stage is not null)
            {
                await stage.CommitAsync(call, cancellationToken);
            }
        }
        catch (Exception ex) when (Refusal(ex, cancellationToken) is { } refusal)
        {
            await call.Lease.DisposeAsync();
            telemetry.Refused(call, refusal);
            await responder.RefuseAsync(call, refusal);
            return;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client left before the model was called: nothing ran, nothing is billed.
            await call.Lease.DisposeAsync();
            telemetry.Left(call);
            return;
        }

        // :: Step 6
        await using (call.Lease)
        {
            var sink = responder.CreateSink(call);
            await relay.RunAsync(call, call.Backend, sink, stage, options.Streaming.MaxPendingBytes);
        }
    }

    /// <summary>The error to answer for a failure before the model runs; null for what is not a refusal (cancellation).</summary>
    internal static ChatException? Refusal(Exception exception, CancellationToken aborted) => exception switch
    {
        ChatException chat => chat,
        StoreNotFoundException missing => SluiceErrors.NotFound(missing.Kind, missing.Id),
        OperationCanceledException when aborted.IsCancellationRequested => null,
        _ when SluiceErrors.IsStoreFailure(exception) => SluiceErrors.StoreUnavailable(exception),
        _ => null,
    };
}

/// <summary>How a transport answers one call: refusals before the answer, the limit facts, and the answer's sink.</summary>
internal interface ICallResponder
{
    /// <summary>Admission has decided; <see cref="ChatCall.RateLimitFacts"/> holds what it saw (HTTP sends them as headers).</summary>
    void OnAdmitted(ChatCall call);

    /// <summary>Answers a refusal before anything was sent, in the call's dialect (HTTP: status and body).</summary>
    ValueTask RefuseAsync(ChatCall call, ChatException error);

    /// <summary>The sink the answer streams to (chosen now that the request and model are known).</summary>
    IAnswerSink CreateSink(ChatCall call);
}
