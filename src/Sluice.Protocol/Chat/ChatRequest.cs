using System.Text.Json;

namespace Sluice.Protocol.Chat;

/// <summary>
/// A validated chat request, independent of the wire format it arrived in. Immutable: a stage that needs another
/// version (the catalog's model name, a session's history) makes a copy with <c>with</c>.
/// </summary>
public sealed record ChatRequest
{
    /// <summary>The model (or model group) name the client asked for.</summary>
    public required string Model { get; init; }

    /// <summary>The conversation, oldest first.</summary>
    public required IReadOnlyList<ChatMessage> Messages { get; init; }

    /// <summary>How many answers to generate (<c>n</c>); backends that cannot produce several reject values above 1.</summary>
    public int N { get; init; } = 1;

    /// <summary>
    /// The request body exactly as the client sent it (empty when the request was built in code). Backends that
    /// speak OpenAI forward it so that fields Sluice does not model (e.g. <c>logprobs</c>, <c>response_format</c>)
    /// reach the upstream unchanged.
    /// </summary>
    public ReadOnlyMemory<byte> RawBody { get; init; }

    /// <summary>Whether the client wants Server-Sent Events.</summary>
    public bool Stream { get; init; }

    /// <summary><c>stream_options.include_usage</c>: send a final usage chunk.</summary>
    public bool IncludeUsage { get; init; }

    /// <summary>Output token limit (<c>max_completion_tokens</c> or <c>max_tokens</c>).</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Sampling temperature, 0–2.</summary>
    public double? Temperature { get; init; }

    /// <summary>Nucleus sampling, 0–1.</summary>
    public double? TopP { get; init; }

    /// <summary>Top-k sampling (Anthropic's and Ollama's <c>top_k</c>); passed to backends that know it, ignored by the rest.</summary>
    public int? TopK { get; init; }

    /// <summary>
    /// Min-p sampling (<c>min_p</c>, an extension llama.cpp, vLLM and Ollama accept): drop tokens whose probability is
    /// below this fraction of the most likely one's, 0–1. Used by the local engine; other backends ignore it.
    /// </summary>
    public double? MinP { get; init; }

    /// <summary>
    /// Multiplicative repetition penalty (<c>repetition_penalty</c> / <c>repeat_penalty</c>, an extension of llama.cpp,
    /// vLLM and Ollama): above 1 discourages recent tokens. Used by the local engine; other backends ignore it.
    /// </summary>
    public double? RepetitionPenalty { get; init; }

    /// <summary><c>frequency_penalty</c>, −2 to 2: subtracted from a token's logit per earlier occurrence.</summary>
    public double? FrequencyPenalty { get; init; }

    /// <summary><c>presence_penalty</c>, −2 to 2: subtracted from a token's logit when it occurred before.</summary>
    public double? PresencePenalty { get; init; }

    /// <summary>Stop sequences (at most 4 from OpenAI clients; Anthropic and Ollama clients may send more).</summary>
    public IReadOnlyList<string>? Stop { get; init; }

    /// <summary>Seed for deterministic sampling where the backend supports it.</summary>
    public long? Seed { get; init; }

    /// <summary>End-user identifier, passed through.</summary>
    public string? User { get; init; }

    /// <summary>Tool definitions (function tools), parsed.</summary>
    public IReadOnlyList<ToolDefinition>? Tools { get; init; }

    /// <summary>The raw <c>tools</c> array, passed to backends that speak OpenAI.</summary>
    public JsonElement? ToolsJson { get; init; }

    /// <summary>The raw <c>tool_choice</c> value (<c>"auto"</c>, <c>"none"</c>, <c>"required"</c> or an object).</summary>
    public JsonElement? ToolChoice { get; init; }

    /// <summary>Request metadata (string map); also carries simulation fault switches.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>
    /// The prompt's tokens when the request knows them better than counting <see cref="Messages"/> would (embeddings
    /// inputs, token-id prompts); admission and usage estimates use it when set.
    /// </summary>
    public int? PromptTokenEstimate { get; init; }

    /// <summary>
    /// For a legacy <c>POST /v1/completions</c> request: its prompts, <c>suffix</c>, <c>echo</c>, <c>logprobs</c> and body;
    /// null for every other request. OpenAI-compatible upstreams answer it at their <c>/completions</c>; other backends
    /// answer <see cref="Messages"/> (the first prompt as a user message) and refuse what they cannot translate.
    /// </summary>
    public Completions.LegacyCompletion? Completion { get; init; }

    /// <summary>The shape the answer's text must have (<c>response_format</c>, <c>text.format</c>, Ollama's <c>format</c>); null for plain text.</summary>
    public ResponseFormat? ResponseFormat { get; init; }

    /// <summary><c>parallel_tool_calls</c>: false forbids several tool calls in one answer; null leaves it to the backend (allowed).</summary>
    public bool? ParallelToolCalls { get; init; }

    /// <summary><c>logprobs</c>: return each output token's log probability.</summary>
    public bool Logprobs { get; init; }

    /// <summary><c>top_logprobs</c>: how many most likely alternatives to return per token (0–20), with <see cref="Logprobs"/>.</summary>
    public int? TopLogprobs { get; init; }

    /// <summary>
    /// For a Responses API request: the body exactly as the client sent it, so an upstream that speaks the Responses
    /// API gets it passed through (unknown fields, reasoning items and all). Empty otherwise; <see cref="RawBody"/> only
    /// ever holds Chat Completions bodies.
    /// </summary>
    public ReadOnlyMemory<byte> ResponsesBody { get; init; }

    /// <summary>
    /// For an Anthropic Messages request: the body exactly as the client sent it, so an Anthropic upstream gets it passed
    /// through (<c>thinking</c>, <c>cache_control</c> and fields Sluice does not model) with only <c>model</c> and
    /// <c>stream</c> replaced. Empty otherwise; clear it when changing the request's messages or settings in code.
    /// </summary>
    public ReadOnlyMemory<byte> AnthropicBody { get; init; }

    /// <summary>The client's <c>anthropic-beta</c> header, sent on to Anthropic upstreams with <see cref="AnthropicBody"/>.</summary>
    public string? AnthropicBeta { get; init; }

    /// <summary>
    /// The first part of an Anthropic request that only Anthropic's own API can take — a server tool (web search, code
    /// execution, …) or a server tool's blocks from an earlier turn — or null. Such a request is sent on as it is to an
    /// Anthropic upstream (<see cref="AnthropicBody"/>); every other backend refuses it with a 400 naming this part.
    /// </summary>
    public AnthropicOnlyPart? AnthropicOnly { get; init; }

    /// <summary>
    /// For a Responses API request continuing a stored response (<c>previous_response_id</c>): the whole conversation as
    /// Responses input items (the stored ones, then the request's own), which replaces <c>input</c> when
    /// <see cref="ResponsesBody"/> is passed through. Null when the request's own <c>input</c> is the whole conversation.
    /// </summary>
    public JsonElement? ResponsesInput { get; init; }

    /// <summary>The name of the function <see cref="ToolChoice"/> forces, if it forces one.</summary>
    public string? ForcedToolName =>
        ToolChoice is { ValueKind: JsonValueKind.Object } choice
        && choice.TryGetProperty("function", out var function)
        && function.ValueKind == JsonValueKind.Object
        && function.TryGetProperty("name", out var name)
        && name.ValueKind == JsonValueKind.String
            ? name.GetString()
            : null;

    /// <summary>The text of the last user message, or an empty string.</summary>
    public string LastUserText
    {
        get
        {
            for (var i = Messages.Count - 1; i >= 0; i--)
            {
                if (Messages[i].Role == ChatRoles.User)
                {
                    return Messages[i].Content ?? string.Empty;
                }
            }

            return string.Empty;
        }
    }
}

/// <summary>One message of a conversation.</summary>
/// <param name="Role">One of <see cref="ChatRoles"/>.</param>
/// <param name="Content">The text (text parts joined), or null for an assistant message that only calls tools.</param>
public sealed record ChatMessage(string Role, string? Content)
{
    /// <summary>Optional participant name.</summary>
    public string? Name { get; init; }

    /// <summary>For <c>tool</c> messages: the call this answers.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>For <c>assistant</c> messages: the tool calls it made.</summary>
    public IReadOnlyList<ToolCall>? ToolCalls { get; init; }

    /// <summary>
    /// The content in order, text and images and documents, when the message has an image or document part (null for
    /// text-only messages, whose text is all in <see cref="Content"/>). <see cref="Content"/> still holds the text.
    /// </summary>
    public IReadOnlyList<ContentPart>? Parts { get; init; }
}

/// <summary>A complete tool call.</summary>
/// <param name="Id">The call id.</param>
/// <param name="Name">The function name.</param>
/// <param name="Arguments">The arguments as JSON text.</param>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>A function tool the model may call.</summary>
/// <param name="Name">Function name.</param>
/// <param name="Description">What it does.</param>
/// <param name="Parameters">JSON schema of its arguments.</param>
public sealed record ToolDefinition(string Name, string? Description, JsonElement? Parameters);

/// <summary>Message roles.</summary>
public static class ChatRoles
{
    /// <summary>Instructions.</summary>
    public const string System = "system";

    /// <summary>Instructions (newer OpenAI name for system).</summary>
    public const string Developer = "developer";

    /// <summary>The person.</summary>
    public const string User = "user";

    /// <summary>The model.</summary>
    public const string Assistant = "assistant";

    /// <summary>A tool result.</summary>
    public const string Tool = "tool";

    /// <summary>Whether <paramref name="role"/> is known.</summary>
    public static bool IsKnown(string role) =>
        role is System or Developer or User or Assistant or Tool;
}

/// <summary>A part of a request only Anthropic's own API can take.</summary>
/// <param name="Param">Where it is (<c>tools[2].type</c>, <c>messages[1].content[0].type</c>).</param>
/// <param name="What">What it is, for messages (<c>the server tool "web_search_20250305"</c>).</param>
public sealed record AnthropicOnlyPart(string Param, string What)
{
    /// <summary>The 400 a backend that cannot take it answers, naming the part, the model and what to do.</summary>
    public ChatException Refusal(string model, string provider) => ChatException.BadRequest(
        $"{Param} is {What}, which only Anthropic's own API runs; model \"{model}\" ({provider}) cannot. Remove it from the request, or call a model whose Provider is anthropic.",
        Param, "unsupported_value");
}

