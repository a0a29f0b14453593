using System.Buffers;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Embeddings;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Upstream;

/// <summary>
/// Google Gemini (Google AI or Vertex AI style endpoints):
/// <c>POST {BaseUrl}/models/{UpstreamModel}:streamGenerateContent?alt=sse</c> with <c>x-goog-api-key</c>.
/// </summary>
/// <remarks>
/// Requests: roles <c>user</c>/<c>model</c>, system and developer messages as <c>systemInstruction</c>, sampling
/// settings in <c>generationConfig</c>, tools as <c>functionDeclarations</c>, tool results as <c>functionResponse</c>
/// parts. Streams: text parts (thought parts skipped), <c>functionCall</c> parts as whole tool calls with
/// synthesized ids, <c>usageMetadata</c> as usage. Gemini repeats <c>finishReason</c> on intermediate chunks in
/// some versions and has no end marker, so finish events are written when the connection closes. A blocked
/// prompt (<c>promptFeedback.blockReason</c>) ends with <c>content_filter</c>. Unknown finish reasons end as
/// <c>stop</c>. A stream that closes with neither content nor a finish reason, or with an error object (as data
/// or written raw into the stream), is an error.
/// </remarks>
public sealed class GeminiChatBackend : UpstreamChatBackend, IEmbeddingBackend, IPromptTokenCounter
{
    /// <summary>The <c>Provider</c> value.</summary>
    public const string ProviderName = "gemini";

    /// <summary>Creates the adapter and its connection pool.</summary>
    /// <param name="options">The model entry (BaseUrl required, e.g. <c>https://generativelanguage.googleapis.com/v1beta</c>).</param>
    /// <param name="apiKey">The API key, or null when a proxy adds credentials.</param>
    public GeminiChatBackend(ModelOptions options, string? apiKey)
        : this(UpstreamTransport.Create(options, "Gemini", apiKey, "text/event-stream", "x-goog-api-key"))
    {
    }

    private GeminiChatBackend(UpstreamTransport transport)
        : base(transport, new Uri($"{transport.BaseUrl}/models/{Uri.EscapeDataString(transport.UpstreamModel)}:streamGenerateContent?alt=sse"), UpstreamFraming.ServerSentEvents)
    {
    }

    private protected override UpstreamDecoder CreateDecoder(ChatRequest request, ChatCallOptions options) => new Decoder();

    /// <summary>
    /// Gemini's own count: <c>POST {BaseUrl}/models/{UpstreamModel}:countTokens</c> with the whole request as it would be
    /// sent (<c>generateContentRequest</c>: contents, system instruction, tools), its <c>totalTokens</c> returned.
    /// </summary>
    public async ValueTask<int> CountPromptTokensAsync(ChatRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = new Uri($"{Transport.BaseUrl}/models/{Uri.EscapeDataString(Transport.UpstreamModel)}:countTokens");
        var answer = await UpstreamStreaming.ExchangeAsync(Transport, uri, BuildCountBody(request), cancellationToken).ConfigureAwait(false);
        return UpstreamStreaming.ReadTokenCount(answer, "totalTokens", Transport);
    }

    /// <summary>The <c>countTokens</c> request for <paramref name="request"/>.</summary>
    internal byte[] BuildCountBody(ChatRequest request)
    {
        using var lease = PooledJsonWriter.Rent(1024);
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteStartObject("generateContentRequest"u8);
        json.WriteString("model"u8, "models/" + Transport.UpstreamModel);
        WriteRequest(json, request);
        json.WriteEndObject();
        json.WriteEndObject();
        return lease.ToArray();
    }

    /// <summary>
    /// <c>POST {BaseUrl}/models/{UpstreamModel}:batchEmbedContents</c>: one request per text, <c>dimensions</c> as
    /// <c>outputDimensionality</c>. Gemini reports no token count, so usage is Sluice's estimate.
    /// </summary>
    public async Task<EmbeddingResult> EmbedAsync(EmbeddingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        EmbeddingAnswers.RequireText(request, Transport);
        var model = "models/" + Transport.UpstreamModel;
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, PooledJsonWriter.Options))
        {
            json.WriteStartObject();
            json.WriteStartArray("requests"u8);
            foreach (var input in request.Inputs)
            {
                json.WriteStartObject();
                json.WriteString("model"u8, model);
                json.WriteStartObject("content"u8);
                json.WriteStartArray("parts"u8);
                json.WriteStartObject();
                json.WriteString("text"u8, input.Text);
                json.WriteEndObject();
                json.WriteEndArray();
                json.WriteEndObject();
                if (request.Dimensions is { } dimensions)
                {
                    json.WriteNumber("outputDimensionality"u8, dimensions);
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        var uri = new Uri($"{Transport.BaseUrl}/models/{Uri.EscapeDataString(Transport.UpstreamModel)}:batchEmbedContents");
        var answer = await UpstreamStreaming.ExchangeAsync(Transport, uri, buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);
        return new EmbeddingResult { Vectors = EmbeddingAnswers.ReadGemini(answer, request.Inputs.Count, Transport) };
    }

    /// <summary>
    /// Each data line is a whole <c>GenerateContentResponse</c>; one that is an error object is the provider's error. There
    /// is no end marker: the connection closing ends the stream, acceptable once there was content or a finish reason.
    /// </summary>
    private sealed class Decoder : UpstreamDecoder
    {
        private readonly GeminiStreamState _state = new();

        public override string EndMarker => "any content or finishReason";

        public override UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events)
        {
            if (!_state.Apply(data, events))
            {
                return UpstreamRecord.Continue;
            }

            var (message, code, status) = UpstreamStreaming.ErrorOf(data);
            return UpstreamRecord.Error(message, code, status);
        }

        public override bool Finish(List<ChatStreamEvent> events) => _state.Complete(events);
    }

    /// <summary>Maps Gemini's <c>finishReason</c> to OpenAI's <c>finish_reason</c>; unknown values are a normal stop.</summary>
    internal static string FinishReasonOf(string? finishReason, bool calledTools) => finishReason switch
    {
        "MAX_TOKENS" => FinishReasons.Length,
        "SAFETY" or "RECITATION" or "BLOCKLIST" or "PROHIBITED_CONTENT" or "SPII" or "IMAGE_SAFETY" => FinishReasons.ContentFilter,
        _ => calledTools ? FinishReasons.ToolCalls : FinishReasons.Stop,
    };

    /// <summary>The <c>streamGenerateContent</c> request for <paramref name="request"/>.</summary>
    internal override byte[] BuildBody(ChatRequest request)
    {
        using var lease = PooledJsonWriter.Rent(1024);
        var json = lease.Writer;
        json.WriteStartObject();
        WriteRequest(json, request);
        json.WriteEndObject();

        return lease.ToArray();
    }

    // The fields of a GenerateContentRequest (inside an object the caller opened).
    private void WriteRequest(Utf8JsonWriter json, ChatRequest request)
    {
        WriteContents(json, request.Messages);
        var system = string.Join("\n\n", request.Messages
            .Where(m => m.Role is ChatRoles.System or ChatRoles.Developer && !string.IsNullOrEmpty(m.Content))
            .Select(m => m.Content));
        if (system.Length > 0)
        {
            json.WriteStartObject("systemInstruction"u8);
            json.WriteStartArray("parts"u8);
            json.WriteStartObject();
            json.WriteString("text"u8, system);
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
        }

        WriteGenerationConfig(json, request);
        WriteTools(json, request);
    }

    private void WriteContents(Utf8JsonWriter json, IReadOnlyList<ChatMessage> messages)
    {
        // Tool results name the function they answer; OpenAI messages only carry the call id.
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        MergedTurns.Write(json, messages, "contents", "model", "parts", (message, i) =>
        {
            if (message.Role == ChatRoles.Tool)
            {
                json.WriteStartObject();
                json.WriteStartObject("functionResponse"u8);
                json.WriteString("name"u8, message.ToolCallId is { } id && callNames.TryGetValue(id, out var name) ? name : message.Name ?? string.Empty);
                json.WritePropertyName("response"u8);
                WriteToolResult(json, message.Content);
                json.WriteEndObject();
                json.WriteEndObject();
                return;
            }

            if (message.Parts is { } parts)
            {
                foreach (var part in parts)
                {
                    WritePart(json, part);
                }
            }
            else if (!string.IsNullOrEmpty(message.Content))
            {
                json.WriteStartObject();
                json.WriteString("text"u8, message.Content);
                json.WriteEndObject();
            }

            if (message.ToolCalls is { } calls)
            {
                for (var c = 0; c < calls.Count; c++)
                {
                    callNames[calls[c].Id] = calls[c].Name;
                    json.WriteStartObject();
                    json.WriteStartObject("functionCall"u8);
                    json.WriteString("name"u8, calls[c].Name);
                    json.WritePropertyName("args"u8);
                    AnthropicChatBackend.WriteArgumentsObject(json, calls[c].Arguments, $"messages[{i}].tool_calls[{c}].function.arguments");
                    json.WriteEndObject();
                    json.WriteEndObject();
                }
            }
        });
    }

    /// <summary>
    /// One content part as a Gemini part: <c>text</c>; inline bytes as <c>inlineData</c> (<c>mimeType</c>, <c>data</c>); a URL
    /// as <c>fileData</c> (<c>mimeType</c>, <c>fileUri</c>; the type read from the URL's extension); plain-text documents as text.
    /// </summary>
    private void WritePart(Utf8JsonWriter json, ContentPart part)
    {
        if (part.Kind == ContentPartKind.Text || part.Text is not null)
        {
            var text = part.Kind != ContentPartKind.Text && part.Filename is not null ? $"{part.Filename}\n\n{part.Text}" : part.Text;
            if (!string.IsNullOrEmpty(text))
            {
                json.WriteStartObject();
                json.WriteString("text"u8, text);
                json.WriteEndObject();
            }

            return;
        }

        if (part.FileId is not null)
        {
            throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                "a file id belongs to the provider it was uploaded to", "Send the file's bytes (base64) or a URL instead.");
        }

        json.WriteStartObject();
        if (part.Url is not null)
        {
            var mimeType = part.MediaType ?? ContentParts.MediaTypeFromUrl(part.Url)
                ?? throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                    "Gemini needs the media type of a file given by URL, and the URL's extension does not tell it",
                    "Send the bytes (base64, with their media type) instead, or a URL ending in .png, .jpg, .gif, .webp or .pdf.");
            json.WriteStartObject("fileData"u8);
            json.WriteString("mimeType"u8, mimeType);
            json.WriteString("fileUri"u8, part.Url);
        }
        else
        {
            json.WriteStartObject("inlineData"u8);
            json.WriteString("mimeType"u8, part.MediaType);
            json.WriteString("data"u8, part.Data);
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>A tool result as the object Gemini wants: the result itself if it is a JSON object, else <c>{"content": text}</c>.</summary>
    private static void WriteToolResult(Utf8JsonWriter json, string? content)
    {
        if (!string.IsNullOrWhiteSpace(content) && content.TrimStart().StartsWith('{'))
        {
            try
            {
                using var document = JsonDocument.Parse(content);
                if (document.RootElement.ValueKind == JsonValueKind.Object)
                {
                    document.RootElement.WriteTo(json);
                    return;
                }
            }
            catch (JsonException)
            {
                // Not JSON after all: send it as text.
            }
        }

        json.WriteStartObject();
        json.WriteString("content"u8, content ?? string.Empty);
        json.WriteEndObject();
    }

    private static void WriteGenerationConfig(Utf8JsonWriter json, ChatRequest request) =>
        SamplingOptionsWriter.Write(json, request, SamplingNames.Gemini, request.ResponseFormat is { IsJson: true } format
            ? config =>
            {
                // Gemini's JSON mode; a schema goes as responseSchema, in the OpenAPI subset Gemini reads.
                config.WriteString("responseMimeType"u8, "application/json"u8);
                if (format.Schema is { } schema)
                {
                    config.WritePropertyName("responseSchema"u8);
                    GeminiSchema.Write(config, schema);
                }
            }
            : null);

    private static void WriteTools(Utf8JsonWriter json, ChatRequest request)
    {
        if (request.Tools is not { Count: > 0 } tools)
        {
            return;
        }

        json.WriteStartArray("tools"u8);
        json.WriteStartObject();
        json.WriteStartArray("functionDeclarations"u8);
        foreach (var tool in tools)
        {
            json.WriteStartObject();
            json.WriteString("name"u8, tool.Name);
            if (tool.Description is not null)
            {
                json.WriteString("description"u8, tool.Description);
            }

            if (tool.Parameters is { } schema)
            {
                json.WritePropertyName("parameters"u8);
                schema.WriteTo(json);
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndArray();

        if (request.ToolChoice is not { } choice)
        {
            return;
        }

        json.WriteStartObject("toolConfig"u8);
        json.WriteStartObject("functionCallingConfig"u8);
        if (request.ForcedToolName is { } forced)
        {
            json.WriteString("mode"u8, "ANY"u8);
            json.WriteStartArray("allowedFunctionNames"u8);
            json.WriteStringValue(forced);
            json.WriteEndArray();
        }
        else
        {
            json.WriteString("mode"u8, (choice.ValueKind == JsonValueKind.String ? choice.GetString() : null) switch
            {
                "required" => "ANY",
                "none" => "NONE",
                _ => "AUTO",
            });
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }
}
