using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;

namespace Sluice.Providers.Upstream;

/// <summary>
/// Anthropic's Messages API: <c>POST {BaseUrl}/messages</c> with <c>x-api-key</c> and
/// <c>anthropic-version: 2023-06-01</c>, always streamed.
/// </summary>
/// <remarks>
/// Requests: system and developer messages become <c>system</c>; assistant tool calls become <c>tool_use</c> blocks
/// and tool messages <c>tool_result</c> blocks (consecutive ones merged into one user turn, as the API requires);
/// <c>max_tokens</c> defaults to the model's <see cref="ModelOptions.MaxOutputTokens"/>. Streams: text deltas,
/// <c>tool_use</c> blocks as OpenAI tool-call deltas, <c>stop_reason</c> as finish reason, usage from
/// <c>message_start</c>/<c>message_delta</c>; <c>ping</c>, thinking and other block types are skipped; an <c>error</c>
/// event is an error; the stream must reach <c>message_stop</c>.
/// <para>An Anthropic client's request (<see cref="ChatRequest.AnthropicBody"/>) is not translated: its own body goes up
/// (model and <c>stream</c> replaced) with its <c>anthropic-beta</c> header, and for a consumer that writes Anthropic
/// events (<see cref="ChatCallOptions.AcceptsAnthropicBlocks"/>) each content-block event goes on as it came
/// (<see cref="AnthropicBlockEvent"/>), thinking and every other block type included. Its <c>count_tokens</c> is
/// Anthropic's own.</para>
/// </remarks>
public sealed class AnthropicChatBackend : UpstreamChatBackend, IPromptTokenCounter
{
    /// <summary>The <c>Provider</c> value.</summary>
    public const string ProviderName = "anthropic";

    /// <summary>The API version sent as <c>anthropic-version</c>.</summary>
    public const string ApiVersion = "2023-06-01";

    /// <summary>Creates the adapter and its connection pool.</summary>
    /// <param name="options">The model entry (BaseUrl required, e.g. <c>https://api.anthropic.com/v1</c>).</param>
    /// <param name="apiKey">The API key, or null when a proxy adds it.</param>
    public AnthropicChatBackend(ModelOptions options, string? apiKey)
        : this(UpstreamTransport.Create(options, "Anthropic", apiKey, "text/event-stream", "x-api-key", otherHeaders: new KeyValuePair<string, string>("anthropic-version", ApiVersion)))
    {
    }

    private readonly Uri _countEndpoint;

    private AnthropicChatBackend(UpstreamTransport transport)
        : base(transport, new Uri(transport.BaseUrl + "/messages"), UpstreamFraming.ServerSentEvents)
    {
        _countEndpoint = new Uri(transport.BaseUrl + "/messages/count_tokens");
    }

    /// <summary>
    /// Anthropic's own count: <c>POST {BaseUrl}/messages/count_tokens</c> with the request as it would be sent (model,
    /// system, messages, tools and tool choice — the fields that endpoint takes), its <c>input_tokens</c> returned.
    /// </summary>
    public async ValueTask<int> CountPromptTokensAsync(ChatRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var answer = await UpstreamStreaming.ExchangeAsync(Transport, _countEndpoint, BuildBody(request, counting: true), cancellationToken, HeaderFor(request)).ConfigureAwait(false);
        return UpstreamStreaming.ReadTokenCount(answer, "input_tokens", Transport);
    }

    private protected override UpstreamDecoder CreateDecoder(ChatRequest request, ChatCallOptions options) =>
        new Decoder(StructuredOutputTool(request), options.AcceptsAnthropicBlocks && UsesClientBody(request));

    private protected override bool SendsClientBody(ChatRequest request) => UsesClientBody(request);

    private protected override KeyValuePair<string, string>? HeaderFor(ChatRequest request) =>
        UsesClientBody(request) && request.AnthropicBeta is { Length: > 0 } beta && !beta.AsSpan().ContainsAnyInRange('\0', '\u001f')
            ? new("anthropic-beta", beta)
            : null;

    /// <summary>
    /// Whether the client's own Messages body goes upstream (an Anthropic-dialect request): everything it says —
    /// <c>thinking</c>, <c>cache_control</c>, fields Sluice does not model — reaches Anthropic, with only the model and
    /// <c>stream</c> replaced. A structured answer Sluice emulates with a forced tool is built instead.
    /// </summary>
    internal static bool UsesClientBody(ChatRequest request) => !request.AnthropicBody.IsEmpty && StructuredOutputTool(request) is null;

    // The fields Anthropic's count_tokens takes (it refuses max_tokens, sampling settings, metadata and stream).
    private static readonly string[] CountFields = ["messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"];

    /// <summary>
    /// The forced tool that carries a structured answer (<see cref="ChatRequest.ResponseFormat"/>): Anthropic has no JSON
    /// mode, but a tool's input always follows its <c>input_schema</c> — so the schema becomes a tool the model must
    /// call, and the call's input is unwrapped back into the answer's text. Named after the schema.
    /// </summary>
    internal static string? StructuredOutputTool(ChatRequest request) =>
        request.ResponseFormat is { IsJson: true } format ? format.Name ?? "json_answer" : null;

    /// <summary>Message events into stream events; an <c>error</c> event is the provider's error; <c>message_stop</c> ends.</summary>
    /// <remarks>
    /// With <paramref name="native"/> (an Anthropic client, its own body sent), each content-block event goes on as an
    /// <see cref="AnthropicBlockEvent"/> — its exact bytes and what it means — so thinking, signatures and citations
    /// reach the client; message_start and the end still go through the stream state like any other answer's.
    /// </remarks>
    private sealed class Decoder(string? structuredTool, bool native) : UpstreamDecoder
    {
        private readonly StreamState _state = new(structuredTool);
        private readonly List<ChatStreamEvent> _meaning = new(2);

        public override string EndMarker => "message_stop";

        public override string RecordName => "an event";

        public override UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events)
        {
            var parsed = AnthropicEvent.Parse(data);
            if (parsed.Type == AnthropicEventType.Error)
            {
                return UpstreamRecord.Error(parsed.ErrorMessage, parsed.ErrorType, StatusOf(parsed.ErrorType));
            }

            if (native && BlockEventType(parsed.Type) is { } blockType)
            {
                // message_start's facts go out first, with the first block whatever it means (thinking means nothing here).
                _meaning.Clear();
                _state.Apply(parsed, _meaning);
                var opens = _meaning.Count > 0 && _meaning[0] is AnswerStartEvent;
                if ((opens ? _meaning[0] : _state.TakePendingStart()) is { } start)
                {
                    events.Add(start);
                }

                // What the block means, without the opening facts the state put first (one array per event, no LINQ).
                var skip = opens ? 1 : 0;
                var meaning = _meaning.Count == skip ? [] : new ChatStreamEvent[_meaning.Count - skip];
                _meaning.CopyTo(skip, meaning, 0, meaning.Length);
                events.Add(new AnthropicBlockEvent(blockType, parsed.Index, data.ToArray(), meaning));
                return UpstreamRecord.Continue;
            }

            _state.Apply(parsed, events);
            return _state.Stopped ? UpstreamRecord.End : UpstreamRecord.Continue;
        }

        private static string? BlockEventType(AnthropicEventType type) => type switch
        {
            AnthropicEventType.ContentBlockStart => "content_block_start",
            AnthropicEventType.ContentBlockDelta => "content_block_delta",
            AnthropicEventType.ContentBlockStop => "content_block_stop",
            _ => null,
        };
    }

    /// <summary>The Messages API request for <paramref name="request"/>.</summary>
    internal override byte[] BuildBody(ChatRequest request) => BuildBody(request, counting: false);

    // counting: the count_tokens request, which refuses the generation fields (max_tokens, sampling, stop, metadata, stream).
    private byte[] BuildBody(ChatRequest request, bool counting)
    {
        if (UsesClientBody(request))
        {
            return ClientBody(request, counting);
        }

        using var lease = PooledJsonWriter.Rent(1024);
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, Transport.UpstreamModel);
        if (!counting)
        {
            json.WriteNumber("max_tokens"u8, request.MaxTokens ?? Transport.Options.MaxOutputTokens);
        }

        var system = string.Join("\n\n", request.Messages
            .Where(m => m.Role is ChatRoles.System or ChatRoles.Developer && !string.IsNullOrEmpty(m.Content))
            .Select(m => m.Content));
        if (system.Length > 0)
        {
            json.WriteString("system"u8, system);
        }

        WriteMessages(json, request.Messages);
        if (counting)
        {
            WriteTools(json, request);
            json.WriteEndObject();
            return lease.ToArray();
        }

        if (request.Temperature is { } temperature)
        {
            json.WriteNumber("temperature"u8, temperature);
        }

        if (request.TopP is { } topP)
        {
            json.WriteNumber("top_p"u8, topP);
        }

        if (request.TopK is { } topK)
        {
            json.WriteNumber("top_k"u8, topK);
        }

        if (request.Stop is { Count: > 0 } stop)
        {
            json.WriteStartArray("stop_sequences"u8);
            foreach (var sequence in stop)
            {
                json.WriteStringValue(sequence);
            }

            json.WriteEndArray();
        }

        WriteTools(json, request);
        if (request.User is not null)
        {
            json.WriteStartObject("metadata"u8);
            json.WriteString("user_id"u8, request.User);
            json.WriteEndObject();
        }

        json.WriteBoolean("stream"u8, true);
        json.WriteEndObject();

        return lease.ToArray();
    }

    // The client's Messages body with the upstream's model name and stream on (for counting: only the fields counted).
    private byte[] ClientBody(ChatRequest request, bool counting)
    {
        var raw = request.AnthropicBody.Span;
        using var lease = PooledJsonWriter.Rent(raw.Length + 64);
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, Transport.UpstreamModel);
        EmbeddingAnswers.CopyFields(json, raw, counting ? static name => CountFields.Contains(name, StringComparer.Ordinal) : static name => name is not ("model" or "stream"));
        if (!counting)
        {
            json.WriteBoolean("stream"u8, true);
        }

        json.WriteEndObject();
        return lease.ToArray();
    }

    private void WriteMessages(Utf8JsonWriter json, IReadOnlyList<ChatMessage> messages) =>
        MergedTurns.Write(json, messages, "messages", "assistant", "content", (message, i) =>
        {
            if (message.Role == ChatRoles.Tool)
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "tool_result"u8);
                json.WriteString("tool_use_id"u8, message.ToolCallId);
                json.WriteString("content"u8, message.Content ?? string.Empty);
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
                json.WriteString("type"u8, "text"u8);
                json.WriteString("text"u8, message.Content);
                json.WriteEndObject();
            }

            if (message.ToolCalls is { } calls)
            {
                for (var c = 0; c < calls.Count; c++)
                {
                    json.WriteStartObject();
                    json.WriteString("type"u8, "tool_use"u8);
                    json.WriteString("id"u8, calls[c].Id);
                    json.WriteString("name"u8, calls[c].Name);
                    json.WritePropertyName("input"u8);
                    WriteArgumentsObject(json, calls[c].Arguments, $"messages[{i}].tool_calls[{c}].function.arguments");
                    json.WriteEndObject();
                }
            }
        });

    /// <summary>
    /// One content part as an Anthropic block: <c>text</c>; <c>image</c> with a base64 or url source; <c>document</c> with a
    /// base64 (PDF), text or url source and the file name as its title. Other documents and provider file ids are refused.
    /// </summary>
    private void WritePart(Utf8JsonWriter json, ContentPart part)
    {
        if (part.Kind == ContentPartKind.Text)
        {
            if (!string.IsNullOrEmpty(part.Text))
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "text"u8);
                json.WriteString("text"u8, part.Text);
                json.WriteEndObject();
            }

            return;
        }

        if (part.FileId is not null)
        {
            throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                "a file id belongs to the provider it was uploaded to", "Send the file's bytes (base64) or a URL instead.");
        }

        var isPdf = part.MediaType is null or "application/pdf";
        if (part.Kind == ContentPartKind.Document && part.Data is not null && !isPdf && part.MediaType != "text/plain")
        {
            throw AttachmentSupport.Refuse(part, Transport.Options.Name, Transport.ProviderLabel,
                "Anthropic takes PDF and plain-text documents", "Convert the document to PDF or text.");
        }

        json.WriteStartObject();
        json.WriteString("type"u8, part.Kind == ContentPartKind.Image ? "image"u8 : "document"u8);
        json.WriteStartObject("source"u8);
        if (part.Url is not null)
        {
            json.WriteString("type"u8, "url"u8);
            json.WriteString("url"u8, part.Url);
        }
        else if (part.Text is not null || part.MediaType == "text/plain")
        {
            json.WriteString("type"u8, "text"u8);
            json.WriteString("media_type"u8, "text/plain"u8);
            json.WriteString("data"u8, part.Text ?? System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(part.Data!)));
        }
        else
        {
            json.WriteString("type"u8, "base64"u8);
            json.WriteString("media_type"u8, part.MediaType ?? "application/pdf");
            json.WriteString("data"u8, part.Data);
        }

        json.WriteEndObject();
        if (part.Kind == ContentPartKind.Document && part.Filename is not null)
        {
            json.WriteString("title"u8, part.Filename);
        }

        json.WriteEndObject();
    }

    /// <summary>Writes tool-call arguments (JSON text) as the object Anthropic and Gemini expect.</summary>
    internal static void WriteArgumentsObject(Utf8JsonWriter json, string arguments, string param)
    {
        if (string.IsNullOrWhiteSpace(arguments))
        {
            json.WriteStartObject();
            json.WriteEndObject();
            return;
        }

        try
        {
            using var document = JsonDocument.Parse(arguments);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw ChatException.BadRequest($"{param} must be a JSON object.", param, "invalid_value");
            }

            document.RootElement.WriteTo(json);
        }
        catch (JsonException ex)
        {
            throw new ChatException(400, new ErrorInfo(
                $"{param} is not valid JSON ({ex.Message}). Send the arguments the model produced, unchanged.",
                ErrorTypes.InvalidRequest, param, "invalid_value"), inner: ex);
        }
    }

    private static void WriteTools(Utf8JsonWriter json, ChatRequest request)
    {
        var structured = StructuredOutputTool(request);
        if (request.Tools is not { Count: > 0 } && structured is null)
        {
            return;
        }

        var tools = request.Tools ?? [];
        if (structured is not null && tools.Any(t => t.Name == structured))
        {
            throw ChatException.BadRequest(
                $"The response format's name \"{structured}\" is also a tool's name; Sluice asks Anthropic for the structured answer through a tool of that name. Rename the schema or the tool.",
                "response_format", "invalid_value");
        }

        json.WriteStartArray("tools"u8);
        if (structured is not null)
        {
            json.WriteStartObject();
            json.WriteString("name"u8, structured);
            json.WriteString("description"u8, request.ResponseFormat!.Description is { } what
                ? $"Give your answer as this tool's input. {what}"
                : "Give your answer as this tool's input: it is the whole reply.");
            json.WritePropertyName("input_schema"u8);
            if (request.ResponseFormat.Schema is { } answerSchema)
            {
                answerSchema.WriteTo(json);
            }
            else
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "object"u8);
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        foreach (var tool in tools)
        {
            json.WriteStartObject();
            json.WriteString("name"u8, tool.Name);
            if (tool.Description is not null)
            {
                json.WriteString("description"u8, tool.Description);
            }

            json.WritePropertyName("input_schema"u8);
            if (tool.Parameters is { } schema)
            {
                schema.WriteTo(json);
            }
            else
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "object"u8);
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        if (structured is not null)
        {
            // The answer must come through its tool: forced, unless the client's own tools may be called first.
            var others = tools.Count > 0 && request.ForcedToolName is null
                && !(request.ToolChoice is { ValueKind: JsonValueKind.String } c && c.GetString() == "none");
            json.WriteStartObject("tool_choice"u8);
            if (request.ForcedToolName is { } forcedTool)
            {
                json.WriteString("type"u8, "tool"u8);
                json.WriteString("name"u8, forcedTool);
            }
            else if (others)
            {
                json.WriteString("type"u8, "any"u8);
            }
            else
            {
                json.WriteString("type"u8, "tool"u8);
                json.WriteString("name"u8, structured);
            }

            json.WriteEndObject();
            return;
        }

        if (request.ToolChoice is not { } choice)
        {
            return;
        }

        json.WriteStartObject("tool_choice"u8);
        if (request.ForcedToolName is { } forced)
        {
            json.WriteString("type"u8, "tool"u8);
            json.WriteString("name"u8, forced);
        }
        else
        {
            var value = choice.ValueKind == JsonValueKind.String ? choice.GetString() : "auto";
            json.WriteString("type"u8, value switch
            {
                "required" => "any",
                "none" => "none",
                _ => "auto",
            });
        }

        json.WriteEndObject();
    }

    private static int? StatusOf(string? errorType) => errorType switch
    {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "rate_limit_error" => 429,
        _ => null,
    };

    /// <summary>Maps Anthropic's <c>stop_reason</c> to OpenAI's <c>finish_reason</c>.</summary>
    internal static string FinishReasonOf(string? stopReason) => AnthropicStopReasons.ToFinishReason(stopReason);

    /// <summary>What the stream has said so far, and the events each upstream event turns into.</summary>
    private sealed class StreamState(string? structuredTool)
    {
        private readonly Dictionary<int, ToolBlock> _toolBlocks = [];
        private readonly HashSet<int> _answerBlocks = [];
        private int _promptTokens;
        private int _cacheRead;
        private int _cacheCreation;
        private int _completionTokens;
        private bool _hasUsage;
        private string? _stopReason;
        private string? _stopSequence;
        private bool _answeredJson;
        private string? _stopDetails;

        // message_start's facts go out with the first event of the answer, never alone: an error event right after
        // message_start must still fail the request before anything was sent (real status, fallback possible).
        private AnswerStartEvent? _pendingStart;

        public bool Stopped { get; private set; }

        /// <summary>message_start's facts, if they have not gone out yet (for a block passed through whatever it means).</summary>
        public AnswerStartEvent? TakePendingStart()
        {
            var start = _pendingStart;
            _pendingStart = null;
            return start;
        }

        public void Apply(in AnthropicEvent e, List<ChatStreamEvent> output)
        {
            var before = output.Count;
            switch (e.Type)
            {
                case AnthropicEventType.MessageStart:
                    if (e.HasUsage)
                    {
                        _hasUsage = true;
                        _promptTokens = e.InputTokens;
                        _cacheRead = e.CacheReadTokens;
                        _cacheCreation = e.CacheCreationTokens;
                        _completionTokens = e.OutputTokens;
                    }

                    _pendingStart = new AnswerStartEvent(e.MessageId, e.HasUsage ? Usage() : null) { ServiceTier = e.ServiceTier };
                    break;
                case AnthropicEventType.ContentBlockStart when e.BlockType == "tool_use" && structuredTool is not null && e.ToolName == structuredTool:
                    // The structured answer's forced tool: its input is the answer's text.
                    _answerBlocks.Add(e.Index);
                    break;
                case AnthropicEventType.ContentBlockDelta when e.DeltaType == "input_json_delta" && _answerBlocks.Contains(e.Index):
                    if (!string.IsNullOrEmpty(e.PartialJson))
                    {
                        _answeredJson = true;
                        output.Add(new TextDeltaEvent(e.PartialJson));
                    }

                    break;
                case AnthropicEventType.ContentBlockStop when _answerBlocks.Contains(e.Index):
                    if (!_answeredJson)
                    {
                        _answeredJson = true;
                        output.Add(new TextDeltaEvent("{}"));
                    }

                    break;
                case AnthropicEventType.ContentBlockStart when e.BlockType == "tool_use":
                    var toolIndex = _toolBlocks.Count;
                    _toolBlocks[e.Index] = new ToolBlock(toolIndex);
                    output.Add(new ToolCallDeltaEvent(toolIndex, e.ToolId ?? UpstreamStreaming.NewToolCallId(), e.ToolName ?? string.Empty, string.Empty));
                    break;
                case AnthropicEventType.ContentBlockStart or AnthropicEventType.ContentBlockDelta when structuredTool is not null && !_answerBlocks.Contains(e.Index) && e.BlockType is "text" or null && e.DeltaType is "text_delta" or null && !string.IsNullOrEmpty(e.Text):
                    // With a structured answer, the forced tool's input is the whole reply: text around it is left out.
                    break;
                case AnthropicEventType.ContentBlockStart when e.BlockType == "text" && !string.IsNullOrEmpty(e.Text):
                    output.Add(new TextDeltaEvent(e.Text));
                    break;
                case AnthropicEventType.ContentBlockDelta when e.DeltaType == "text_delta" && !string.IsNullOrEmpty(e.Text):
                    output.Add(new TextDeltaEvent(e.Text));
                    break;
                case AnthropicEventType.ContentBlockDelta when e.DeltaType == "input_json_delta" && !string.IsNullOrEmpty(e.PartialJson):
                    if (_toolBlocks.TryGetValue(e.Index, out var block))
                    {
                        block.HasArguments = true;
                        output.Add(new ToolCallDeltaEvent(block.ToolIndex, null, null, e.PartialJson));
                    }

                    break;
                case AnthropicEventType.ContentBlockStop:
                    if (_toolBlocks.TryGetValue(e.Index, out var finished) && !finished.HasArguments)
                    {
                        // A call without parameters streams no JSON at all; OpenAI clients expect an object.
                        finished.HasArguments = true;
                        output.Add(new ToolCallDeltaEvent(finished.ToolIndex, null, null, "{}"));
                    }

                    break;
                case AnthropicEventType.MessageDelta:
                    _stopReason = e.StopReason ?? _stopReason;
                    _stopSequence = e.StopSequence ?? _stopSequence;
                    _stopDetails = e.StopDetailsJson ?? _stopDetails;
                    if (e.HasUsage)
                    {
                        _hasUsage = true;
                        _completionTokens = e.OutputTokens;
                        if (e.HasInputTokens)
                        {
                            _promptTokens = e.InputTokens;
                            _cacheRead = e.CacheReadTokens;
                            _cacheCreation = e.CacheCreationTokens;
                        }
                    }

                    break;
                case AnthropicEventType.MessageStop:
                    Stopped = true;
                    // A structured answer "calls" its tool, but for the client it is a finished text answer.
                    var reason = _stopReason == "tool_use" && _answerBlocks.Count > 0 && _toolBlocks.Count == 0 ? "end_turn" : _stopReason;
                    output.Add(new FinishEvent(FinishReasonOf(reason))
                    {
                        StopSequence = _stopReason == "stop_sequence" ? _stopSequence : null,
                        StopDetailsJson = _stopDetails,
                        AnthropicStopReason = reason,
                    });
                    if (_hasUsage)
                    {
                        output.Add(new UsageEvent(Usage()));
                    }

                    break;
            }

            if (_pendingStart is not null && output.Count > before)
            {
                output.Insert(before, _pendingStart);
                _pendingStart = null;
            }
        }

        private ChatUsage Usage() =>
            new(_promptTokens, _completionTokens) { Details = ChatUsageDetails.Of(_cacheRead, _cacheCreation, 0) };

        private sealed class ToolBlock(int toolIndex)
        {
            public int ToolIndex { get; } = toolIndex;

            public bool HasArguments { get; set; }
        }
    }
}
