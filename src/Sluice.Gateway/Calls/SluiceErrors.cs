using Sluice.Protocol;
using Sluice.Storage;

namespace Sluice.Gateway.Calls;

/// <summary>
/// The errors Sluice answers with, made in one place (OpenAI-shaped <see cref="ErrorInfo"/>; each dialect translates
/// the shape, see <c>ErrorDialect</c>). Every message says what to do next.
/// </summary>
internal static class SluiceErrors
{
    /// <summary>
    /// The 404 for a tenant object. The same text whether the object is missing or belongs to another team, so
    /// a response never tells a caller that someone else's object exists.
    /// </summary>
    public static ChatException NotFound(string kind, string id) => new(
        404,
        new ErrorInfo(
            $"No {kind} '{Echo(id)}' was found for this API key; check the id (objects of other teams are not visible).",
            ErrorTypes.InvalidRequest, null, kind.Replace(' ', '_') + "_not_found"));

    /// <summary>The error of an HTTP stream dropped because its client stopped reading (Streaming:SlowClientTimeoutSeconds).</summary>
    public static ChatException ClientTooSlow(double seconds) => new(
        408,
        new ErrorInfo(
            $"The client did not read the stream for {seconds.ToString(System.Globalization.CultureInfo.InvariantCulture)} s (Streaming:SlowClientTimeoutSeconds), so it was dropped. Read events as they arrive.",
            ErrorTypes.Timeout, null, "client_too_slow"));

    /// <summary>The 404 for a model name no catalog, alias or stored group knows.</summary>
    /// <param name="name">The name the client sent.</param>
    /// <param name="listing">Where the client can list the models, e.g. <c>GET /v1/models</c>.</param>
    public static ChatException ModelNotFound(string name, string listing = "GET /v1/models") => new(
        404,
        new ErrorInfo(
            $"The model '{Echo(name)}' does not exist. {listing} lists the models this gateway serves.",
            ErrorTypes.InvalidRequest, "model", "model_not_found"));

    /// <summary>The 502 for a backend that failed with an unexpected exception (the details are logged, not sent).</summary>
    public static ChatException BackendFailed(Exception exception, string requestId) => new(
        502,
        new ErrorInfo(
            $"The model backend failed unexpectedly ({exception.GetType().Name}). Retry the request; if it keeps failing, report request id {requestId}.",
            ErrorTypes.Server, null, "backend_error"),
        inner: exception);

    /// <summary>The terminal frame of a resumable stream whose generation was cancelled.</summary>
    public static ErrorInfo StreamCancelled { get; } = new(
        "The generation was cancelled: its client left and did not resume in time (or it was cancelled with DELETE /v1/streams/{id}). The answer is incomplete; send the request again.",
        ErrorTypes.Server, null, "stream_cancelled");

    /// <summary>A request cancelled by its client on a connection that stays open (WebSocket <c>cancel</c>).</summary>
    public static ErrorInfo Cancelled { get; } = new("Cancelled: the answer is incomplete.", ErrorTypes.InvalidRequest, null, "cancelled");

    /// <summary>A stream that was evicted or outgrew its buffer while a client read it.</summary>
    public static ErrorInfo StreamLost(bool overflowed) => new(
        overflowed
            ? "The stream outgrew the replay buffer while you were reading it, so the rest cannot be replayed. Send the request again."
            : "The stream expired while you were reading it. Send the request again.",
        ErrorTypes.Server, null, "stream_lost");

    public static ChatException MissingKey() => new(
        401,
        new ErrorInfo(
            "This gateway requires an API key. Send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with your team's virtual key " +
            "(sk-sluice-…) or the operator's master key.",
            ErrorTypes.Authentication, null, "missing_api_key"));

    /// <summary>One answer for unknown, revoked and expired keys: the response says nothing about which.</summary>
    public static ChatException InvalidKey() => new(
        401,
        new ErrorInfo(
            "The API key is not valid: it is unknown, revoked or expired. Check the key you send, or ask the operator for a new virtual key.",
            ErrorTypes.Authentication, null, "invalid_api_key"));

    public static ChatException OperatorOnly() => new(
        403,
        new ErrorInfo(
            "This endpoint is for the gateway operator: call it with the master key (SLUICE_MASTER_KEY), not a team's virtual key.",
            ErrorTypes.Permission, null, "master_key_required"));

    public static ChatException InsufficientCredits(string teamId, long balance) => new(
        403,
        new ErrorInfo(
            $"Team '{teamId}' has {balance} credits left; a job or model call needs at least 1. Ask the operator to add credits (POST /api/credits/teams/{teamId}/add).",
            ErrorTypes.Permission, null, "insufficient_credits"));

    /// <summary>The 403 for a new job when every credit of the team is held by an open job.</summary>
    public static ChatException CreditsHeld(string teamId, long balance, long openJobs) => new(
        403,
        new ErrorInfo(
            $"Team '{teamId}' has {balance} credit(s) and {openJobs} open job(s) already hold them (each open job holds one credit until it is completed, failed or expires). " +
            $"Complete or fail an open job (POST /api/jobs/{{id}}/complete), or ask the operator to add credits (POST /api/credits/teams/{teamId}/add).",
            ErrorTypes.Permission, null, "insufficient_credits"));

    /// <summary>The 409 for a turn on a session that holds as many messages as a session may.</summary>
    public static ChatException SessionFull(string sessionId, long messages, int limit) => new(
        409,
        new ErrorInfo(
            $"Session '{sessionId}' holds {messages} messages; a session keeps at most {limit} (Sessions:MaxMessages), so this turn was not run. " +
            "Start a new session (send the turn without session_id), or delete old sessions (DELETE /api/sessions/{id}).",
            ErrorTypes.InvalidRequest, "session_id", "session_full"));

    public static ChatException TooManySessions(int limit) => new(
        409,
        new ErrorInfo(
            $"This team keeps {limit} sessions, the most it may (Sessions:MaxPerTeam), so no new one was started. " +
            "Delete sessions it no longer needs (GET /api/sessions lists them, DELETE /api/sessions/{id} deletes one), or continue one with session_id.",
            ErrorTypes.InvalidRequest, null, "too_many_sessions"));

    public static ChatException ModelNotAllowed(string model) => new(
        403,
        new ErrorInfo(
            $"This API key may not use '{model}'. Use one of the models or model groups assigned to the key's team, or ask the operator to assign '{model}'.",
            ErrorTypes.Permission, "model", "model_not_allowed"));

    /// <summary>The 503 for a store that cannot be reached (the request did nothing; it may be retried).</summary>
    public static ChatException StoreUnavailable(Exception inner) => new(
        503,
        new ErrorInfo(
            $"The gateway's database is unavailable ({inner.GetType().Name}); retry shortly. If it persists, the operator should check the Store setting and the database server.",
            ErrorTypes.Server, null, "store_unavailable"),
        TimeSpan.FromSeconds(1),
        inner);

    /// <summary>
    /// A value the client sent, as it may be repeated in a message: at most 80 characters, control and bidi characters
    /// replaced — a 100,000-character or right-to-left-override "name" is not sent back or logged as it is.
    /// </summary>
    public static string Echo(string value)
    {
        const int MaxEcho = 80;
        var label = NameRules.ToLabel(value.Length > MaxEcho ? value[..MaxEcho] : value);
        return value.Length > MaxEcho ? label + "…" : label;
    }

    /// <summary>True for failures of the database itself, as opposed to refusals the store decided on.</summary>
    public static bool IsStoreFailure(Exception exception) =>
        exception is System.Data.Common.DbException or TimeoutException or InvalidOperationException { InnerException: System.Data.Common.DbException };
}
