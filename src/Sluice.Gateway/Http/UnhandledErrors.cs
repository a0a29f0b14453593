using System.Diagnostics;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;

namespace Sluice.Gateway.Http;

/// <summary>
/// The net under every endpoint: an exception no handler turned into an answer becomes a JSON error in the endpoint's
/// dialect (<see cref="EndpointPolicy.Errors"/>) and one log line — never an empty 500 and a stack trace per request.
/// </summary>
/// <remarks>
/// Bad input is refused where it is read (parsers, <see cref="ApiJson"/>, <see cref="RequestBody"/>); what reaches this
/// net is either a malformed request Kestrel itself rejected while the application read it (its 4xx is kept) or a
/// Sluice bug (a 500 <c>internal_error</c> whose message names the request id to report). A response already started
/// cannot change its status: its connection is aborted, so the client sees a cut rather than a clean-looking end.
/// </remarks>
internal static partial class UnhandledErrors
{
    /// <summary>Middleware: runs the rest of the pipeline and answers for whatever escapes it.</summary>
    public static async Task HandleAsync(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context);
        }
        catch (Exception ex) when (context.RequestAborted.IsCancellationRequested && ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // The client left: nobody to answer.
        }
        catch (Exception ex)
        {
            await AnswerAsync(context, ex);
        }
    }

    private static async Task AnswerAsync(HttpContext context, Exception exception)
    {
        var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Errors");
        var requestId = TryRequestId(context);
        var (status, error) = Classify(exception, requestId);
        if (status >= 500)
        {
            LogUnhandled(logger, exception.GetType().Name, Site(exception), context.Request.Method, LogText.Clean(context.Request.Path.Value ?? "/", 2_000)!, requestId, LogText.Clean(exception.Message, 2_000)!);
        }
        else
        {
            LogRejected(logger, status, context.Request.Method, LogText.Clean(context.Request.Path.Value ?? "/", 2_000)!, requestId, LogText.Clean(exception.Message, 2_000)!);
        }

        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return;
        }

        response.Clear();
        response.Headers[HttpCallContext.RequestIdHeader] = requestId;
        try
        {
            await ErrorResponses.WriteAsync(context, status, error, dialect: DialectOf(context));
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionAbortedException)
        {
            // The client left while the error was written.
        }
    }

    /// <summary>The status and body for an exception no handler answered.</summary>
    internal static (int Status, ErrorInfo Error) Classify(Exception exception, string requestId) => exception switch
    {
        ChatException chat => (chat.StatusCode, chat.Error),
        BadHttpRequestException bad => (
            bad.StatusCode is >= 400 and < 500 ? bad.StatusCode : StatusCodes.Status400BadRequest,
            new ErrorInfo(
                $"The request could not be read: {bad.Message.TrimEnd('.')}. Send a well-formed HTTP request (valid headers, Content-Length or chunked encoding).",
                ErrorTypes.InvalidRequest, null, "invalid_request")),
        _ => (
            StatusCodes.Status500InternalServerError,
            new ErrorInfo(
                $"The gateway failed unexpectedly ({exception.GetType().Name}) while handling this request. Retry; if it keeps failing, report request id {requestId} to the operator.",
                ErrorTypes.Server, null, "internal_error")),
    };

    /// <summary>The dialect the endpoint declared, or for an unrouted path the one its neighbours speak (as the JSON 404).</summary>
    internal static ErrorDialect DialectOf(HttpContext context)
    {
        if (context.GetEndpoint()?.Metadata.GetMetadata<EndpointPolicy>() is { } policy)
        {
            return policy.Errors;
        }

        return DialectOfPath(context.Request.Path);
    }

    /// <summary>
    /// The dialect of the clients that call near <paramref name="path"/>: Ollama's under <c>/api</c> — but Sluice's own
    /// API there (teams, keys, credits, sessions, jobs…) answers in OpenAI's shape like its endpoints —, Anthropic's under
    /// <c>/v1/messages</c>.
    /// </summary>
    internal static ErrorDialect DialectOfPath(PathString path) =>
        path.StartsWithSegments("/api", out var rest) ? (IsSluiceApi(rest) ? ErrorDialect.OpenAI : ErrorDialect.Ollama)
        : path.StartsWithSegments("/v1/messages") ? ErrorDialect.Anthropic
        : ErrorDialect.OpenAI;

    private static readonly string[] SluiceApiSegments = ["/organizations", "/teams", "/credits", "/model-groups", "/sessions", "/jobs", "/llm"];

    private static bool IsSluiceApi(PathString rest)
    {
        foreach (var segment in SluiceApiSegments)
        {
            if (rest.StartsWithSegments(segment))
            {
                return true;
            }
        }

        return false;
    }

    private static string TryRequestId(HttpContext context)
    {
        try
        {
            return context.GetRequestId();
        }
        catch (InvalidOperationException)
        {
            return "(none)";
        }
    }

    // Where it was thrown, e.g. "SessionStage.PrepareAsync": enough to find the bug without a stack trace per request.
    private static string Site(Exception exception)
    {
        var method = new StackTrace(exception, fNeedFileInfo: false).GetFrame(0)?.GetMethod();
        return method is null ? "?" : $"{method.DeclaringType?.Name ?? "?"}.{method.Name}";
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled {ExceptionType} at {Site} on {Method} {Path} (request {RequestId}), answered 500: {Reason}")]
    private static partial void LogUnhandled(ILogger logger, string exceptionType, string site, string method, string path, string requestId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Refused a malformed request ({Status}) on {Method} {Path} (request {RequestId}): {Reason}")]
    private static partial void LogRejected(ILogger logger, int status, string method, string path, string requestId, string reason);
}
