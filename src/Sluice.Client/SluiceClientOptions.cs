using System.Globalization;

namespace Sluice.Client;

/// <summary>
/// Where the client connects and how patient it is. One instance configures a <see cref="SluiceChatClient"/> or a
/// <see cref="Jobs.SluiceJobsClient"/>; it is read when the client is created, so change it before that.
/// </summary>
public sealed class SluiceClientOptions
{
    /// <summary>The header a resumable stream carries its id in (Sluice; see <see cref="ResumeStreams"/>).</summary>
    public const string StreamIdHeader = "x-sluice-stream-id";

    /// <summary>
    /// The request header (<c>on</c>) that asks Sluice to keep generating for a while after the connection drops, so
    /// the stream can be resumed; sent when <see cref="ResumeStreams"/> is true.
    /// </summary>
    public const string ResumeHeader = "x-sluice-resume";

    /// <summary>The header servers put their request id in.</summary>
    public const string RequestIdHeader = "x-request-id";

    /// <summary>
    /// The server's address: <c>http://127.0.0.1:8080</c> (a Sluice gateway) or an OpenAI-style API base such as
    /// <c>https://api.openai.com/v1</c>. An address without a path gets <c>/v1</c> appended; one with a path is used
    /// as the API base as given. Job and credit calls (<c>/api/…</c>) go to the address without a trailing <c>/v1</c>.
    /// </summary>
    public Uri Endpoint { get; set; } = new("http://127.0.0.1:8080");

    /// <summary>Sent as <c>Authorization: Bearer</c> when set (a Sluice virtual key, or a provider key).</summary>
    public string? ApiKey { get; set; }

    /// <summary>The model used when <c>ChatOptions.ModelId</c> is not set; null lets the server pick (Sluice: its first model).</summary>
    public string? DefaultModel { get; set; }

    /// <summary>
    /// Longest wait for the TCP (and TLS) connection. Applied by the HTTP handler the client creates; when you pass
    /// your own <see cref="HttpClient"/>, set <c>SocketsHttpHandler.ConnectTimeout</c> on it instead
    /// (<see cref="SluiceChatClient.CreateHttpHandler"/> builds a handler that does).
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait from sending a request to the first token of the answer (per attempt).</summary>
    public TimeSpan FirstTokenTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest silence between two events once tokens flow; keep-alive comments count as life.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest a whole call may take, retries and resumes included; <see cref="Timeout.InfiniteTimeSpan"/> (the default) for no limit.</summary>
    public TimeSpan TotalTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>Longest wait for a non-streaming call's whole response (job and credit calls, model lists).</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>
    /// Retries before the first token for connection failures, 408, 429 and 5xx answers (0 turns retries off).
    /// Nothing is retried once the answer has started: a broken stream is resumed instead.
    /// </summary>
    public int MaxRetries { get; set; } = 2;

    /// <summary>First backoff delay when the server sends no <c>Retry-After</c>; doubles per retry, with jitter.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Longest delay the client will wait before a retry. A <c>Retry-After</c> longer than this is not waited out:
    /// the rate-limit or server error is raised at once, carrying the delay.
    /// </summary>
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Resume a stream whose connection drops mid-answer: when the response carried <see cref="StreamIdHeader"/>,
    /// the client reconnects to <c>GET /v1/streams/{id}</c> with <c>Last-Event-ID</c> and continues where it left off,
    /// so the caller sees one seamless stream. Without the header (other servers), a drop raises
    /// <see cref="SluiceStreamException"/>.
    /// </summary>
    public bool ResumeStreams { get; set; } = true;

    /// <summary>Most reconnections per stream before a drop is raised as <see cref="SluiceStreamException"/>.</summary>
    public int MaxResumeAttempts { get; set; } = 3;

    /// <summary>Sees every raw request, response and event (for debugging); null for none.</summary>
    public ISluiceTrace? Trace { get; set; }

    /// <summary>Checks the values and says which one is wrong.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (Endpoint is null || !Endpoint.IsAbsoluteUri || (Endpoint.Scheme != Uri.UriSchemeHttp && Endpoint.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"Endpoint must be an absolute http(s) URL such as http://127.0.0.1:8080 (got '{Endpoint}').", nameof(Endpoint));
        }

        RequirePositive(ConnectTimeout, nameof(ConnectTimeout));
        RequirePositive(FirstTokenTimeout, nameof(FirstTokenTimeout));
        RequirePositive(IdleTimeout, nameof(IdleTimeout));
        RequirePositive(TotalTimeout, nameof(TotalTimeout));
        RequirePositive(RequestTimeout, nameof(RequestTimeout));
        if (MaxRetries < 0 || MaxResumeAttempts < 0)
        {
            throw new ArgumentException("MaxRetries and MaxResumeAttempts must be 0 or more.", MaxRetries < 0 ? nameof(MaxRetries) : nameof(MaxResumeAttempts));
        }

        if (RetryDelay < TimeSpan.Zero || MaxRetryDelay < TimeSpan.Zero)
        {
            throw new ArgumentException("RetryDelay and MaxRetryDelay cannot be negative.", RetryDelay < TimeSpan.Zero ? nameof(RetryDelay) : nameof(MaxRetryDelay));
        }
    }

    /// <summary>A copy, so a client is not affected by later changes to the caller's instance.</summary>
    internal SluiceClientOptions Clone() => (SluiceClientOptions)MemberwiseClone();

    /// <summary>A duration for messages, e.g. <c>1.5 s</c>.</summary>
    internal static string Describe(TimeSpan timeout) =>
        timeout == Timeout.InfiniteTimeSpan ? "no limit" : timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";

    private static void RequirePositive(TimeSpan value, string name)
    {
        if (value != Timeout.InfiniteTimeSpan && value <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{name} must be positive, or Timeout.InfiniteTimeSpan for no limit (got {value}).", name);
        }
    }
}
