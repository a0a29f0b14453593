using Sluice.Gateway.Mqtt;
using Sluice.Providers;
using Sluice.Providers.Routing;

namespace Sluice.Gateway.Hosting;

/// <summary>The gateway's configuration (see <c>sluice.example.json</c> for every key).</summary>
public sealed class GatewayOptions
{
    /// <summary>Address to listen on. <c>SLUICE_HOST</c>.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Port to listen on; 0 picks a free one. <c>SLUICE_PORT</c>.</summary>
    public int Port { get; set; } = 8080;

    /// <summary>Streaming behaviour.</summary>
    public StreamingOptions Streaming { get; set; } = new();

    /// <summary>Input limits.</summary>
    public LimitOptions Limits { get; set; } = new();

    /// <summary>WebSocket chat (<c>GET /api/llm/ws</c>): per-socket bounds.</summary>
    public WebSocketChatOptions WebSocket { get; set; } = new();

    /// <summary>The models served; empty means the built-in simulated models.</summary>
    public List<ModelOptions> Models { get; set; } = [];

    /// <summary>Named fallback groups: a request for a group tries its models in order.</summary>
    public List<ModelGroupOptions> ModelGroups { get; set; } = [];

    /// <summary>Browser access from other origins.</summary>
    public CorsOptions Cors { get; set; } = new();

    /// <summary>Backoff for retries before the first token.</summary>
    public RetryOptions Retry { get; set; } = new();

    /// <summary>The MQTT bridge; it runs when <see cref="MqttBridgeOptions.Broker"/> is set.</summary>
    public MqttBridgeOptions Mqtt { get; set; } = new();
    /// <summary>
    /// Where tenancy, credits, jobs and usage are kept: <c>sqlite:PATH</c> or a PostgreSQL connection string
    /// (<c>Host=…;Database=…</c> or <c>postgres://…</c>). Defaults to <c>sqlite:&lt;DataDirectory&gt;/sluice.db</c>.
    /// <c>SLUICE_Store</c>.
    /// </summary>
    public string? Store { get; set; }

    /// <summary>
    /// Directory for the default SQLite store. <c>SLUICE_DataDirectory</c>. Defaults to the per-user data directory
    /// (<see cref="DefaultDataDirectory"/>), so every working directory opens the same store.
    /// </summary>
    public string DataDirectory { get; set; } = DefaultDataDirectory();

    /// <summary>
    /// The operator's key: guards the admin endpoints. Without one the gateway runs in open local mode (no key
    /// needed anywhere). <c>SLUICE_MASTER_KEY</c>.
    /// </summary>
    public string? MasterKey { get; set; }

    /// <summary>Key caching, the usage queue and rate-limit leases.</summary>
    public TenancyOptions Tenancy { get; set; } = new();

    /// <summary>Several instances on one PostgreSQL store behind a load balancer (see docs/scale-out.md).</summary>
    public ClusterOptions Cluster { get; set; } = new();

    /// <summary>Prometheus metrics, OpenTelemetry export and the access log.</summary>
    public ObservabilityOptions Observability { get; set; } = new();

    /// <summary>
    /// The per-user data directory: <c>$XDG_DATA_HOME/sluice</c>, else <c>~/.local/share/sluice</c> on Linux;
    /// the platform's local application data folder elsewhere; <c>./data</c> only when there is no home directory.
    /// </summary>
    /// <param name="environment">Reads an environment variable (tests pass their own); null reads the process's.</param>
    public static string DefaultDataDirectory(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;

        // XDG says a relative XDG_DATA_HOME is invalid and must be ignored.
        if (environment("XDG_DATA_HOME") is { Length: > 0 } xdg && Path.IsPathRooted(xdg))
        {
            return Path.Combine(xdg, "sluice");
        }

        if (!OperatingSystem.IsWindows() && !OperatingSystem.IsMacOS())
        {
            return environment("HOME") is { Length: > 0 } home && Path.IsPathRooted(home)
                ? Path.Combine(home, ".local", "share", "sluice")
                : "./data";
        }

        var local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
        return local.Length > 0 ? Path.Combine(local, "sluice") : "./data";
    }

    /// <summary>Stored conversations.</summary>
    public SessionOptions Sessions { get; set; } = new();

    /// <summary>Stored responses of the Responses API.</summary>
    public ResponsesOptions Responses { get; set; } = new();

    /// <summary>The store connection string in effect: <see cref="Store"/>, or the SQLite file in <see cref="DataDirectory"/>.</summary>
    public string StoreConnectionString =>
        string.IsNullOrWhiteSpace(Store) ? Sluice.Storage.SluiceStoreFactory.DefaultConnectionString(DataDirectory) : Store;
}

/// <summary>Bounds on what one WebSocket (and one key over all its sockets) can make the gateway hold.</summary>
public sealed class WebSocketChatOptions
{
    /// <summary>Chat requests running at once on one socket; more are refused with <c>too_many_requests</c> (the socket stays open).</summary>
    public int MaxConcurrentRequestsPerSocket { get; set; } = 8;

    /// <summary>Chat requests running at once over all the sockets of one virtual key (or of the operator / open mode).</summary>
    public int MaxConcurrentRequestsPerKey { get; set; } = 64;

    /// <summary>
    /// Messages waiting to be sent on one socket. When the client does not read, the queue fills and generation pauses
    /// (each request waits for room) — memory stays bounded whatever the client does.
    /// </summary>
    public int OutboxMessages { get; set; } = 256;

    /// <summary>How long a request may wait for room in a full outbox before it is cancelled with <c>client_too_slow</c>.</summary>
    public double SlowClientTimeoutSeconds { get; set; } = 30;
}

/// <summary>Several gateway instances sharing one PostgreSQL store.</summary>
public sealed class ClusterOptions
{
    /// <summary>
    /// The URL the other instances reach this one at (resume, replay and cancel of its streams are forwarded there),
    /// e.g. <c>http://10.0.0.5:8080</c>. Default: the address it listens on — with the machine's host name when it
    /// listens on every interface (<c>0.0.0.0</c>). Only used with a PostgreSQL store. <c>SLUICE_Cluster__InternalUrl</c>.
    /// </summary>
    public string? InternalUrl { get; set; }
}

/// <summary>Stored conversations (<c>/api/sessions</c>, session turns).</summary>
public sealed class SessionOptions
{
    /// <summary>
    /// Messages one session keeps (a turn is two: the question and the reply). A turn on a full session is refused with
    /// 409 <c>session_full</c> before the model runs; nothing is deleted or archived behind the client's back.
    /// </summary>
    public int MaxMessages { get; set; } = 2_000;

    /// <summary>
    /// Sessions one team (or the operator) keeps; creating one more — explicitly or by a turn without
    /// <c>session_id</c> — is refused with 409 <c>too_many_sessions</c>. Nothing is deleted behind the client's back.
    /// </summary>
    public int MaxPerTeam { get; set; } = 10_000;
}

/// <summary>Stored responses (<c>POST /v1/responses</c> with <c>store</c>).</summary>
public sealed class ResponsesOptions
{
    /// <summary>
    /// Stored responses one team (or the operator) keeps: past it the oldest are deleted — a <c>previous_response_id</c>
    /// naming one then gets a 404, as after OpenAI's own retention. Checked every
    /// <see cref="Responses.StoredResponseRetention.TrimEvery"/> stores per team and process, so a team may hold that many more.
    /// </summary>
    public int MaxStoredPerTeam { get; set; } = 10_000;

    /// <summary>
    /// Days a stored response is kept (OpenAI keeps them 30); older ones, every team's, are deleted by a sweep a minute
    /// after start and then hourly. 0 keeps them until the count pushes them out.
    /// </summary>
    public double StoreDays { get; set; } = 30;
}

/// <summary>Tuning of the tenancy layer.</summary>
public sealed class TenancyOptions
{
    /// <summary>
    /// How long a virtual key (and its team's balance, model groups and limits) is trusted from memory before it
    /// is read again; a key revoked through another gateway process stops working within this time.
    /// </summary>
    public double KeyCacheSeconds { get; set; } = 5;

    /// <summary>Usage records waiting for the database; when full, finishing requests wait (nothing is dropped).</summary>
    public int UsageQueueCapacity { get; set; } = 100_000;

    /// <summary>Most usage records written in one transaction.</summary>
    public int UsageBatchSize { get; set; } = 500;

    /// <summary>
    /// How long the ledger writer lets records gather before a write (0 writes at once). Under load this turns one
    /// transaction per request into one per many; a record reaches the database at most this much later.
    /// </summary>
    public double UsageFlushDelayMs { get; set; } = 20;

    /// <summary>How long a concurrent-stream slot is held without renewal (a crashed process frees its slots after this).</summary>
    public double StreamLeaseSeconds { get; set; } = 60;

    /// <summary>
    /// How long a job may stay open. Each open job holds one of its team's credits; one not completed within this time
    /// expires (failed, never charged) and its credit is free again.
    /// </summary>
    public double OpenJobHours { get; set; } = 24;
}

/// <summary>Streaming behaviour.</summary>
public sealed class StreamingOptions
{
    /// <summary>Send a <c>: ping</c> comment after this many seconds of silence (keeps proxies from cutting the stream).</summary>
    public double PingIntervalSeconds { get; set; } = 15;

    /// <summary>Flush early when this many bytes are pending, even if the backend has more ready.</summary>
    public int MaxPendingBytes { get; set; } = 16 * 1024;

    /// <summary>
    /// Give every streamed OpenAI or portal answer a stream id (<c>x-sluice-stream-id</c>) and keep its frames so a
    /// dropped client can resume with <c>GET /v1/streams/{id}</c>. False: streams behave as plain SSE.
    /// </summary>
    public bool Resumable { get; set; } = true;

    /// <summary>
    /// How long a stream whose request sent <c>x-sluice-resume: on</c> keeps generating after its last client left,
    /// waiting for one to reconnect. Other streams stop at once when their client leaves (they stay replayable once
    /// finished). 0: every disconnect cancels the generation at once.
    /// </summary>
    public double ResumeGraceSeconds { get; set; } = 30;

    /// <summary>Apply <see cref="ResumeGraceSeconds"/> to every stream, not only to requests that ask for it.</summary>
    public bool ResumeGraceForAllRequests { get; set; }

    /// <summary>How long a finished stream stays replayable (within <see cref="ReplayBudgetBytes"/>).</summary>
    public double ReplayTtlSeconds { get; set; } = 300;

    /// <summary>
    /// How long a streamed HTTP answer may wait for a client that stopped reading (its socket and Kestrel's response
    /// buffer full) before the connection is dropped and the reason logged. Meanwhile the generation is paused, so
    /// memory per stream stays within Kestrel's response buffer. 0 waits for ever.
    /// </summary>
    public double SlowClientTimeoutSeconds { get; set; } = 30;

    /// <summary>Largest buffer of one stream; a stream that outgrows it cannot be resumed (it still streams).</summary>
    public int MaxStreamBufferBytes { get; set; } = 1024 * 1024;

    /// <summary>Memory for all stream buffers together; the oldest finished streams are evicted first.</summary>
    public long ReplayBudgetBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// Clients reading one stream at once, the request that started it included; one more resume (<c>GET
    /// /v1/streams/{id}</c>) is refused with 429 <c>too_many_readers</c>. Each reader holds a connection and wakes at
    /// every frame, so a stream id shared or leaked must not let its holders multiply that work without bound.
    /// </summary>
    public int MaxReadersPerStream { get; set; } = 16;

    /// <summary>
    /// On shutdown (SIGTERM, Ctrl+C), how long the answers already running may take to finish; new requests are refused
    /// with 503 <c>gateway_shutting_down</c> meanwhile and <c>/health/ready</c> answers 503. Answers still running
    /// after it end with a <c>gateway_shutting_down</c> error frame.
    /// </summary>
    public double ShutdownGraceSeconds { get; set; } = 10;

    /// <summary>
    /// Kestrel's socket I/O queues (<c>SocketTransportOptions.IOQueueCount</c>); null, the default, keeps Kestrel's
    /// (one per core, up to 16). 0 hands socket completions to the thread pool directly: side by side on two cores it
    /// measured between 8 % less and 3 % more CPU per fast stream over five runs (BENCHMARKS.md, twenty-second and
    /// twenty-third sessions) — worth measuring on the host it runs on, not a default.
    /// </summary>
    public int? IoQueues { get; set; }
}

/// <summary>Input limits.</summary>
public sealed class LimitOptions
{
    /// <summary>Longest <c>prompt</c> shorthand, in characters.</summary>
    public int MaxPromptChars { get; set; } = 5_000;

    /// <summary>
    /// Largest request body, in bytes: 32 MiB, Anthropic's own limit for a Messages request — an agent's long
    /// conversation with screenshots goes through a gateway whole (memory held at once stays bounded per caller by
    /// <see cref="MaxBodyBytesPerClient"/>).
    /// </summary>
    public long MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>Most image and document parts in one request (all messages together).</summary>
    public int MaxAttachments { get; set; } = 16;

    /// <summary>
    /// Largest image or document sent inline, in decoded bytes. Base64 makes a body a third larger than its files, so
    /// raise <see cref="MaxRequestBodyBytes"/> along with it.
    /// </summary>
    public int MaxAttachmentBytes { get; set; } = 5 * 1024 * 1024;

    /// <summary>
    /// How long a client may take to send a request's line and headers (Kestrel's <c>RequestHeadersTimeout</c>); a
    /// client that trickles them (slowloris) gets a 408 and its connection closed.
    /// </summary>
    public double RequestHeadersTimeoutSeconds { get; set; } = 30;

    /// <summary>
    /// Most client connections open at once (Kestrel's <c>MaxConcurrentConnections</c>); one more is closed as soon as it
    /// is accepted. Unset: the process's open-file limit less a tenth (at least 512) kept for upstream connections and
    /// the store, so a flood of connections is turned away instead of leaving the process without file descriptors.
    /// </summary>
    public long? MaxConnections { get; set; }

    /// <summary>
    /// Most connections open at once from one remote address; one more gets a 503 (<c>too_many_connections</c>) and is
    /// closed. Unset: half of <see cref="MaxConnections"/>, at most 10,000, so one client cannot keep everyone else out. 0: no limit per
    /// address — behind a reverse proxy, whose address every connection comes from.
    /// </summary>
    public long? MaxConnectionsPerClient { get; set; }

    /// <summary>
    /// Most bytes of request bodies one caller (virtual key, else remote address) makes the gateway hold at once — a
    /// body counts from its first 16 KiB until its request ends; past it, 429 <c>request_bytes_limit</c>.
    /// </summary>
    public long MaxBodyBytesPerClient { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// Most bytes of request bodies held at once in all; past it, 503 <c>server_busy</c>. Unset: a quarter of the memory
    /// the runtime may use (the container's limit if there is one), at least four of <see cref="MaxBodyBytesPerClient"/>.
    /// </summary>
    public long? MaxBodyBytes { get; set; }
}

/// <summary>Cross-origin browser access (CORS).</summary>
public sealed class CorsOptions
{
    /// <summary>Origins allowed to call the API from a browser, e.g. <c>https://chat.example.com</c>; none by default, <c>*</c> for any.</summary>
    public List<string> AllowedOrigins { get; set; } = [];
}
