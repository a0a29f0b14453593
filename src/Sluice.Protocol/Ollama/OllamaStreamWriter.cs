using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Ollama;

/// <summary>Which Ollama endpoint a writer answers: they differ in where the text goes.</summary>
public enum OllamaApi
{
    /// <summary><c>/api/chat</c>: text in <c>message.content</c>, tool calls in <c>message.tool_calls</c>.</summary>
    Chat,

    /// <summary><c>/api/generate</c>: text in <c>response</c>; no tool calls.</summary>
    Generate,
}

/// <summary>
/// Writes one answer in Ollama's NDJSON format: one JSON object per line, <c>"done": false</c> for each piece of
/// text, then a last <c>"done": true</c> line with <c>done_reason</c>, token counts and durations in nanoseconds
/// (or, with <see cref="WriteComplete"/>, the whole answer as one such object). One instance per request; not
/// thread-safe.
/// </summary>
/// <remarks>
/// Ollama sends tool calls whole, never in fragments, so fragments are assembled here and the calls written in one
/// line when the answer finishes. Durations are measured from the request's start timestamp: prompt evaluation is
/// the time to the first token, evaluation the time from it to the end.
/// </remarks>
public sealed class OllamaStreamWriter
{
    private readonly Utf8JsonWriter _json = new(Stream.Null, OpenAIJson.WriterOptions);
    private readonly SortedDictionary<int, PendingCall> _calls = [];
    private readonly string _model;
    private readonly OllamaApi _api;
    private readonly long _startTimestamp;
    private long _firstTokenTimestamp;
    private string? _finishReason;
    private bool _callsWritten;

    /// <summary>Creates a writer.</summary>
    /// <param name="model">The model name reported to the client.</param>
    /// <param name="api">The endpoint being answered.</param>
    /// <param name="startTimestamp">When the request arrived (<see cref="Stopwatch.GetTimestamp"/>).</param>
    public OllamaStreamWriter(string model, OllamaApi api, long startTimestamp)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _api = api;
        _startTimestamp = startTimestamp;
    }

    /// <summary>
    /// Writes the lines for <paramref name="streamEvent"/>: a text line, or (on the finish) the assembled tool calls.
    /// Returns false when it wrote nothing.
    /// </summary>
    public bool WriteEvent(IBufferWriter<byte> output, ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        if (streamEvent.ChoiceIndex != 0)
        {
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
            case TextDeltaEvent text:
                return WriteText(output, text.Text);
            case RefusalDeltaEvent refusal:
                return WriteText(output, refusal.Text);
            case ToolCallDeltaEvent tool:
                MarkFirstToken();
                if (!_calls.TryGetValue(tool.ToolIndex, out var call))
                {
                    call = new PendingCall();
                    _calls[tool.ToolIndex] = call;
                }

                call.Id ??= tool.Id;
                call.Name ??= tool.Name;
                call.Arguments.Append(tool.ArgumentsFragment);
                return false;
            case FinishEvent finish:
                _finishReason = finish.Reason;
                return WriteCalls(output);
            default:
                return false;
        }
    }

    /// <summary>
    /// The keep-alive line for silences: a valid, empty progress object (<c>"done": false</c> with no text), which
    /// every Ollama client already accepts — NDJSON has no comment lines.
    /// </summary>
    public void WritePing(IBufferWriter<byte> output)
    {
        BeginLine(output);
        WriteContent(string.Empty, null);
        _json.WriteBoolean("done"u8, false);
        _json.WriteEndObject();
        EndLine(output);
    }

    /// <summary>Writes any tool calls not yet written, then the <c>"done": true</c> line with counts and durations.</summary>
    public void WriteEnd(IBufferWriter<byte> output, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        WriteCalls(output);
        BeginLine(output);
        WriteContent(string.Empty, null);
        WriteDone(usage);
        _json.WriteEndObject();
        EndLine(output);
    }

    /// <summary>Writes the whole answer as one <c>"done": true</c> object (<c>"stream": false</c>).</summary>
    public void WriteComplete(IBufferWriter<byte> output, AssembledChoice? answer, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        _finishReason = answer?.FinishReason;
        if (answer is not null && answer.ToolCalls.Count > 0)
        {
            MarkFirstToken();
        }

        BeginLine(output);
        WriteContent(answer?.Content ?? answer?.Refusal ?? string.Empty, _api == OllamaApi.Chat ? answer?.ToolCalls : null);
        WriteDone(usage);
        _json.WriteEndObject();
        EndLine(output);
    }

    /// <summary>
    /// Writes the answer to a <c>/api/generate</c> request without a prompt, which in Ollama only loads the model:
    /// <c>"done": true</c> with <c>done_reason</c> <c>load</c>.
    /// </summary>
    public void WriteLoaded(IBufferWriter<byte> output)
    {
        BeginLine(output);
        _json.WriteString("response"u8, string.Empty);
        _json.WriteBoolean("done"u8, true);
        _json.WriteString("done_reason"u8, "load"u8);
        _json.WriteEndObject();
        EndLine(output);
    }

    /// <summary>Writes the error line <c>{"error": "…"}</c>; the stream ends after it.</summary>
    public void WriteError(IBufferWriter<byte> output, ErrorInfo error)
    {
        ArgumentNullException.ThrowIfNull(error);
        WriteErrorLine(output, error.Message);
    }

    /// <summary>Writes Ollama's error body <c>{"error": "…"}</c> followed by a newline (HTTP errors and mid-stream errors alike).</summary>
    public static void WriteErrorLine(IBufferWriter<byte> output, string message)
    {
        ArgumentNullException.ThrowIfNull(output);
        using (var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("error"u8, message);
            json.WriteEndObject();
        }

        var span = output.GetSpan(1);
        span[0] = (byte)'\n';
        output.Advance(1);
    }

    /// <summary>Ollama's <c>created_at</c>: UTC, RFC 3339 with fractional seconds.</summary>
    public static string Timestamp(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    private bool WriteText(IBufferWriter<byte> output, string text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        MarkFirstToken();
        BeginLine(output);
        WriteContent(text, null);
        _json.WriteBoolean("done"u8, false);
        _json.WriteEndObject();
        EndLine(output);
        return true;
    }

    private bool WriteCalls(IBufferWriter<byte> output)
    {
        if (_callsWritten || _calls.Count == 0 || _api != OllamaApi.Chat)
        {
            return false;
        }

        _callsWritten = true;
        var calls = _calls.Values.Select(c => new ToolCall(c.Id ?? string.Empty, c.Name ?? string.Empty, c.Arguments.ToString())).ToList();
        BeginLine(output);
        WriteContent(string.Empty, calls);
        _json.WriteBoolean("done"u8, false);
        _json.WriteEndObject();
        EndLine(output);
        return true;
    }

    /// <summary>Opens the line object with <c>model</c> and <c>created_at</c>.</summary>
    private void BeginLine(IBufferWriter<byte> output)
    {
        _json.Reset(output);
        _json.WriteStartObject();
        _json.WriteString("model"u8, _model);
        _json.WriteString("created_at"u8, Timestamp(DateTimeOffset.UtcNow));
    }

    /// <summary>Writes the text where this endpoint puts it: <c>message</c> for chat, <c>response</c> for generate.</summary>
    private void WriteContent(string text, IReadOnlyList<ToolCall>? calls)
    {
        if (_api == OllamaApi.Generate)
        {
            _json.WriteString("response"u8, text);
            return;
        }

        _json.WriteStartObject("message"u8);
        _json.WriteString("role"u8, "assistant"u8);
        _json.WriteString("content"u8, text);
        if (calls is { Count: > 0 })
        {
            _json.WriteStartArray("tool_calls"u8);
            for (var i = 0; i < calls.Count; i++)
            {
                _json.WriteStartObject();
                if (calls[i].Id.Length > 0)
                {
                    _json.WriteString("id"u8, calls[i].Id);
                }

                _json.WriteStartObject("function"u8);
                _json.WriteNumber("index"u8, i);
                _json.WriteString("name"u8, calls[i].Name);
                _json.WritePropertyName("arguments"u8);
                ToolJson.WriteArgumentsObject(_json, calls[i].Arguments);
                _json.WriteEndObject();
                _json.WriteEndObject();
            }

            _json.WriteEndArray();
        }

        _json.WriteEndObject();
    }

    private void WriteDone(ChatUsage usage)
    {
        var end = Stopwatch.GetTimestamp();
        var first = _firstTokenTimestamp == 0 ? end : _firstTokenTimestamp;
        _json.WriteBoolean("done"u8, true);
        _json.WriteString("done_reason"u8, _finishReason == FinishReasons.Length ? "length"u8 : "stop"u8);
        _json.WriteNumber("total_duration"u8, Nanoseconds(_startTimestamp, end));
        _json.WriteNumber("load_duration"u8, 0);
        _json.WriteNumber("prompt_eval_count"u8, usage.PromptTokens);
        _json.WriteNumber("prompt_eval_duration"u8, Nanoseconds(_startTimestamp, first));
        _json.WriteNumber("eval_count"u8, usage.CompletionTokens);
        _json.WriteNumber("eval_duration"u8, Nanoseconds(first, end));
    }

    private void EndLine(IBufferWriter<byte> output)
    {
        _json.Flush();
        var span = output.GetSpan(1);
        span[0] = (byte)'\n';
        output.Advance(1);
    }

    private void MarkFirstToken()
    {
        if (_firstTokenTimestamp == 0)
        {
            _firstTokenTimestamp = Stopwatch.GetTimestamp();
        }
    }

    private static long Nanoseconds(long from, long to) => Math.Max(0, Stopwatch.GetElapsedTime(from, to).Ticks * 100);

    private sealed class PendingCall
    {
        public string? Id { get; set; }

        public string? Name { get; set; }

        public StringBuilder Arguments { get; } = new();
    }
}
