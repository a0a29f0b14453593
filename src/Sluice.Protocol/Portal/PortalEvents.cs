using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.Portal;

/// <summary>
/// The simple event objects some web front ends expect: <c>{"content": "…"}</c> per piece of text,
/// <c>{"done": true, "finish_reason", "usage": {…}}</c> at the end, <c>{"error": "…"}</c> on failure. Written as
/// SSE by <see cref="PortalStreamWriter"/> and as WebSocket messages (with leading <c>type</c> and <c>id</c>) by the
/// gateway, from the same code.
/// </summary>
public static class PortalEvents
{
    private static readonly JsonEncodedText ContentName = JsonEncodedText.Encode("content");
    private static readonly JsonEncodedText DoneName = JsonEncodedText.Encode("done");
    private static readonly JsonEncodedText SessionIdName = JsonEncodedText.Encode("session_id");
    private static readonly JsonEncodedText DroppedTurnsName = JsonEncodedText.Encode("dropped_turns");
    private static readonly JsonEncodedText ErrorName = JsonEncodedText.Encode("error");
    private static readonly JsonEncodedText CodeName = JsonEncodedText.Encode("code");
    private static readonly JsonEncodedText TypeName = JsonEncodedText.Encode("type");
    private static readonly JsonEncodedText IdName = JsonEncodedText.Encode("id");
    private static readonly JsonEncodedText ToolCallsName = JsonEncodedText.Encode("tool_calls");
    private static readonly JsonEncodedText IndexName = JsonEncodedText.Encode("index");
    private static readonly JsonEncodedText FunctionName = JsonEncodedText.Encode("function");
    private static readonly JsonEncodedText NameName = JsonEncodedText.Encode("name");
    private static readonly JsonEncodedText ArgumentsName = JsonEncodedText.Encode("arguments");

    /// <summary>The JSON writer options every Sluice wire format uses (compact, no needless escaping).</summary>
    public static JsonWriterOptions WriterOptions => OpenAIJson.WriterOptions;

    /// <summary>The text an event adds to the answer (text and refusal deltas, also inside passed-through chunks), or null.</summary>
    public static string? TextOf(ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        if (streamEvent.ChoiceIndex != 0)
        {
            return null;
        }

        switch (streamEvent)
        {
            case TextDeltaEvent { Text.Length: > 0 } text:
                return text.Text;
            case RefusalDeltaEvent { Text.Length: > 0 } refusal:
                return refusal.Text;
            case OpenAIChunkEvent chunk:
                string? joined = null;
                foreach (var inner in chunk.Events)
                {
                    if (TextOf(inner) is { } piece)
                    {
                        joined = joined is null ? piece : joined + piece;
                    }
                }

                return joined;
            default:
                return null;
        }
    }

    /// <summary>The tool-call fragments of choice 0 an event carries (also inside passed-through chunks); empty when none.</summary>
    public static IReadOnlyList<ToolCallDeltaEvent> ToolCallsOf(ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        return streamEvent switch
        {
            ToolCallDeltaEvent { ChoiceIndex: 0 } tool => [tool],
            OpenAIChunkEvent chunk => chunk.Events.OfType<ToolCallDeltaEvent>().Where(t => t.ChoiceIndex == 0).ToList(),
            _ => [],
        };
    }

    /// <summary>The finish reason of choice 0 an event carries, or null.</summary>
    public static string? FinishOf(ChatStreamEvent streamEvent) => streamEvent switch
    {
        FinishEvent { ChoiceIndex: 0 } finish => finish.Reason,
        OpenAIChunkEvent chunk => chunk.Events.Select(FinishOf).LastOrDefault(r => r is not null),
        _ => null,
    };

    /// <summary>Writes <c>{["type", "id",] "content": text}</c>.</summary>
    public static void WriteContent(Utf8JsonWriter json, string text, string? type = null, string? id = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        Open(json, type, id);
        json.WriteString(ContentName, text);
        json.WriteEndObject();
    }

    /// <summary>
    /// Writes <c>{["type", "id",] "tool_calls": [{"index", ["id", "type": "function",] "function": {["name",] "arguments"}}]}</c>:
    /// tool-call fragments in OpenAI's delta shape — the first fragment of a call names it, later ones add arguments.
    /// </summary>
    public static void WriteToolCallDeltas(Utf8JsonWriter json, IReadOnlyList<ToolCallDeltaEvent> deltas, string? type = null, string? id = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(deltas);
        Open(json, type, id);
        json.WriteStartArray(ToolCallsName);
        foreach (var delta in deltas)
        {
            json.WriteStartObject();
            json.WriteNumber(IndexName, delta.ToolIndex);
            if (delta.Id is not null)
            {
                json.WriteString(IdName, delta.Id);
                json.WriteString(TypeName, FunctionName);
            }

            json.WriteStartObject(FunctionName);
            if (delta.Name is not null)
            {
                json.WriteString(NameName, delta.Name);
            }

            json.WriteString(ArgumentsName, delta.ArgumentsFragment ?? string.Empty);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>
    /// Writes <c>{["type", "id",] "done": true, "finish_reason", ["tool_calls": [whole calls],] "usage": {…}[, "session_id",
    /// "dropped_turns"]}</c>.
    /// </summary>
    public static void WriteDone(
        Utf8JsonWriter json,
        ChatUsage usage,
        string? finishReason,
        string? type = null,
        string? id = null,
        PortalSession? session = null,
        IReadOnlyList<ToolCall>? toolCalls = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(usage);
        Open(json, type, id);
        json.WriteBoolean(DoneName, true);
        if (finishReason is not null)
        {
            json.WriteString(OpenAIJson.FinishReason, finishReason);
        }

        if (toolCalls is { Count: > 0 })
        {
            WriteToolCalls(json, toolCalls);
        }

        json.WriteStartObject(OpenAIJson.Usage);
        json.WriteNumber(OpenAIJson.PromptTokens, usage.PromptTokens);
        json.WriteNumber(OpenAIJson.CompletionTokens, usage.CompletionTokens);
        json.WriteNumber(OpenAIJson.TotalTokens, usage.TotalTokens);
        json.WriteEndObject();
        if (session is not null)
        {
            json.WriteString(SessionIdName, session.SessionId);
            json.WriteNumber(DroppedTurnsName, session.DroppedTurns);
        }

        json.WriteEndObject();
    }

    /// <summary>Writes <c>{["type", "id",] "error": message, "code": code[, "session_id"]}</c>.</summary>
    public static void WriteError(Utf8JsonWriter json, ErrorInfo error, string? type = null, string? id = null, PortalSession? session = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(error);
        Open(json, type, id);
        json.WriteString(ErrorName, error.Message);
        json.WriteString(CodeName, error.Code ?? error.Type);
        if (session is not null)
        {
            json.WriteString(SessionIdName, session.SessionId);
        }

        json.WriteEndObject();
    }

    /// <summary>Writes <c>"tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}]</c> (whole calls).</summary>
    public static void WriteToolCalls(Utf8JsonWriter json, IReadOnlyList<ToolCall> toolCalls)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(toolCalls);
        json.WriteStartArray(ToolCallsName);
        foreach (var call in toolCalls)
        {
            json.WriteStartObject();
            json.WriteString(IdName, call.Id);
            json.WriteString(TypeName, FunctionName);
            json.WriteStartObject(FunctionName);
            json.WriteString(NameName, call.Name);
            json.WriteString(ArgumentsName, call.Arguments);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    private static void Open(Utf8JsonWriter json, string? type, string? id)
    {
        json.WriteStartObject();
        if (type is not null)
        {
            json.WriteString(TypeName, type);
        }

        if (id is not null)
        {
            json.WriteString(IdName, id);
        }
    }
}

/// <summary>
/// Writes the portal events as numbered SSE frames (<c>id: N</c>, <c>data: {…}</c>). One instance per request; not
/// thread-safe.
/// </summary>
public sealed class PortalStreamWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);
    private readonly Utf8JsonWriter _json;
    private readonly PortalSession? _session;
    private readonly ChatCompletionAccumulator _tools = new();
    private bool _hasTools;
    private string? _finishReason;

    /// <summary>Creates a writer; with <paramref name="session"/>, the done and error frames name the session.</summary>
    public PortalStreamWriter(PortalSession? session = null)
    {
        _json = new Utf8JsonWriter(_buffer, OpenAIJson.WriterOptions);
        _session = session;
    }

    /// <summary>The session the done and error frames name, if any.</summary>
    public PortalSession? Session => _session;

    /// <summary>
    /// Writes a <c>content</c> frame for text or a <c>tool_calls</c> frame for tool-call fragments; remembers the finish
    /// reason and the calls (assembled into the done frame). False when there is nothing to send.
    /// </summary>
    public bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent)
    {
        _finishReason = PortalEvents.FinishOf(streamEvent) ?? _finishReason;
        var tools = PortalEvents.ToolCallsOf(streamEvent);
        if (tools.Count > 0)
        {
            _hasTools = true;
            foreach (var tool in tools)
            {
                _tools.Add(tool);
            }

            PortalEvents.WriteToolCallDeltas(Begin(), tools);
            return End(output, sequence);
        }

        if (PortalEvents.TextOf(streamEvent) is not { } text)
        {
            return false;
        }

        PortalEvents.WriteContent(Begin(), text);
        return End(output, sequence);
    }

    /// <summary>Writes the <c>done</c> frame with usage (and the whole tool calls, when the answer called tools).</summary>
    public void WriteDone(IBufferWriter<byte> output, long sequence, ChatUsage usage)
    {
        var calls = _hasTools ? _tools.Choices.FirstOrDefault()?.ToolCalls : null;
        PortalEvents.WriteDone(Begin(), usage, _finishReason, session: _session, toolCalls: calls);
        End(output, sequence);
    }

    /// <summary>Writes the <c>error</c> frame.</summary>
    public void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error)
    {
        PortalEvents.WriteError(Begin(), error, session: _session);
        End(output, sequence);
    }

    private Utf8JsonWriter Begin()
    {
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
        return _json;
    }

    private bool End(IBufferWriter<byte> output, long sequence)
    {
        _json.Flush();
        SseWriter.WriteEvent(output, sequence, _buffer.WrittenSpan);
        return true;
    }
}

/// <summary>The session a portal stream belongs to, named in its done and error events.</summary>
/// <param name="SessionId">The session id.</param>
/// <param name="DroppedTurns">How many earlier messages were left out of the prompt to fit the context budget.</param>
public sealed record PortalSession(string SessionId, int DroppedTurns);
