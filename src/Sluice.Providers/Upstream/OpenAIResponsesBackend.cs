using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Providers.Upstream;

/// <summary>
/// An OpenAI upstream that speaks the Responses API (<c>"Api": "responses"</c> on an <c>openai</c> model):
/// <c>POST {BaseUrl}/responses</c> with a Bearer key, always streamed.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A Responses request is passed through: the client's body with only <c>model</c>, <c>stream</c> (always true)
/// and — when Sluice resolved <c>previous_response_id</c> from its own store — <c>input</c> (the whole conversation)
/// replaced and <c>previous_response_id</c> left out. Every other dialect's request is built from its parsed fields
/// (messages as input items, function tools, <c>text.format</c>, <c>store: false</c>).</item>
/// <item>Events: for a consumer that writes the Responses format (<see cref="ChatCallOptions.AcceptsResponsesEvents"/>)
/// each event goes on as a <see cref="ResponsesEvent"/> (its exact bytes); everyone else gets the decoded answer —
/// text and refusal deltas, function calls as tool-call deltas, the finish reason and usage from the terminal
/// event.</item>
/// <item>The stream ends with <c>response.completed</c> or <c>response.incomplete</c>; <c>response.failed</c> (and an
/// <c>error</c> event) is the provider's error; a body that ends before a terminal event ended early.</item>
/// </list>
/// </remarks>
public sealed class OpenAIResponsesBackend : UpstreamChatBackend
{
    /// <summary>The <c>Api</c> value that selects this adapter.</summary>
    public const string ApiName = "responses";

    /// <summary>Creates the adapter and its connection pool.</summary>
    /// <param name="options">The model entry (BaseUrl required, e.g. <c>https://api.openai.com/v1</c>).</param>
    /// <param name="apiKey">The API key, or null for keyless servers.</param>
    public OpenAIResponsesBackend(ModelOptions options, string? apiKey)
        : this(UpstreamTransport.Create(options, "OpenAI Responses", apiKey, "text/event-stream", "Authorization", "Bearer "))
    {
    }

    private OpenAIResponsesBackend(UpstreamTransport transport)
        : base(transport, new Uri(transport.BaseUrl + "/responses"), UpstreamFraming.ServerSentEvents)
    {
    }

    private protected override bool ReturnsLogprobs => true;

    private protected override UpstreamDecoder CreateDecoder(ChatRequest request, ChatCallOptions options) =>
        new Decoder(options.AcceptsResponsesEvents);

    /// <summary>The <c>/responses</c> request body for <paramref name="request"/>.</summary>
    internal override byte[] BuildBody(ChatRequest request)
    {
        using var lease = PooledJsonWriter.Rent(Math.Max(512, request.ResponsesBody.Length + 256));
        var json = lease.Writer;
        json.WriteStartObject();
        json.WriteString("model"u8, Transport.UpstreamModel);
        if (!request.ResponsesBody.IsEmpty)
        {
            CopyClientFields(json, request.ResponsesBody.Span, replaceInput: request.ResponsesInput is not null);
            if (request.ResponsesInput is { } input)
            {
                json.WritePropertyName("input"u8);
                input.WriteTo(json);
            }
        }
        else
        {
            WriteParsed(json, request);
        }

        json.WriteBoolean("stream"u8, true);
        json.WriteEndObject();

        return lease.ToArray();
    }

    private static void CopyClientFields(Utf8JsonWriter json, ReadOnlySpan<byte> raw, bool replaceInput)
    {
        var reader = new Utf8JsonReader(raw, new JsonReaderOptions { MaxDepth = 256 });
        reader.Read();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            // previous_response_id is resolved by Sluice (its store is owner-scoped): the upstream gets the conversation.
            var replaced = reader.ValueTextEquals("model"u8) || reader.ValueTextEquals("stream"u8)
                || reader.ValueTextEquals("previous_response_id"u8) || (replaceInput && reader.ValueTextEquals("input"u8));
            if (replaced)
            {
                reader.Read();
                reader.Skip();
                continue;
            }

            if (reader.ValueIsEscaped)
            {
                json.WritePropertyName(reader.GetString()!);
            }
            else
            {
                json.WritePropertyName(reader.ValueSpan);
            }

            reader.Read();
            var start = (int)reader.TokenStartIndex;
            reader.Skip();
            json.WriteRawValue(raw[start..(int)reader.BytesConsumed], skipInputValidation: true);
        }
    }

    /// <summary>
    /// Content parts as Responses input parts: <c>input_text</c> (plain-text documents too), <c>input_image</c>
    /// (<c>image_url</c> as a URL or data URL, or <c>file_id</c>) and <c>input_file</c> (<c>file_data</c>, <c>file_url</c> or <c>file_id</c>).
    /// </summary>
    private static void WriteParts(Utf8JsonWriter json, IReadOnlyList<ContentPart> parts)
    {
        json.WriteStartArray("content"u8);
        foreach (var part in parts)
        {
            json.WriteStartObject();
            if (part.Kind == ContentPartKind.Text || part.Text is not null)
            {
                json.WriteString("type"u8, "input_text"u8);
                json.WriteString("text"u8, part.Kind != ContentPartKind.Text && part.Filename is not null ? $"{part.Filename}\n\n{part.Text}" : part.Text);
            }
            else if (part.Kind == ContentPartKind.Image)
            {
                json.WriteString("type"u8, "input_image"u8);
                if (part.FileId is not null)
                {
                    json.WriteString("file_id"u8, part.FileId);
                }
                else
                {
                    json.WriteString("image_url"u8, part.Url ?? AttachmentSupport.DataUrl(part));
                }

                json.WriteString("detail"u8, part.Detail ?? "auto");
            }
            else
            {
                json.WriteString("type"u8, "input_file"u8);
                if (part.FileId is not null)
                {
                    json.WriteString("file_id"u8, part.FileId);
                }
                else if (part.Url is not null)
                {
                    json.WriteString("file_url"u8, part.Url);
                }
                else
                {
                    json.WriteString("file_data"u8, AttachmentSupport.DataUrl(part));
                    json.WriteString("filename"u8, part.Filename ?? (part.MediaType == "application/pdf" ? "document.pdf" : "document"));
                }
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    private static void WriteParsed(Utf8JsonWriter json, ChatRequest request)
    {
        json.WriteStartArray("input"u8);
        foreach (var message in request.Messages)
        {
            if (message.Role == ChatRoles.Tool)
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "function_call_output"u8);
                json.WriteString("call_id"u8, message.ToolCallId ?? string.Empty);
                json.WriteString("output"u8, message.Content ?? string.Empty);
                json.WriteEndObject();
                continue;
            }

            if (message.Parts is { } parts)
            {
                json.WriteStartObject();
                json.WriteString("role"u8, message.Role);
                WriteParts(json, parts);
                json.WriteEndObject();
            }
            else if (!string.IsNullOrEmpty(message.Content) || message.ToolCalls is not { Count: > 0 })
            {
                json.WriteStartObject();
                json.WriteString("role"u8, message.Role);
                json.WriteString("content"u8, message.Content ?? string.Empty);
                json.WriteEndObject();
            }

            foreach (var call in message.ToolCalls ?? [])
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "function_call"u8);
                json.WriteString("call_id"u8, call.Id);
                json.WriteString("name"u8, call.Name);
                json.WriteString("arguments"u8, call.Arguments);
                json.WriteEndObject();
            }
        }

        json.WriteEndArray();
        if (request.Tools is { Count: > 0 } tools)
        {
            json.WriteStartArray("tools"u8);
            foreach (var tool in tools)
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "function"u8);
                json.WriteString("name"u8, tool.Name);
                if (tool.Description is not null)
                {
                    json.WriteString("description"u8, tool.Description);
                }

                if (tool.Parameters is { } parameters)
                {
                    json.WritePropertyName("parameters"u8);
                    parameters.WriteTo(json);
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        if (request.ToolChoice is { } choice)
        {
            if (request.ForcedToolName is { } forced)
            {
                json.WriteStartObject("tool_choice"u8);
                json.WriteString("type"u8, "function"u8);
                json.WriteString("name"u8, forced);
                json.WriteEndObject();
            }
            else if (choice.ValueKind == JsonValueKind.String)
            {
                json.WriteString("tool_choice"u8, choice.GetString());
            }
        }

        if (request.MaxTokens is { } max)
        {
            json.WriteNumber("max_output_tokens"u8, max);
        }

        if (request.Temperature is { } temperature)
        {
            json.WriteNumber("temperature"u8, temperature);
        }

        if (request.TopP is { } topP)
        {
            json.WriteNumber("top_p"u8, topP);
        }

        if (request.ParallelToolCalls is { } parallel)
        {
            json.WriteBoolean("parallel_tool_calls"u8, parallel);
        }

        if (request.User is not null)
        {
            json.WriteString("user"u8, request.User);
        }

        if (request.Logprobs)
        {
            json.WriteStartArray("include"u8);
            json.WriteStringValue("message.output_text.logprobs"u8);
            json.WriteEndArray();
            if (request.TopLogprobs is { } top)
            {
                json.WriteNumber("top_logprobs"u8, top);
            }
        }

        if (request.ResponseFormat is { } format)
        {
            json.WriteStartObject("text"u8);
            json.WriteStartObject("format"u8);
            json.WriteString("type"u8, format.Type);
            if (format.Type == ResponseFormat.JsonSchemaType)
            {
                json.WriteString("name"u8, format.Name ?? "answer");
                if (format.Description is not null)
                {
                    json.WriteString("description"u8, format.Description);
                }

                if (format.Schema is { } schema)
                {
                    json.WritePropertyName("schema"u8);
                    schema.WriteTo(json);
                }

                if (format.Strict is { } strict)
                {
                    json.WriteBoolean("strict"u8, strict);
                }
            }

            json.WriteEndObject();
            json.WriteEndObject();
        }

        // Sluice keeps conversations itself; the upstream need not store what it built from another dialect.
        json.WriteBoolean("store"u8, false);
    }

    /// <summary>One response's events, decoded (and, for a Responses consumer, passed on as they are).</summary>
    private sealed class Decoder(bool passThrough) : UpstreamDecoder
    {
        private readonly Dictionary<string, (int ToolIndex, bool HasDeltas)> _calls = new(StringComparer.Ordinal);
        private readonly List<ChatStreamEvent> _inner = new(2);
        private bool _textSeen;
        private bool _messageHasText;

        public override string EndMarker => "response.completed (or response.incomplete)";

        public override string RecordName => "an event";

        public override UpstreamRecord Decode(ReadOnlySpan<byte> data, ReadOnlySpan<byte> eventType, List<ChatStreamEvent> events)
        {
            using var document = JsonDocument.Parse(data.ToArray());
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new JsonException("An event must be a JSON object.");
            }

            var type = Text(root, "type") ?? System.Text.Encoding.UTF8.GetString(eventType);
            _inner.Clear();
            var record = Translate(type, root, _inner);
            if (passThrough)
            {
                events.Add(new ResponsesEvent(type, data.ToArray(), [.. _inner]));
            }
            else
            {
                events.AddRange(_inner);
            }

            return record;
        }

        private UpstreamRecord Translate(string type, JsonElement root, List<ChatStreamEvent> output)
        {
            switch (type)
            {
                case "response.output_item.added" when root.TryGetProperty("item", out var item):
                    var itemType = Text(item, "type");
                    if (itemType == "function_call")
                    {
                        var id = Text(item, "id") ?? Text(item, "call_id") ?? string.Empty;
                        var arguments = Text(item, "arguments");
                        _calls[id] = (_calls.Count, !string.IsNullOrEmpty(arguments));
                        output.Add(new ToolCallDeltaEvent(_calls[id].ToolIndex, Text(item, "call_id") ?? UpstreamStreaming.NewToolCallId(), Text(item, "name") ?? string.Empty, arguments ?? string.Empty));
                    }
                    else if (itemType == "message")
                    {
                        _messageHasText = false;
                    }

                    break;
                case "response.output_text.delta":
                    var delta = Text(root, "delta");
                    if (!string.IsNullOrEmpty(delta))
                    {
                        // Two message items (commentary, then the answer) read as two paragraphs in a single-text dialect.
                        var separated = _textSeen && !_messageHasText ? "\n\n" + delta : delta;
                        _textSeen = _messageHasText = true;
                        List<TokenLogprob>? logprobs = null;
                        if (root.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.Array && lp.GetArrayLength() > 0)
                        {
                            var wrapped = "{\"content\":" + lp.GetRawText() + "}";
                            var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(wrapped));
                            reader.Read();
                            logprobs = OpenAILogprobs.Read(ref reader);
                        }

                        output.Add(new TextDeltaEvent(separated) { Logprobs = logprobs });
                    }

                    break;
                case "response.refusal.delta":
                    if (Text(root, "delta") is { Length: > 0 } refusal)
                    {
                        output.Add(new RefusalDeltaEvent(refusal));
                    }

                    break;
                case "response.function_call_arguments.delta":
                    if (Text(root, "item_id") is { } deltaItem && _calls.TryGetValue(deltaItem, out var call) && Text(root, "delta") is { Length: > 0 } fragment)
                    {
                        _calls[deltaItem] = (call.ToolIndex, true);
                        output.Add(new ToolCallDeltaEvent(call.ToolIndex, null, null, fragment));
                    }

                    break;
                case "response.function_call_arguments.done":
                    if (Text(root, "item_id") is { } doneItem && _calls.TryGetValue(doneItem, out var whole) && !whole.HasDeltas)
                    {
                        _calls[doneItem] = (whole.ToolIndex, true);
                        output.Add(new ToolCallDeltaEvent(whole.ToolIndex, null, null, Text(root, "arguments") ?? "{}"));
                    }

                    break;
                case "response.completed" or "response.incomplete":
                    var response = root.TryGetProperty("response", out var r) ? r : default;
                    var reason = type == "response.completed"
                        ? _calls.Count > 0 ? FinishReasons.ToolCalls : FinishReasons.Stop
                        : IncompleteReason(response) == "content_filter" ? FinishReasons.ContentFilter : FinishReasons.Length;
                    output.Add(new FinishEvent(reason));
                    if (response.ValueKind == JsonValueKind.Object && response.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                    {
                        output.Add(new UsageEvent(new ChatUsage(Int(usage, "input_tokens"), Int(usage, "output_tokens"))
                        {
                            Details = ChatUsageDetails.Of(Detail(usage, "input_tokens_details", "cached_tokens"), 0, Detail(usage, "output_tokens_details", "reasoning_tokens")),
                        }));
                    }

                    return UpstreamRecord.End;
                case "response.failed":
                    var failed = root.TryGetProperty("response", out var f) && f.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object ? error : default;
                    return UpstreamRecord.Error(
                        failed.ValueKind == JsonValueKind.Object ? Text(failed, "message") : "The upstream reported the response as failed.",
                        failed.ValueKind == JsonValueKind.Object ? Text(failed, "code") : null);
                case "error" when !passThrough:
                    // The error event comes before response.failed; a Responses consumer gets both as they are.
                    var nested = root.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object ? e : root;
                    return UpstreamRecord.Error(Text(nested, "message"), Text(nested, "code") ?? Text(nested, "type"));
            }

            return UpstreamRecord.Continue;
        }

        private static string? IncompleteReason(JsonElement response) =>
            response.ValueKind == JsonValueKind.Object && response.TryGetProperty("incomplete_details", out var details) && details.ValueKind == JsonValueKind.Object
                ? Text(details, "reason")
                : null;

        private static string? Text(JsonElement obj, string name) =>
            obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

        private static int Int(JsonElement obj, string name) =>
            obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) ? n : 0;

        private static int Detail(JsonElement usage, string details, string name) =>
            usage.TryGetProperty(details, out var obj) && obj.ValueKind == JsonValueKind.Object ? Int(obj, name) : 0;
    }
}
