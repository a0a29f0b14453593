using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// Moves one backend stream to one HTTP response, for any <see cref="IStreamFormat"/> (SSE or NDJSON).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Headers are sent with the first event, so failures before it still get a real HTTP status.</item>
/// <item>Events the backend has ready are written together; the response is flushed whenever the backend
/// has nothing more ready, so no event ever waits in a buffer while the relay waits for the model.</item>
/// <item>The format's opening frame (if any) follows the headers, with the usage known so far.</item>
/// <item>While the backend is silent, the format's keep-alive frame (<c>: ping</c> for OpenAI) goes out every
/// ping interval — always between whole frames (see <see cref="KeepAlive"/>).</item>
/// <item>A failure after the first byte becomes one error frame and the stream ends without its success marker.</item>
/// <item>The client's disconnect (RequestAborted) cancels the backend; usage is reported in every case.</item>
/// </list>
/// </remarks>
internal sealed partial class StreamRelay(UsageReporter usage, ILogger<StreamRelay> logger)
{
    public async Task RelayAsync(
        HttpContext context,
        IChatBackend backend,
        ChatRequest request,
        IStreamFormat format,
        RelaySettings settings)
    {
        var response = context.Response;
        var output = response.BodyWriter;
        var aborted = context.RequestAborted;
        var meter = new StreamMeter(settings.StartTimestamp, request);
        var sequence = 0L;
        var firstTokenFlushed = false;
        var enumerator = backend.StreamAsync(request, aborted).GetAsyncEnumerator(aborted);

        // Headers, then the format's opening frame: sent with the first event, ping or end, whichever comes first.
        // Called only by the holder of the keep-alive gate, so the relay and a ping never race on it.
        void Start()
        {
            StartStream(context, format.ContentType);
            sequence += format.WriteStart(output, sequence + 1, meter.Usage);
        }

        var keepAlive = new KeepAlive(output, settings.PingInterval, () => format.WritePing(output), Start, aborted);
        try
        {
            while (true)
            {
                var moveNext = enumerator.MoveNextAsync();
                bool hasEvent;
                if (moveNext.IsCompleted)
                {
                    hasEvent = await moveNext;
                }
                else
                {
                    // Nothing more is ready: everything written so far goes out now, then pings may fill the silence.
                    if (keepAlive.Started && output.CanGetUnflushedBytes && output.UnflushedBytes > 0)
                    {
                        await output.FlushAsync(aborted);
                    }

                    keepAlive.Release();
                    try
                    {
                        hasEvent = await moveNext;
                    }
                    finally
                    {
                        await keepAlive.AcquireAsync();
                    }
                }

                if (!hasEvent)
                {
                    break;
                }

                var streamEvent = enumerator.Current;
                if (streamEvent is ErrorEvent error)
                {
                    throw new ChatException(502, error.Error);
                }

                meter.Observe(streamEvent);
                if (streamEvent is UsageEvent)
                {
                    continue;
                }

                keepAlive.EnsureStarted();
                if (format.WriteEvent(output, sequence + 1, streamEvent))
                {
                    sequence++;

                    // The first event and the first token go out at once, whatever else is ready: time to first token
                    // is what users feel. Later events that arrived together are written together.
                    if (sequence == 1 || (!firstTokenFlushed && meter.HasFirstToken)
                        || (output.CanGetUnflushedBytes && output.UnflushedBytes >= settings.MaxPendingBytes))
                    {
                        firstTokenFlushed |= meter.HasFirstToken;
                        await output.FlushAsync(aborted);
                    }
                }
            }

            await keepAlive.StopAsync();
            await BeforeEndAsync(settings, UsageStatus.Completed, meter.Usage);
            keepAlive.EnsureStarted();
            sequence += format.WriteEnd(output, sequence + 1, meter.Usage);
            await output.FlushAsync(aborted);
            meter.Status = UsageStatus.Completed;
        }
        catch (Exception ex) when (aborted.IsCancellationRequested && ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            meter.Status = UsageStatus.Abandoned;
        }
        catch (ChatException ex)
        {
            meter.Fail(ex.Error.Code ?? ex.Error.Type);
            await keepAlive.StopAsync();
            await BeforeEndAsync(settings, UsageStatus.Failed, meter.Usage);
            if (!keepAlive.Started)
            {
                await ErrorResponses.WriteAsync(context, ex, format.Errors);
            }
            else
            {
                await WriteErrorFrameAsync(output, format, ++sequence, ex.Error, aborted);
            }
        }
#pragma warning disable CA1031 // Any backend failure must reach the client as an error, never as a silent cut.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            meter.Fail("internal_error");
            LogBackendFailed(logger, ex, settings.RequestId, request.Model);
            await BeforeEndAsync(settings, UsageStatus.Failed, meter.Usage);
            var error = new ErrorInfo(
                $"The model backend failed unexpectedly ({ex.GetType().Name}). Retry the request; if it keeps failing, report request id {settings.RequestId}.",
                ErrorTypes.Server, null, "backend_error");
            await keepAlive.StopAsync();
            if (!keepAlive.Started)
            {
                await ErrorResponses.WriteAsync(context, StatusCodes.Status502BadGateway, error, dialect: format.Errors);
            }
            else
            {
                await WriteErrorFrameAsync(output, format, ++sequence, error, aborted);
            }
        }
        finally
        {
            // No ping may touch the response once the handler returns.
            await keepAlive.StopAsync();
            await DisposeQuietlyAsync(enumerator);

            if (aborted.IsCancellationRequested && meter.Status == UsageStatus.Completed && !meter.Finished)
            {
                meter.Status = UsageStatus.Abandoned;
            }

            usage.Report(meter.ToRecord(settings, request, stream: true));
        }
    }

    /// <summary>Runs a backend stream to its end and returns the assembled answer (non-streaming requests).</summary>
    public async Task<(ChatCompletionAccumulator Answer, ChatUsage Usage)> CollectAsync(
        HttpContext context,
        IChatBackend backend,
        ChatRequest request,
        RelaySettings settings)
    {
        var meter = new StreamMeter(settings.StartTimestamp, request);
        var answer = new ChatCompletionAccumulator();
        try
        {
            await foreach (var streamEvent in backend.StreamAsync(request, context.RequestAborted).WithCancellation(context.RequestAborted))
            {
                if (streamEvent is ErrorEvent error)
                {
                    throw new ChatException(502, error.Error);
                }

                meter.Observe(streamEvent);
                answer.Add(streamEvent);
            }

            meter.Status = UsageStatus.Completed;
            return (answer, meter.Usage);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            meter.Status = UsageStatus.Abandoned;
            throw;
        }
        catch (ChatException ex)
        {
            meter.Fail(ex.Error.Code ?? ex.Error.Type);
            throw;
        }
        catch (Exception ex)
        {
            meter.Fail("internal_error");
            LogBackendFailed(logger, ex, settings.RequestId, request.Model);
            throw new ChatException(StatusCodes.Status502BadGateway, new ErrorInfo(
                $"The model backend failed unexpectedly ({ex.GetType().Name}). Retry the request; if it keeps failing, report request id {settings.RequestId}.",
                ErrorTypes.Server, null, "backend_error"), inner: ex);
        }
        finally
        {
            usage.Report(meter.ToRecord(settings, request, stream: false));
        }
    }

    private async ValueTask BeforeEndAsync(RelaySettings settings, UsageStatus status, ChatUsage usage)
    {
        if (settings.BeforeEnd is not { } beforeEnd)
        {
            return;
        }

        try
        {
            await beforeEnd(status, usage);
        }
#pragma warning disable CA1031 // The client must still get its terminal frame; the failure is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogHookFailed(logger, ex, settings.RequestId);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Recording the outcome of request {RequestId} failed")]
    private static partial void LogHookFailed(ILogger logger, Exception ex, string requestId);

    private static void StartStream(HttpContext context, string contentType)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = contentType;
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    private static async Task WriteErrorFrameAsync(PipeWriter output, IStreamFormat format, long sequence, ErrorInfo error, CancellationToken aborted)
    {
        try
        {
            format.WriteError(output, sequence, error);
            await output.FlushAsync(aborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // The client is gone; nobody is left to tell.
        }
    }

    private static async ValueTask DisposeQuietlyAsync(IAsyncEnumerator<ChatStreamEvent> enumerator)
    {
        try
        {
            await enumerator.DisposeAsync();
        }
#pragma warning disable CA1031 // Disposal failures after the response is over must not mask the outcome.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Backend for {Model} failed on request {RequestId}")]
    private static partial void LogBackendFailed(ILogger logger, Exception ex, string requestId, string model);

    /// <summary>Counts what a stream delivered, for usage when the backend reports none.</summary>
    private sealed class StreamMeter(long startTimestamp, ChatRequest request)
    {
        private ChatUsage? _reported;
        private int _estimatedCompletion;
        private long _firstTokenTimestamp;
        private string? _errorCode;

        public UsageStatus Status { get; set; } = UsageStatus.Completed;

        public bool Finished { get; private set; }

        public bool HasFirstToken => _firstTokenTimestamp != 0;

        public ChatUsage Usage => _reported ?? new ChatUsage(TokenCounter.CountPrompt(request.Messages), _estimatedCompletion);

        public void Observe(ChatStreamEvent streamEvent)
        {
            switch (streamEvent)
            {
                case OpenAIChunkEvent { IsDecoded: false } plain:
                    // A plain passed-through delta: counted, not parsed (the upstream's usage arrives at the end).
                    MarkFirstToken();
                    _estimatedCompletion += plain.EstimatedTokens;
                    break;
                case OpenAIChunkEvent chunk:
                    foreach (var inner in chunk.Events)
                    {
                        Observe(inner);
                    }

                    break;
                case TextDeltaEvent text:
                    MarkFirstToken();
                    _estimatedCompletion += TokenCounter.Count(text.Text);
                    break;
                case RefusalDeltaEvent refusal:
                    MarkFirstToken();
                    _estimatedCompletion += TokenCounter.Count(refusal.Text);
                    break;
                case ToolCallDeltaEvent tool:
                    MarkFirstToken();
                    _estimatedCompletion += TokenCounter.Count(tool.Name) + TokenCounter.Count(tool.ArgumentsFragment);
                    break;
                case FinishEvent:
                    Finished = true;
                    break;
                case UsageEvent reported:
                    _reported = reported.Usage;
                    break;
            }
        }

        public void Fail(string code)
        {
            Status = UsageStatus.Failed;
            _errorCode = code;
        }

        public UsageRecord ToRecord(RelaySettings settings, ChatRequest chatRequest, bool stream)
        {
            var now = Stopwatch.GetTimestamp();
            var usage = Usage;
            return new UsageRecord
            {
                RequestId = settings.RequestId,
                TeamId = settings.Owner?.TeamId,
                KeyId = settings.Owner?.KeyId,
                JobId = settings.Owner?.JobId,
                Model = chatRequest.Model,
                Stream = stream,
                PromptTokens = usage.PromptTokens,
                CompletionTokens = usage.CompletionTokens,
                Estimated = _reported is null,
                Status = Status,
                TimeToFirstToken = _firstTokenTimestamp == 0 ? null : Stopwatch.GetElapsedTime(startTimestamp, _firstTokenTimestamp),
                Duration = Stopwatch.GetElapsedTime(startTimestamp, now),
                ErrorCode = _errorCode,
            };
        }

        private void MarkFirstToken()
        {
            if (_firstTokenTimestamp == 0)
            {
                _firstTokenTimestamp = Stopwatch.GetTimestamp();
            }
        }
    }
}

/// <summary>Per-request relay settings.</summary>
/// <param name="RequestId">The request id.</param>
/// <param name="StartTimestamp">When the request arrived (<see cref="Stopwatch.GetTimestamp"/>).</param>
/// <param name="PingInterval">Silence before a ping comment.</param>
/// <param name="MaxPendingBytes">Flush early above this many unflushed bytes.</param>
/// <param name="Owner">Who is billed for the call (team, key, job); none in open mode.</param>
/// <param name="BeforeEnd">
/// Awaited once the outcome is known and before the stream's terminal frame (<c>[DONE]</c> or the error frame,
/// or the error response when nothing was sent yet) — for state a client may read right after the stream, such
/// as a job's calls. Never called for abandoned streams. Delays only the terminal frame, never a token.
/// </param>
internal readonly record struct RelaySettings(
    string RequestId,
    long StartTimestamp,
    TimeSpan PingInterval,
    int MaxPendingBytes,
    UsageOwner? Owner = null,
    Func<UsageStatus, ChatUsage, ValueTask>? BeforeEnd = null);

/// <summary>Who a call is billed to.</summary>
/// <param name="TeamId">The team.</param>
/// <param name="KeyId">The virtual key, if one was used.</param>
/// <param name="JobId">The job, for job calls.</param>
internal sealed record UsageOwner(string TeamId, string? KeyId, string? JobId);
