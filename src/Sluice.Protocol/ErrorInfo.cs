namespace Sluice.Protocol;

/// <summary>An error in the OpenAI error-body shape: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
/// <param name="Message">A sentence for people that says what went wrong and what to do next.</param>
/// <param name="Type">The error class, e.g. <c>invalid_request_error</c>.</param>
/// <param name="Param">The request parameter at fault, if any (e.g. <c>messages[1].role</c>).</param>
/// <param name="Code">A machine-readable code, e.g. <c>model_not_found</c>.</param>
public sealed record ErrorInfo(string Message, string Type, string? Param = null, string? Code = null);

/// <summary>Error types used in <see cref="ErrorInfo.Type"/>.</summary>
public static class ErrorTypes
{
    /// <summary>The request is malformed or names something that does not exist.</summary>
    public const string InvalidRequest = "invalid_request_error";

    /// <summary>Missing or bad credentials.</summary>
    public const string Authentication = "authentication_error";

    /// <summary>The caller may not do this.</summary>
    public const string Permission = "permission_error";

    /// <summary>Too many requests.</summary>
    public const string RateLimit = "rate_limit_error";

    /// <summary>The server or an upstream failed.</summary>
    public const string Server = "server_error";

    /// <summary>An upstream is unavailable or overloaded.</summary>
    public const string Upstream = "upstream_error";

    /// <summary>A time limit was hit.</summary>
    public const string Timeout = "timeout_error";
}

/// <summary>
/// A failure with an HTTP status and an OpenAI-style error body. Thrown by parsers and backends before
/// the first byte of a response; after that the gateway turns it into an error frame.
/// </summary>
public sealed class ChatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ChatException(int statusCode, ErrorInfo error, TimeSpan? retryAfter = null, Exception? inner = null)
        : base(error.Message, inner)
    {
        StatusCode = statusCode;
        Error = error;
        RetryAfter = retryAfter;
    }

    /// <summary>The HTTP status to answer with.</summary>
    public int StatusCode { get; }

    /// <summary>The error body.</summary>
    public ErrorInfo Error { get; }

    /// <summary>When set, the client may retry after this delay (sent as <c>Retry-After</c>).</summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>
    /// What the operator needs to fix it (a configuration key, an upstream address, the upstream's own words): logged by
    /// the gateway, never sent to the client.
    /// </summary>
    public string? OperatorNote { get; init; }

    /// <summary>A 400 <c>invalid_request_error</c> naming <paramref name="param"/>.</summary>
    public static ChatException BadRequest(string message, string? param, string code = "invalid_value") =>
        new(400, new ErrorInfo(message, ErrorTypes.InvalidRequest, param, code));
}
