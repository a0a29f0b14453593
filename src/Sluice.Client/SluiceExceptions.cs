namespace Sluice.Client;

/// <summary>What the server said about a failure (all parts optional: not every server says everything).</summary>
/// <param name="StatusCode">The HTTP status, when the server answered with one.</param>
/// <param name="Message">The server's own message (Sluice's messages say what to do next).</param>
/// <param name="Type">The error class, e.g. <c>invalid_request_error</c>.</param>
/// <param name="Code">A machine-readable code, e.g. <c>model_not_found</c> or <c>insufficient_credits</c>.</param>
/// <param name="Param">The request parameter at fault, e.g. <c>temperature</c>.</param>
/// <param name="RequestId">The server's request id (<c>x-request-id</c>); quote it when reporting a problem.</param>
public sealed record SluiceErrorDetails(
    int? StatusCode = null,
    string? Message = null,
    string? Type = null,
    string? Code = null,
    string? Param = null,
    string? RequestId = null);

/// <summary>
/// A Sluice client call failed. Catch a subclass for one class of failure, or this type for all of them.
/// <see cref="Exception.Message"/> says what happened and what to do next.
/// </summary>
public abstract class SluiceException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What happened and what to do next.</param>
    /// <param name="details">What the server said.</param>
    /// <param name="inner">The underlying failure.</param>
    protected SluiceException(string message, SluiceErrorDetails? details, Exception? inner)
        : base(message, inner) => Details = details ?? new SluiceErrorDetails();

    /// <summary>What the server said (empty when it said nothing, e.g. a refused connection).</summary>
    public SluiceErrorDetails Details { get; }

    /// <summary>The HTTP status, when the server answered with an error status.</summary>
    public int? StatusCode => Details.StatusCode;

    /// <summary>The server's own message.</summary>
    public string? ServerMessage => Details.Message;

    /// <summary>The server's error code, e.g. <c>model_not_found</c>.</summary>
    public string? ErrorCode => Details.Code;

    /// <summary>The request parameter the server blamed.</summary>
    public string? Param => Details.Param;

    /// <summary>The server's request id (<c>x-request-id</c>).</summary>
    public string? RequestId => Details.RequestId;
}

/// <summary>The server rejected the request as malformed (HTTP 400, 422 and other 4xx not covered by a more specific type).</summary>
public sealed class SluiceBadRequestException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner);

/// <summary>The API key is missing, unknown, revoked or expired (HTTP 401).</summary>
public sealed class SluiceAuthenticationException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner);

/// <summary>The key may not do this, e.g. use this model (HTTP 403). <see cref="SluiceInsufficientCreditsException"/> is the credits case.</summary>
public class SluicePermissionException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner);

/// <summary>The team has no credits left (HTTP 403 <c>insufficient_credits</c>); add credits, then retry.</summary>
public sealed class SluiceInsufficientCreditsException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluicePermissionException(message, details, inner)
{
    /// <summary>The error code Sluice uses for this case.</summary>
    public const string Code = "insufficient_credits";
}

/// <summary>The model, job, team or stream does not exist (HTTP 404).</summary>
public sealed class SluiceNotFoundException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner);

/// <summary>Too many requests (HTTP 429); <see cref="RetryAfter"/> says how long to wait when the server said.</summary>
public sealed class SluiceRateLimitException(string message, SluiceErrorDetails? details = null, TimeSpan? retryAfter = null, Exception? inner = null)
    : SluiceException(message, details, inner)
{
    /// <summary>The server's <c>Retry-After</c>, when it sent one.</summary>
    public TimeSpan? RetryAfter { get; } = retryAfter;
}

/// <summary>
/// The server or its upstream failed before the answer started (HTTP 5xx), or answered with something that is not
/// an event stream. <see cref="RetryAfter"/> is set when the server sent <c>Retry-After</c> (e.g. 503).
/// </summary>
public sealed class SluiceServerException(string message, SluiceErrorDetails? details = null, TimeSpan? retryAfter = null, Exception? inner = null)
    : SluiceException(message, details, inner)
{
    /// <summary>The server's <c>Retry-After</c>, when it sent one.</summary>
    public TimeSpan? RetryAfter { get; } = retryAfter;
}

/// <summary>
/// The answer started but did not finish: the server sent an error event, or the connection broke and could not be
/// resumed. The text received so far is incomplete; retry the request.
/// </summary>
public sealed class SluiceStreamException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner);

/// <summary>The server could not be reached: connection refused, unknown host, TLS failure, network down.</summary>
public sealed class SluiceConnectionException(string message, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner);

/// <summary>Which time limit was hit.</summary>
public enum SluiceTimeoutKind
{
    /// <summary><see cref="SluiceClientOptions.ConnectTimeout"/>: the connection could not be opened in time.</summary>
    Connect,

    /// <summary><see cref="SluiceClientOptions.FirstTokenTimeout"/>: no token arrived in time.</summary>
    FirstToken,

    /// <summary><see cref="SluiceClientOptions.IdleTimeout"/>: the stream went silent after it started.</summary>
    Idle,

    /// <summary><see cref="SluiceClientOptions.TotalTimeout"/> (or <see cref="SluiceClientOptions.RequestTimeout"/> for non-streaming calls): the whole call took too long.</summary>
    Total,

    /// <summary>The server itself gave up waiting (HTTP 408).</summary>
    Server,
}

/// <summary>A time limit was hit; <see cref="Kind"/> says which.</summary>
public sealed class SluiceTimeoutException(string message, SluiceTimeoutKind kind, SluiceErrorDetails? details = null, Exception? inner = null)
    : SluiceException(message, details, inner)
{
    /// <summary>Which limit.</summary>
    public SluiceTimeoutKind Kind { get; } = kind;
}
