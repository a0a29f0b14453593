namespace Sluice.Providers;

/// <summary>
/// One entry of the <c>Models</c> configuration array. Provider-specific keys are ignored by providers that
/// do not use them; <c>sluice.example.json</c> documents every key.
/// </summary>
public sealed class ModelOptions
{
    /// <summary>The name clients ask for.</summary>
    public string Name { get; set; } = string.Empty;

    /// <summary>
    /// The backend kind: <c>sim</c>, <c>sim-embed</c> (a simulated embedding model), <c>openai</c> (any OpenAI-compatible
    /// server), <c>anthropic</c>, <c>gemini</c>, <c>ollama</c>, or <c>local</c> (a GGUF file run in-process by Sluice's engine).
    /// </summary>
    public string Provider { get; set; } = "sim";

    /// <summary>
    /// Upstream: the API root, e.g. <c>https://api.openai.com/v1</c>, <c>https://api.anthropic.com/v1</c>,
    /// <c>https://generativelanguage.googleapis.com/v1beta</c>, <c>http://127.0.0.1:11434</c>. Required for every provider but <c>sim</c>.
    /// </summary>
    public string? BaseUrl { get; set; }

    /// <summary>
    /// Upstream: the name of the environment variable that holds the API key (e.g. <c>OPENAI_API_KEY</c>).
    /// The key itself never goes in the configuration file, and is never logged. Leave unset for keyless servers.
    /// </summary>
    public string? ApiKeyEnv { get; set; }

    /// <summary>
    /// Upstream, <c>openai</c> only: which OpenAI API it speaks — <c>chat</c> (<c>POST /chat/completions</c>, the default)
    /// or <c>responses</c> (<c>POST /responses</c>: Responses API requests are passed through, every other dialect is
    /// translated).
    /// </summary>
    public string? Api { get; set; }

    /// <summary>Upstream: the model name the upstream knows (defaults to <see cref="Name"/>).</summary>
    public string? UpstreamModel { get; set; }

    /// <summary>Upstream: extra HTTP headers sent with every request (e.g. an organization or project header).</summary>
    public Dictionary<string, string>? Headers { get; set; }

    /// <summary>
    /// Upstream: the HTTP version spoken to it — <c>1.1</c> (the default: one connection per stream in flight) or <c>2</c>
    /// (many streams share a connection: over <c>https</c> HTTP/2 is negotiated and HTTP/1.1 used if the server does not
    /// offer it; over <c>http</c> the server must speak HTTP/2 without TLS, "prior knowledge").
    /// </summary>
    public string? HttpVersion { get; set; }

    /// <summary>
    /// Upstream: which HTTP client talks to it — <c>sluice</c> (the default: for <c>http://</c> upstreams without a proxy
    /// and <see cref="HttpVersion"/> 1.1, Sluice's own HTTP/1.1 client, which allocates nothing per streamed chunk; every
    /// other upstream uses .NET's) or <c>dotnet</c> (always .NET's <see cref="System.Net.Http.SocketsHttpHandler"/>).
    /// </summary>
    public string? UpstreamClient { get; set; }

    /// <summary>Upstream: time allowed to open the TCP/TLS connection, in milliseconds (default 10 000).</summary>
    public int ConnectTimeoutMs { get; set; } = 10_000;

    /// <summary>
    /// Upstream: time allowed from sending the request to the first answer event, in milliseconds (default 300 000;
    /// reasoning models can think for minutes before they write anything). 0 disables it.
    /// </summary>
    public int FirstTokenTimeoutMs { get; set; } = 300_000;

    /// <summary>
    /// Upstream: once the answer has started, the longest the gateway waits for the upstream's next bytes, in
    /// milliseconds (default 120 000); time spent passing earlier bytes on to a slow client does not count. 0 disables it.
    /// </summary>
    public int IdleTimeoutMs { get; set; } = 120_000;

    /// <summary>Upstream: longest a whole request may take, in milliseconds (default 1 800 000). 0 disables it.</summary>
    public int TotalTimeoutMs { get; set; } = 1_800_000;

    /// <summary>
    /// Whether the model takes image and document parts. Unset: upstream providers are sent them (the provider decides)
    /// and simulated models refuse them; <c>false</c> refuses them for any provider with a 400 before anything is sent;
    /// <c>true</c> lets a simulated model accept them (its answer mentions them; it does not look at them).
    /// </summary>
    public bool? Vision { get; set; }

    /// <summary><c>sim-embed</c>: the size of its vectors (default 256); requests may ask for fewer with <c>dimensions</c>.</summary>
    public int? EmbeddingDimensions { get; set; }

    /// <summary>
    /// Local: the GGUF model file (llama, qwen2 or qwen3 architecture), loaded once at start-up and shared by every
    /// request. A missing or unreadable file stops the start with a message naming it.
    /// </summary>
    public string? ModelPath { get; set; }

    /// <summary>
    /// Local: the name of an environment variable holding the model file's path, used when <see cref="ModelPath"/> is
    /// not set. When the variable is unset the model is listed as unavailable (like a provider whose key variable is
    /// unset) instead of stopping the start.
    /// </summary>
    public string? ModelPathEnv { get; set; }

    /// <summary>
    /// Local: positions of each sequence's key/value cache, i.e. the longest prompt plus answer; null uses the model's
    /// training context capped at 4096. Replaces <see cref="ContextWindow"/> for local models.
    /// </summary>
    public int? ContextSize { get; set; }

    /// <summary>Local: threads of each forward pass; null uses every core.</summary>
    public int? Threads { get; set; }

    /// <summary>
    /// Local: most requests generating at once, each with its own key/value cache (allocated the first time it is
    /// needed, <c>ContextSize</c> positions each); further requests wait for a free one. Default 4.
    /// </summary>
    public int Parallel { get; set; } = 4;

    /// <summary>Local: a Jinja chat template that replaces the one in the model file (<c>tokenizer.chat_template</c>).</summary>
    public string? ChatTemplate { get; set; }

    /// <summary>
    /// Local: false reads the model file into process memory at start instead of memory-mapping it (llama.cpp's
    /// <c>--no-mmap</c>): the file's size in resident memory, weights at memory speed where reads through a mapping
    /// are slow (some virtual machines). Default (null): mapped.
    /// </summary>
    public bool? MemoryMap { get; set; }

    /// <summary>
    /// Local: the element type of each request's key/value cache, <c>f32</c> (the default: attention exact against
    /// llama.cpp with an f32 cache) or <c>f16</c> (half the memory per position, as llama.cpp's and Ollama's default:
    /// twice the context or <c>Parallel</c> in the same memory).
    /// </summary>
    public string? KvCache { get; set; }

    /// <summary>A sentence shown in <c>/v1/models</c>.</summary>
    public string? Description { get; set; }

    /// <summary>Makes this entry an alias: requests for <see cref="Name"/> go to the model or group named here.</summary>
    public string? Target { get; set; }

    /// <summary>
    /// Tries per request before the first token (retries on connection errors, timeouts, 429, 5xx). Default:
    /// 2 for upstream providers, 1 for simulations (whose faults are meant to reach the client).
    /// </summary>
    public int? MaxAttempts { get; set; }

    /// <summary>Longest prompt plus answer, in tokens (for local models: the loaded context size, see <see cref="ContextSize"/>).</summary>
    public int ContextWindow { get; set; } = 32_768;

    /// <summary>
    /// Largest <c>max_tokens</c> accepted; for <c>anthropic</c> also the <c>max_tokens</c> sent when the request sets none;
    /// for <c>local</c> the answer length when the request sets none (bounded by the context left after the prompt).
    /// </summary>
    public int MaxOutputTokens { get; set; } = 8_192;

    /// <summary>
    /// Simulation: answer length when the request sets no <c>max_tokens</c>. 300 tokens (about 1,500 characters) is
    /// long enough for a first streaming check to see the answer arrive piece by piece.
    /// </summary>
    public int DefaultAnswerTokens { get; set; } = 300;

    /// <summary>Simulation: delay before the first token, in milliseconds.</summary>
    public int TimeToFirstTokenMs { get; set; }

    /// <summary>Simulation: generation speed; 0 means no delay between tokens.</summary>
    public double TokensPerSecond { get; set; }

    /// <summary>Simulation: relative random variation of each delay, 0–1 (0.25 = ±25 %).</summary>
    public double Jitter { get; set; }

    /// <summary>Simulation fault: answer every request with this HTTP status before the first token (429, 500, 503…).</summary>
    public int? FailStatus { get; set; }

    /// <summary>Simulation fault: only the first this-many requests fail with <see cref="FailStatus"/> (null = all).</summary>
    public int? FailTimes { get; set; }

    /// <summary>Simulation fault: <c>Retry-After</c> seconds sent with a simulated 429/503.</summary>
    public int? RetryAfterSeconds { get; set; }

    /// <summary>Simulation fault: fail mid-stream after this many tokens.</summary>
    public int? FailAfterTokens { get; set; }

    /// <summary>Simulation fault: stall this long, once, after <see cref="StallAfterTokens"/> tokens.</summary>
    public int? StallMs { get; set; }

    /// <summary>Simulation fault: where the stall happens (0 = before the first token).</summary>
    public int StallAfterTokens { get; set; }

    /// <summary>A copy whose later changes do not affect this instance (the catalog adjusts copies of local models).</summary>
    internal ModelOptions Copy() => (ModelOptions)MemberwiseClone();
}
