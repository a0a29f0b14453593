using Sluice.Gateway.Streaming;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Completions;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Ollama;
using Sluice.Protocol.Responses;

namespace Sluice.Gateway.Calls;

/// <summary>
/// One API dialect of a chat call — how its request is read, how its model names are spelled, where its clients list
/// models and how its errors look. Transport-neutral: the transports choose the answer sink.
/// </summary>
internal sealed class CallDialect
{
    private readonly Func<ReadOnlyMemory<byte>, ChatRequestLimits, ChatRequest> _parse;

    private CallDialect(string name, ErrorDialect errors, string modelListing, Func<ReadOnlyMemory<byte>, ChatRequestLimits, ChatRequest> parse, bool latestTag = false)
    {
        Name = name;
        Errors = errors;
        ModelListing = modelListing;
        _parse = parse;
        AcceptsLatestTag = latestTag;
    }

    /// <summary><c>POST /v1/chat/completions</c>.</summary>
    public static CallDialect OpenAI { get; } = new("openai", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => ChatRequestParser.Parse(body, limits));

    /// <summary><c>POST /v1/responses</c>: the Responses API (its stage resolves <c>previous_response_id</c>).</summary>
    public static CallDialect Responses { get; } = new("responses", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => ResponsesRequestParser.Parse(body, limits));

    /// <summary><c>POST /v1/messages</c>.</summary>
    public static CallDialect Anthropic { get; } = new("anthropic", ErrorDialect.Anthropic, "GET /v1/models", (body, limits) => AnthropicRequestParser.Parse(body, limits));

    /// <summary><c>POST /api/chat</c>.</summary>
    public static CallDialect OllamaChat { get; } = new("ollama", ErrorDialect.Ollama, "GET /api/tags", (body, limits) => OllamaRequestParser.ParseChat(body, limits), latestTag: true);

    /// <summary><c>POST /api/generate</c>.</summary>
    public static CallDialect OllamaGenerate { get; } = new("ollama", ErrorDialect.Ollama, "GET /api/tags", (body, limits) => OllamaRequestParser.ParseGenerate(body, limits), latestTag: true);

    /// <summary>The legacy <c>POST /v1/completions</c>.</summary>
    public static CallDialect Completions { get; } = new("openai-completions", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => CompletionRequestParser.Parse(body, limits));

    /// <summary><c>POST /v1/embeddings</c> (parsed by its endpoint, which keeps the embeddings request for its stage).</summary>
    public static CallDialect Embeddings { get; } = new(
        "openai-embeddings", ErrorDialect.OpenAI, "GET /v1/models", (body, _) => EmbeddingRequestParser.ParseOpenAI(body).ToChatRequest());

    /// <summary>Ollama's <c>POST /api/embed</c> and <c>POST /api/embeddings</c>.</summary>
    public static CallDialect OllamaEmbed { get; } = new(
        "ollama-embed", ErrorDialect.Ollama, "GET /api/tags", (body, _) => EmbeddingRequestParser.ParseOllamaEmbed(body).ToChatRequest(), latestTag: true);

    /// <summary>The portal stream, <c>POST /api/llm/chat/stream</c> (always streamed), and WebSocket chat requests.</summary>
    public static CallDialect Portal { get; } = new("portal", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => OneAnswer(ChatRequestParser.Parse(body, limits) with { Stream = true }, "/api/llm/chat/stream"));

    /// <summary>
    /// A WebSocket chat request: the portal's fields inside a message envelope (<c>type</c>, <c>id</c>), which no upstream
    /// should see — so no raw body is kept.
    /// </summary>
    public static CallDialect WebSocket { get; } = new(
        "websocket", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => OneAnswer(ChatRequestParser.Parse(body, limits) with { Stream = true, RawBody = ReadOnlyMemory<byte>.Empty }, "WebSocket chat"));

    /// <summary>A session turn: one <c>message</c> instead of <c>messages</c> (the session holds the history).</summary>
    public static CallDialect Session { get; } = new(
        "session", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => OneAnswer(ChatRequestParser.Parse(body, limits with { MessagesOptional = true }) with { Stream = true }, "a session turn"));

    /// <summary>A job call, <c>POST /api/jobs/{id}/llm-call[-stream]</c> (OpenAI fields plus <c>model_group</c>).</summary>
    public static CallDialect Job { get; } = new("job", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => ChatRequestParser.Parse(body, limits));

    /// <summary>MQTT requests (parsed by the bridge's reader, which also finds the reply topic).</summary>
    public static CallDialect Mqtt { get; } = new("mqtt", ErrorDialect.OpenAI, "GET /v1/models", (body, limits) => OneAnswer(ChatRequestParser.Parse(body, limits), "MQTT"));

    /// <summary>
    /// Refuses <c>n</c> above 1 where the answer format carries one answer (portal, WebSocket, session turns, MQTT): the
    /// other answers would be generated and billed but never delivered.
    /// </summary>
    /// <exception cref="Sluice.Protocol.ChatException">400 <c>unsupported_value</c> naming <c>n</c>.</exception>
    public static ChatRequest OneAnswer(ChatRequest request, string where)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.N <= 1
            ? request
            : throw Sluice.Protocol.ChatException.BadRequest(
                $"{where} streams one answer, so n must be 1 (it is {request.N}). Send n = 1, or ask POST /v1/chat/completions for several answers.",
                "n", "unsupported_value");
    }

    /// <summary>A short name for logs and metrics.</summary>
    public string Name { get; }

    /// <summary>The shape of its error bodies.</summary>
    public ErrorDialect Errors { get; }

    /// <summary>Where its clients list the models (named in "model not found").</summary>
    public string ModelListing { get; }

    /// <summary>Ollama names carry a tag: <c>name:latest</c> also finds <c>name</c>.</summary>
    public bool AcceptsLatestTag { get; }

    /// <summary>Parses a request body; throws the 400 naming the parameter.</summary>
    public ChatRequest Parse(ReadOnlyMemory<byte> body, ChatRequestLimits limits) => _parse(body, limits);

    /// <inheritdoc />
    public override string ToString() => Name;
}
