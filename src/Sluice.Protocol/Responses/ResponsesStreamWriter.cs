using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.Responses;

/// <summary>
/// Writes one answer as the Responses API stream — <c>response.created</c>, <c>response.in_progress</c>, per output item
/// <c>response.output_item.added</c> → (<c>response.content_part.added</c> → <c>response.output_text.delta</c>* →
/// <c>response.output_text.done</c> → <c>response.content_part.done</c>) or <c>response.function_call_arguments.delta</c>*
/// → <c>.done</c> → <c>response.output_item.done</c>, then <c>response.completed</c>, <c>response.incomplete</c> or
/// <c>error</c> + <c>response.failed</c> — each with its <c>sequence_number</c>; and builds the response object every
/// terminal event (and a non-streamed answer, and the store) carries.
/// </summary>
/// <remarks>
/// <para>The answer events of any backend are translated. An upstream that speaks the Responses API sends
/// <see cref="ResponsesEvent"/>s instead: those are written byte for byte, and the writer only notes the response id
/// and the final response object they carry.</para>
/// <para>With a null output the writer only keeps state (the same state, ids included, as a writing instance fed the
/// same events): that is how the stored and the non-streamed response are built. One instance per answer.</para>
/// </remarks>
public sealed class ResponsesStreamWriter
{
    private readonly ResponseHeader _header;
    private readonly List<OutputItem> _items = [];
    private readonly ArrayBufferWriter<byte> _scratch = new(512);
    private readonly Utf8JsonWriter _json;
    private OutputItem? _open;
    private string? _finishReason;
    private byte[]? _final;
    private string _id;
    private bool _started;

    /// <summary>Creates the writer for one response.</summary>
    public ResponsesStreamWriter(ResponseHeader header)
    {
        _header = header ?? throw new ArgumentNullException(nameof(header));
        _id = header.Id;
        _json = new Utf8JsonWriter(_scratch, OpenAIJson.WriterOptions);
    }

    /// <summary>The response id: the header's, or the upstream's when its events are passed through.</summary>
    public string ResponseId => _id;

    /// <summary>The next <c>sequence_number</c>.</summary>
    public int Sequence { get; private set; }

    /// <summary>Whether the upstream's own Responses events are being passed through.</summary>
    public bool IsPassThrough { get; private set; }

    /// <summary>Whether a terminal event (<c>response.completed</c>, <c>.incomplete</c>, <c>.failed</c>) has been written.</summary>
    public bool Ended => _final is not null;

    /// <summary>The final response object's JSON, once ended.</summary>
    public ReadOnlyMemory<byte> FinalResponse => _final ?? throw new InvalidOperationException("The response has not ended yet.");

    /// <summary>The final status: <c>completed</c>, <c>incomplete</c> or <c>failed</c> (null until ended).</summary>
    public string? Status { get; private set; }

    /// <summary>Writes the frames for one answer event; false when it makes none.</summary>
    public bool WriteEvent(IBufferWriter<byte>? output, ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        if (streamEvent is ResponsesEvent raw)
        {
            return WriteRaw(output, raw);
        }

        if (IsPassThrough || Ended)
        {
            // Once the upstream's events are passed through, they are the whole answer.
            return false;
        }

        switch (streamEvent)
        {
            case OpenAIChunkEvent chunk:
                var wrote = false;
                foreach (var inner in chunk.Events)
                {
                    wrote |= WriteEvent(output, inner);
                }

                return wrote;
            case TextDeltaEvent { ChoiceIndex: 0 } text when text.Text.Length > 0:
                Start(output);
                var message = OpenPart(output, ContentKind.Text);
                message.Text.Append(text.Text);
                if (text.Logprobs is { Count: > 0 } logprobs)
                {
                    message.Logprobs.AddRange(logprobs);
                }

                Frame(output, "response.output_text.delta", json =>
                {
                    WriteLocation(json, message, true);
                    json.WriteString("delta"u8, text.Text);
                    json.WritePropertyName("logprobs"u8);
                    OpenAILogprobs.WriteArray(json, text.Logprobs);
                });
                return true;
            case RefusalDeltaEvent { ChoiceIndex: 0 } refusal when refusal.Text.Length > 0:
                Start(output);
                var refusing = OpenPart(output, ContentKind.Refusal);
                refusing.Refusal.Append(refusal.Text);
                Frame(output, "response.refusal.delta", json =>
                {
                    WriteLocation(json, refusing, true);
                    json.WriteString("delta"u8, refusal.Text);
                });
                return true;
            case ToolCallDeltaEvent { ChoiceIndex: 0 } tool:
                return WriteToolDelta(output, tool);
            case FinishEvent { ChoiceIndex: 0 } finish:
                _finishReason = finish.Reason;
                return false;
            default:
                return false;
        }
    }

    /// <summary>Ends the answer: the open item is closed, then <c>response.completed</c> (or <c>response.incomplete</c> when it was cut short).</summary>
    public void WriteEnd(IBufferWriter<byte>? output, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        if (IsPassThrough || Ended)
        {
            return;
        }

        Start(output);
        var incomplete = _finishReason switch
        {
            FinishReasons.Length => "max_output_tokens",
            FinishReasons.ContentFilter => "content_filter",
            _ => null,
        };
        Close(output, incomplete is null ? "completed" : "incomplete");
        Status = incomplete is null ? "completed" : "incomplete";
        _final = ResponseObject(Status, usage, incomplete, null);
        Frame(output, incomplete is null ? "response.completed" : "response.incomplete", json =>
        {
            json.WritePropertyName("response"u8);
            json.WriteRawValue(_final, skipInputValidation: true);
        });
    }

    /// <summary>Ends a failed answer: an <c>error</c> event, then <c>response.failed</c> with the error (nothing after a terminal event).</summary>
    public void WriteError(IBufferWriter<byte>? output, ErrorInfo error)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (Ended)
        {
            return;
        }

        if (!IsPassThrough)
        {
            Start(output);
        }

        Frame(output, "error", json =>
        {
            json.WriteString("code"u8, error.Code ?? error.Type);
            json.WriteString("message"u8, error.Message);
            OpenAIErrorWriter.WriteNullableString(json, OpenAIJson.Param, error.Param);
        });
        Status = "failed";
        _final = ResponseObject("failed", null, null, error);
        Frame(output, "response.failed", json =>
        {
            json.WritePropertyName("response"u8);
            json.WriteRawValue(_final, skipInputValidation: true);
        });
    }

    /// <summary>
    /// The output items as Responses <em>input</em> items (messages with <c>output_text</c> parts, function calls), so a
    /// later request continuing this response (<c>previous_response_id</c>) can send them back as history.
    /// </summary>
    public JsonElement OutputAsInput()
    {
        using var document = JsonDocument.Parse(FinalResponse);
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, OpenAIJson.WriterOptions))
        {
            json.WriteStartArray();
            if (document.RootElement.TryGetProperty("output", out var items) && items.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in items.EnumerateArray())
                {
                    if (CarriesOver(item))
                    {
                        item.WriteTo(json);
                    }
                }
            }

            json.WriteEndArray();
        }

        using var result = JsonDocument.Parse(buffer.WrittenMemory);
        return result.RootElement.Clone();
    }

    /// <summary>Whether an item of a response's <c>output</c> becomes input of the next turn (see <see cref="OutputAsInput"/>).</summary>
    internal static bool CarriesOver(JsonElement outputItem) =>
        outputItem.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() is "message" or "function_call" or "reasoning";

    /// <summary>Writes the body of <c>DELETE /v1/responses/{id}</c>.</summary>
    public static void WriteDeleted(IBufferWriter<byte> output, string id)
    {
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString("id"u8, id);
        json.WriteString("object"u8, "response"u8);
        json.WriteBoolean("deleted"u8, true);
        json.WriteEndObject();
    }

    private bool WriteRaw(IBufferWriter<byte>? output, ResponsesEvent raw)
    {
        if (!IsPassThrough && _started)
        {
            // The translation already began (a group fell back mid-way is impossible: fallback happens before the first
            // event), so this cannot happen; keep the grammar by translating instead.
            var wrote = false;
            foreach (var inner in raw.Events)
            {
                wrote |= WriteEvent(output, inner);
            }

            return wrote;
        }

        IsPassThrough = true;
        _started = true;
        if (output is not null)
        {
            SseWriter.WriteEventType(output, Encoding.UTF8.GetBytes(raw.Type));
            SseWriter.WriteData(output, raw.Json.Span);
        }

        Sequence++;
        if (raw.Type is "response.created" or "response.completed" or "response.incomplete" or "response.failed")
        {
            using var document = JsonDocument.Parse(raw.Json);
            if (document.RootElement.TryGetProperty("response", out var response) && response.ValueKind == JsonValueKind.Object)
            {
                if (response.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String)
                {
                    _id = id.GetString()!;
                }

                if (raw.Type != "response.created")
                {
                    Status = raw.Type["response.".Length..];
                    _final = Encoding.UTF8.GetBytes(response.GetRawText());
                }
            }
        }

        return true;
    }

    private bool WriteToolDelta(IBufferWriter<byte>? output, ToolCallDeltaEvent tool)
    {
        Start(output);
        var item = _open is { Kind: ItemKind.FunctionCall } current && current.ToolIndex == tool.ToolIndex ? current : null;
        if (item is null && (tool.Id is not null || tool.Name is not null || _items.All(i => i.ToolIndex != tool.ToolIndex)))
        {
            Close(output, "completed");
            item = new OutputItem(_items.Count, ItemKind.FunctionCall, $"fc_{Suffix}{_items.Count:x2}")
            {
                ToolIndex = tool.ToolIndex,
                CallId = tool.Id ?? $"call_{Suffix}{_items.Count:x2}",
                Name = tool.Name ?? string.Empty,
            };
            _items.Add(item);
            _open = item;
            Frame(output, "response.output_item.added", json =>
            {
                json.WriteNumber("output_index"u8, item.Index);
                json.WritePropertyName("item"u8);
                WriteItem(json, item, "in_progress");
            });
        }

        if (item is null)
        {
            // A fragment for a call already closed: kept for the final object, though its done events have gone out.
            _items.First(i => i.ToolIndex == tool.ToolIndex).Arguments.Append(tool.ArgumentsFragment);
            return false;
        }

        if (string.IsNullOrEmpty(tool.ArgumentsFragment))
        {
            return true;
        }

        item.Arguments.Append(tool.ArgumentsFragment);
        Frame(output, "response.function_call_arguments.delta", json =>
        {
            json.WriteString("item_id"u8, item.Id);
            json.WriteNumber("output_index"u8, item.Index);
            json.WriteString("delta"u8, tool.ArgumentsFragment);
        });
        return true;
    }

    private string Suffix => _header.Id.StartsWith("resp_", StringComparison.Ordinal) ? _header.Id[5..] : _header.Id;

    /// <summary>The open message item with an open part of <paramref name="kind"/>, opening what is missing.</summary>
    private OutputItem OpenPart(IBufferWriter<byte>? output, ContentKind kind)
    {
        if (_open is not { Kind: ItemKind.Message })
        {
            Close(output, "completed");
            var item = new OutputItem(_items.Count, ItemKind.Message, $"msg_{Suffix}{_items.Count:x2}");
            _items.Add(item);
            _open = item;
            Frame(output, "response.output_item.added", json =>
            {
                json.WriteNumber("output_index"u8, item.Index);
                json.WritePropertyName("item"u8);
                WriteItem(json, item, "in_progress");
            });
        }

        var message = _open;
        if (message.Part != kind)
        {
            ClosePart(output, message);
            message.Part = kind;
            message.Parts.Add(kind);
            Frame(output, "response.content_part.added", json =>
            {
                WriteLocation(json, message, true);
                json.WritePropertyName("part"u8);
                WritePart(json, message, kind, empty: true);
            });
        }

        return message;
    }

    private void ClosePart(IBufferWriter<byte>? output, OutputItem message)
    {
        if (message.Part is not { } part)
        {
            return;
        }

        if (part == ContentKind.Text)
        {
            Frame(output, "response.output_text.done", json =>
            {
                WriteLocation(json, message, true);
                json.WriteString("text"u8, message.Text.ToString());
                json.WritePropertyName("logprobs"u8);
                OpenAILogprobs.WriteArray(json, message.Logprobs);
            });
        }
        else
        {
            Frame(output, "response.refusal.done", json =>
            {
                WriteLocation(json, message, true);
                json.WriteString("refusal"u8, message.Refusal.ToString());
            });
        }

        Frame(output, "response.content_part.done", json =>
        {
            WriteLocation(json, message, true);
            json.WritePropertyName("part"u8);
            WritePart(json, message, part, empty: false);
        });
        message.Part = null;
    }

    private void Close(IBufferWriter<byte>? output, string status)
    {
        if (_open is not { } item)
        {
            return;
        }

        _open = null;
        if (item.Kind == ItemKind.Message)
        {
            ClosePart(output, item);
        }
        else
        {
            Frame(output, "response.function_call_arguments.done", json =>
            {
                json.WriteString("item_id"u8, item.Id);
                json.WriteNumber("output_index"u8, item.Index);
                json.WriteString("name"u8, item.Name);
                json.WriteString("arguments"u8, item.Arguments.ToString());
            });
        }

        item.Status = status;
        Frame(output, "response.output_item.done", json =>
        {
            json.WriteNumber("output_index"u8, item.Index);
            json.WritePropertyName("item"u8);
            WriteItem(json, item, status);
        });
    }

    private void Start(IBufferWriter<byte>? output)
    {
        if (_started)
        {
            return;
        }

        _started = true;
        var initial = ResponseObject("in_progress", null, null, null);
        Frame(output, "response.created", json =>
        {
            json.WritePropertyName("response"u8);
            json.WriteRawValue(initial, skipInputValidation: true);
        });
        Frame(output, "response.in_progress", json =>
        {
            json.WritePropertyName("response"u8);
            json.WriteRawValue(initial, skipInputValidation: true);
        });
    }

    private void Frame(IBufferWriter<byte>? output, string type, Action<Utf8JsonWriter> body)
    {
        var sequence = Sequence++;
        if (output is null)
        {
            return;
        }

        _scratch.ResetWrittenCount();
        _json.Reset(_scratch);
        _json.WriteStartObject();
        _json.WriteString("type"u8, type);
        _json.WriteNumber("sequence_number"u8, sequence);
        body(_json);
        _json.WriteEndObject();
        _json.Flush();
        SseWriter.WriteEventType(output, Encoding.UTF8.GetBytes(type));
        SseWriter.WriteData(output, _scratch.WrittenSpan);
    }

    private static void WriteLocation(Utf8JsonWriter json, OutputItem item, bool content)
    {
        json.WriteString("item_id"u8, item.Id);
        json.WriteNumber("output_index"u8, item.Index);
        if (content)
        {
            json.WriteNumber("content_index"u8, item.Parts.Count - 1);
        }
    }

    private static void WritePart(Utf8JsonWriter json, OutputItem item, ContentKind kind, bool empty)
    {
        json.WriteStartObject();
        if (kind == ContentKind.Text)
        {
            json.WriteString("type"u8, "output_text"u8);
            json.WriteStartArray("annotations"u8);
            json.WriteEndArray();
            json.WritePropertyName("logprobs"u8);
            OpenAILogprobs.WriteArray(json, empty ? null : item.Logprobs);
            json.WriteString("text"u8, empty ? string.Empty : item.Text.ToString());
        }
        else
        {
            json.WriteString("type"u8, "refusal"u8);
            json.WriteString("refusal"u8, empty ? string.Empty : item.Refusal.ToString());
        }

        json.WriteEndObject();
    }

    private static void WriteItem(Utf8JsonWriter json, OutputItem item, string status)
    {
        json.WriteStartObject();
        json.WriteString("id"u8, item.Id);
        if (item.Kind == ItemKind.Message)
        {
            json.WriteString("type"u8, "message"u8);
            json.WriteString("status"u8, status);
            json.WriteStartArray("content"u8);
            if (status != "in_progress")
            {
                foreach (var part in item.Parts)
                {
                    WritePart(json, item, part, empty: false);
                }
            }

            json.WriteEndArray();
            json.WriteString("role"u8, "assistant"u8);
        }
        else
        {
            json.WriteString("type"u8, "function_call"u8);
            json.WriteString("status"u8, status);
            json.WriteString("arguments"u8, status == "in_progress" ? string.Empty : item.Arguments.ToString());
            json.WriteString("call_id"u8, item.CallId);
            json.WriteString("name"u8, item.Name);
        }

        json.WriteEndObject();
    }

    private byte[] ResponseObject(string status, ChatUsage? usage, string? incompleteReason, ErrorInfo? error)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer, OpenAIJson.WriterOptions))
        {
            var echo = _header.Echo;
            json.WriteStartObject();
            json.WriteString("id"u8, _id);
            json.WriteString("object"u8, "response"u8);
            json.WriteNumber("created_at"u8, _header.CreatedAt);
            json.WriteString("status"u8, status);
            json.WriteBoolean("background"u8, false);
            if (error is null)
            {
                json.WriteNull("error"u8);
            }
            else
            {
                json.WriteStartObject("error"u8);
                json.WriteString("code"u8, error.Code ?? error.Type);
                json.WriteString("message"u8, error.Message);
                json.WriteEndObject();
            }

            if (incompleteReason is null)
            {
                json.WriteNull("incomplete_details"u8);
            }
            else
            {
                json.WriteStartObject("incomplete_details"u8);
                json.WriteString("reason"u8, incompleteReason);
                json.WriteEndObject();
            }

            OpenAIErrorWriter.WriteNullableString(json, JsonEncodedText.Encode("instructions"), echo.Instructions);
            WriteNullableNumber(json, "max_output_tokens", echo.MaxOutputTokens);
            json.WriteNull("max_tool_calls"u8);
            json.WriteString("model"u8, _header.Model);
            json.WriteStartArray("output"u8);
            if (status != "in_progress")
            {
                foreach (var item in _items)
                {
                    WriteItem(json, item, item.Status ?? (status == "failed" ? "incomplete" : status));
                }
            }

            json.WriteEndArray();
            json.WriteBoolean("parallel_tool_calls"u8, echo.ParallelToolCalls ?? true);
            OpenAIErrorWriter.WriteNullableString(json, JsonEncodedText.Encode("previous_response_id"), echo.PreviousResponseId);
            json.WriteStartObject("reasoning"u8);
            json.WriteNull("effort"u8);
            json.WriteNull("summary"u8);
            json.WriteEndObject();
            json.WriteString("service_tier"u8, "default"u8);
            json.WriteBoolean("store"u8, echo.Store);
            json.WriteNumber("temperature"u8, echo.Temperature ?? 1);
            json.WriteStartObject("text"u8);
            json.WritePropertyName("format"u8);
            if (echo.TextFormat is { } format)
            {
                format.WriteTo(json);
            }
            else
            {
                json.WriteStartObject();
                json.WriteString("type"u8, "text"u8);
                json.WriteEndObject();
            }

            json.WriteEndObject();
            json.WritePropertyName("tool_choice"u8);
            if (echo.ToolChoice is { } choice)
            {
                choice.WriteTo(json);
            }
            else
            {
                json.WriteStringValue("auto"u8);
            }

            json.WritePropertyName("tools"u8);
            if (echo.Tools is { } tools)
            {
                tools.WriteTo(json);
            }
            else
            {
                json.WriteStartArray();
                json.WriteEndArray();
            }

            json.WriteNumber("top_logprobs"u8, echo.TopLogprobs ?? 0);
            json.WriteNumber("top_p"u8, echo.TopP ?? 1);
            json.WriteString("truncation"u8, "disabled"u8);
            if (usage is null)
            {
                json.WriteNull("usage"u8);
            }
            else
            {
                json.WriteStartObject("usage"u8);
                json.WriteNumber("input_tokens"u8, usage.PromptTokens);
                json.WriteStartObject("input_tokens_details"u8);
                json.WriteNumber("cached_tokens"u8, usage.Details?.CachedPromptTokens ?? 0);
                json.WriteEndObject();
                json.WriteNumber("output_tokens"u8, usage.CompletionTokens);
                json.WriteStartObject("output_tokens_details"u8);
                json.WriteNumber("reasoning_tokens"u8, usage.Details?.ReasoningTokens ?? 0);
                json.WriteEndObject();
                json.WriteNumber("total_tokens"u8, usage.TotalTokens);
                json.WriteEndObject();
            }

            OpenAIErrorWriter.WriteNullableString(json, JsonEncodedText.Encode("user"), echo.User);
            json.WritePropertyName("metadata"u8);
            if (echo.Metadata is { } metadata)
            {
                metadata.WriteTo(json);
            }
            else
            {
                json.WriteStartObject();
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteNullableNumber(Utf8JsonWriter json, string name, int? value)
    {
        if (value is { } v)
        {
            json.WriteNumber(name, v);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private enum ItemKind
    {
        Message,
        FunctionCall,
    }

    private enum ContentKind
    {
        Text,
        Refusal,
    }

    private sealed class OutputItem(int index, ItemKind kind, string id)
    {
        public int Index { get; } = index;

        public ItemKind Kind { get; } = kind;

        public string Id { get; } = id;

        public StringBuilder Text { get; } = new();

        public StringBuilder Refusal { get; } = new();

        public List<TokenLogprob> Logprobs { get; } = [];

        public List<ContentKind> Parts { get; } = [];

        public ContentKind? Part { get; set; }

        public int ToolIndex { get; init; } = -1;

        public string CallId { get; init; } = string.Empty;

        public string Name { get; init; } = string.Empty;

        public StringBuilder Arguments { get; } = new();

        public string? Status { get; set; }
    }
}
