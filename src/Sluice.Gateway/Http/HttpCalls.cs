using System.Buffers;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Providers.Timing;

namespace Sluice.Gateway.Http;

/// <summary>How an HTTP endpoint answers: its stream format, its completion body (null: always streamed), resumable or not.</summary>
/// <param name="StreamFormat">The format of a streamed answer, made per call (ids, model name).</param>
/// <param name="Completion">The body of a non-streamed answer; null when the endpoint always streams.</param>
/// <param name="Resumable">Whether streamed answers may be kept for resume and replay (<c>GET /v1/streams/{id}</c>).</param>
/// <param name="OnAnswer">Called once the answer is about to start (headers still open), e.g. to name the session.</param>
internal sealed record HttpAnswer(
    Func<ChatCall, IStreamFormat> StreamFormat, CompletionWriter? Completion, bool Resumable = false, Action<HttpContext, ChatCall>? OnAnswer = null);

/// <summary>
/// The HTTP transport's first stage for every chat endpoint: a <see cref="ChatCall"/> with the request id, caller and
/// dialect, the body read (bounded), then the <see cref="CallPipeline"/> with an HTTP responder — so an endpoint
/// handler only says which dialect it speaks and how it answers.
/// </summary>
internal sealed class HttpCalls(CallPipeline pipeline, StreamRegistry streams, GatewayOptions options, CallTelemetry telemetry, ILoggerFactory loggers)
{
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);
    private readonly HttpStreamLimits _limits = new(
        TimeSpan.FromSeconds(options.Streaming.SlowClientTimeoutSeconds), loggers.CreateLogger("Sluice.Streaming"), telemetry);

    public CallPipeline Pipeline => pipeline;

    private StreamRegistry Streams => streams;

    private TimeSpan PingInterval => _pingInterval;

    private HttpStreamLimits Limits => _limits;

    // Keep-alive deadlines of every stream on one timer (the process-wide one on the system clock).
    private DeadlineSweep Sweep { get; } = DeadlineSweep.For(pipeline.Time);

    /// <summary>Runs one chat call from this HTTP request.</summary>
    public async Task RunAsync(HttpContext context, CallDialect dialect, HttpAnswer answer, CallStage? stage = null)
    {
        if (await BeginAsync(context, dialect) is { } call)
        {
            await RunAsync(context, call, answer, stage);
        }
    }

    /// <summary>
    /// The first stage alone: the call with its body read, or null when the request was answered already (body too
    /// large or unreadable, in the dialect's shape) or the client left. For endpoints that look at the request first.
    /// </summary>
    public async ValueTask<ChatCall?> BeginAsync(HttpContext context, CallDialect dialect)
    {
        var call = pipeline.Begin(context.GetRequestId(), context.GetCaller(), dialect, context.RequestAborted);
        try
        {
            call.Body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            return call;
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, dialect.Errors);
            return null;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>Runs a begun call through the pipeline, answering over this HTTP response.</summary>
    public Task RunAsync(HttpContext context, ChatCall call, HttpAnswer answer, CallStage? stage = null) =>
        pipeline.RunAsync(call, new Responder(this, context, answer), stage);

    /// <summary>
    /// Starts keeping a stream for resume when resume is on (config <c>Streaming:Resumable</c>, and the request did not
    /// opt out with <c>x-sluice-resume: off</c>); sets the <c>x-sluice-stream-id</c> header. Null: a plain stream.
    /// Generation outlives a dropped client (for <c>Streaming:ResumeGraceSeconds</c>) only when the request asked with
    /// <c>x-sluice-resume: on</c> (or <c>Streaming:ResumeGraceForAllRequests</c>): otherwise a client that leaves stops
    /// the model at once, so nothing generates and bills for nobody.
    /// </summary>
    private ResumableStream? BeginResumable(HttpContext context, IStreamFormat format, string ownerId)
    {
        var header = context.Request.Headers[StreamRegistry.ResumeHeader];
        if (!streams.Options.Resumable || string.Equals(header, "off", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var keepsGenerating = streams.Options.ResumeGraceForAllRequests || string.Equals(header, "on", StringComparison.OrdinalIgnoreCase);
        var stream = streams.Create(format, ownerId, keepsGenerating);
        context.Response.Headers[HttpStreamSink.StreamIdHeader] = stream.Id;
        return stream;
    }

    private sealed class Responder(HttpCalls calls, HttpContext context, HttpAnswer answer) : ICallResponder
    {
        public void OnAdmitted(ChatCall call)
        {
            if (context.Response.HasStarted)
            {
                return;
            }

            // By index: a foreach over the interface boxes the list's enumerator on every call.
            var facts = call.RateLimitFacts;
            for (var i = 0; i < facts.Count; i++)
            {
                context.Response.Headers[facts[i].Key] = facts[i].Value;
            }
        }

        public ValueTask RefuseAsync(ChatCall call, ChatException error) =>
            new(ErrorResponses.WriteAsync(context, error, call.Dialect.Errors));

        public IAnswerSink CreateSink(ChatCall call)
        {
            answer.OnAnswer?.Invoke(context, call);
            if (call.Request.Stream || answer.Completion is null)
            {
                var format = answer.StreamFormat(call);
                var resumable = answer.Resumable ? calls.BeginResumable(context, format, call.Caller.OwnerId) : null;
                return new HttpStreamSink(context, format, resumable, calls.Streams, calls.PingInterval, calls.Sweep, calls.Limits);
            }

            return new HttpBodySink(context, call, answer.Completion, call.Dialect.Errors);
        }
    }
}
