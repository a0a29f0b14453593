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

    /// <summary>The models served; empty means the built-in simulated models.</summary>
    public List<ModelOptions> Models { get; set; } = [];

    /// <summary>Named fallback groups: a request for a group tries its models in order.</summary>
    public List<ModelGroupOptions> ModelGroups { get; set; } = [];

    /// <summary>Browser access from other origins.</summary>
    public CorsOptions Cors { get; set; } = new();

    /// <summary>Backoff for retries before the first token.</summary>
    public RetryOptions Retry { get; set; } = new();
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
    /// How long a resumable stream keeps generating after its last client left, waiting for one to reconnect.
    /// 0: a disconnect cancels the generation at once (as with <see cref="Resumable"/> false).
    /// </summary>
    public double ResumeGraceSeconds { get; set; } = 30;

    /// <summary>How long a finished stream stays replayable (within <see cref="ReplayBudgetBytes"/>).</summary>
    public double ReplayTtlSeconds { get; set; } = 300;

    /// <summary>Largest buffer of one stream; a stream that outgrows it cannot be resumed (it still streams).</summary>
    public int MaxStreamBufferBytes { get; set; } = 1024 * 1024;

    /// <summary>Memory for all stream buffers together; the oldest finished streams are evicted first.</summary>
    public long ReplayBudgetBytes { get; set; } = 64L * 1024 * 1024;
}

/// <summary>Input limits.</summary>
public sealed class LimitOptions
{
    /// <summary>Longest <c>prompt</c> shorthand, in characters.</summary>
    public int MaxPromptChars { get; set; } = 5_000;

    /// <summary>Largest request body, in bytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 4 * 1024 * 1024;
}

/// <summary>Cross-origin browser access (CORS).</summary>
public sealed class CorsOptions
{
    /// <summary>Origins allowed to call the API from a browser, e.g. <c>https://chat.example.com</c>; none by default, <c>*</c> for any.</summary>
    public List<string> AllowedOrigins { get; set; } = [];
}
