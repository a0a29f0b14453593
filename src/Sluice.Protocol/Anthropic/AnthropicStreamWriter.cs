using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Anthropic;

/// <summary>
/// Writes one stream's events as Anthropic Messages Server-Sent Events: <c>message_start</c>, then per content block
/// <c>content_block_start</c> / <c>content_block_delta</c>* / <c>content_block_stop</c>, then <c>message_delta</c>
/// (stop reason, usage) and <c>message_stop</c>. Each frame is <c>event: {type}</c> + <c>data: {json}</c>.
/// One instance per stream; not thread-safe (a stream is written by one loop).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Text (and refusal text) goes into <c>text</c> blocks, tool calls into <c>tool_use</c> blocks whose
/// arguments stream as <c>input_json_delta</c>. A block is closed when a block of another kind (or another call)
/// starts, so sequential input gives Anthropic's exact shape. A fragment for a call whose block was already closed
/// (interleaved parallel calls, which OpenAI-style backends do not send) still goes out, addressed by that block's
/// <c>index</c>, so nothing is lost for clients that assemble by index.</item>
/// <item>Only choice 0 is written: Anthropic has no <c>n</c>.</item>
/// <item>The finish reason is remembered and written in <c>message_delta</c> by <see cref="WriteEnd"/>, because the
/// output usage it carries is only final once the backend's stream is over.</item>
/// </list>
/// </remarks>
public sealed class AnthropicStreamWriter
{
    private readonly Utf8JsonWriter _json = new(Stream.Null, OpenAIJson.WriterOptions);
    private readonly Dictionary<int, int> _toolBlocks = [];
    private readonly string _messageId;
    private readonly string _model;
    private int _openBlock = -1;
    private bool _openIsText;
    private int _nextBlock;
    private bool _started;
    private string? _finishReason;
    private string? _stopSequence;
    private string? _stopDetails;
    private string? _nativeStopReason;

    /// <summary>Creates a writer for one stream.</summary>
    /// <param name="messageId">The message id (<c>msg_…</c>).</param>
    /// <param name="model">The model name reported to the client.</param>
    public AnthropicStreamWriter(string messageId, string model)
    {
        _messageId = messageId ?? throw new ArgumentNullException(nameof(messageId));
        _model = model ?? throw new ArgumentNullException(nameof(model));
    }

    /// <summary>The keep-alive frame: <c>event: ping</c> with <c>{"type": "ping"}</c>, as Anthropic sends it.</summary>
    public static ReadOnlySpan<byte> PingFrame => "event: ping\ndata: {\"type\": \"ping\"}\n\n"u8;

    /// <summary>Whether <c>WriteStart</c> has been written.</summary>
    public bool Started => _started;

    /// <summary>Writes <c>message_start</c>: the empty assistant message with its input token count.</summary>
    /// <param name="output">Where to write.</param>
    /// <param name="inputTokens">Prompt tokens: the backend's count if it reported one already, else an estimate.</param>
    public void WriteStart(IBufferWriter<byte> output, int inputTokens) => WriteStart(output, new ChatUsage(inputTokens, 0), null);

    /// <summary>
    /// Writes <c>message_start</c>. When the backend opened its answer with facts of its own (an Anthropic upstream's
    /// <c>message_start</c>), the message carries its id, counts (cache reads and writes apart) and service tier.
    /// </summary>
    /// <param name="output">Where to write.</param>
    /// <param name="usage">Prompt tokens (with details): the backend's count if it reported one already, else an estimate.</param>
    /// <param name="start">The backend's opening facts, if any.</param>
    public void WriteStart(IBufferWriter<byte> output, ChatUsage usage, AnswerStartEvent? start)
    {
        ArgumentNullException.ThrowIfNull(usage);
        if (_started)
        {
            return;
        }

        _started = true;
        BeginFrame(output, "message_start"u8);
        _json.WriteStartObject();
        _json.WriteString("type"u8, "message_start"u8);
        _json.WriteStartObject("message"u8);
        _json.WriteString("id"u8, start?.MessageId ?? _messageId);
        _json.WriteString("type"u8, "message"u8);
        _json.WriteString("role"u8, "assistant"u8);
        _json.WriteString("model"u8, _model);
        _json.WriteStartArray("content"u8);
        _json.WriteEndArray();
        _json.WriteNull("stop_reason"u8);
        _json.WriteNull("stop_sequence"u8);
        _json.WritePropertyName("usage"u8);
        AnthropicMessageWriter.WriteUsage(_json, usage with { CompletionTokens = start?.Usage?.CompletionTokens ?? 0 }, start?.ServiceTier);
        _json.WriteEndObject();
        _json.WriteEndObject();
        EndFrame(output);
    }

    /// <summary>
    /// Writes the frames for <paramref name="streamEvent"/> (starting or closing blocks as needed); returns false
    /// when it has none (usage, errors, finishes — see <see cref="WriteEnd"/> and <see cref="WriteError"/>).
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
            case AnthropicBlockEvent block:
                return WriteBlock(output, block);
            case OpenAIChunkEvent chunk:
                // A passed-through OpenAI chunk: write what it decoded to.
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
                return WriteTool(output, tool);
            case FinishEvent finish:
                _finishReason = finish.Reason;
                _stopSequence = finish.StopSequence;
                _stopDetails = finish.StopDetailsJson;
                _nativeStopReason = finish.AnthropicStopReason;
                return false;
            default:
                return false;
        }
    }

    /// <summary>Closes the open block and writes <c>message_delta</c> (stop reason, usage) and <c>message_stop</c>.</summary>
    public void WriteEnd(IBufferWriter<byte> output, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        WriteStart(output, usage, null);
        CloseOpenBlock(output);
        var stopReason = _nativeStopReason ?? AnthropicStopReasons.FromFinishReason(_finishReason, _stopSequence);
        BeginFrame(output, "message_delta"u8);
        _json.WriteStartObject();
        _json.WriteString("type"u8, "message_delta"u8);
        _json.WriteStartObject("delta"u8);
        _json.WriteString("stop_reason"u8, stopReason);
        if (stopReason == AnthropicStopReasons.StopSequence)
        {
            _json.WriteString("stop_sequence"u8, _stopSequence);
        }
        else
        {
            _json.WriteNull("stop_sequence"u8);
        }

        if (_stopDetails is not null)
        {
            _json.WritePropertyName("stop_details"u8);
            _json.WriteRawValue(_stopDetails, skipInputValidation: true);
        }

        _json.WriteEndObject();

        // Final counts: input_tokens too, since message_start may have carried an estimate.
        _json.WritePropertyName("usage"u8);
        AnthropicMessageWriter.WriteUsage(_json, usage, null);
        _json.WriteEndObject();
        EndFrame(output);

        BeginFrame(output, "message_stop"u8);
        _json.WriteStartObject();
        _json.WriteString("type"u8, "message_stop"u8);
        _json.WriteEndObject();
        EndFrame(output);
    }

    /// <summary>Writes <c>event: error</c> with Anthropic's error body. The stream must end after it.</summary>
    public void WriteError(IBufferWriter<byte> output, ErrorInfo error)
    {
        ArgumentNullException.ThrowIfNull(error);
        BeginFrame(output, "error"u8);
        AnthropicErrors.Write(_json, AnthropicErrors.TypeOf(error), error.Message);
        EndFrame(output);
    }

    // An Anthropic upstream's content-block event, byte for byte under its own index (the translated blocks' numbering
    // continues after it, should any follow).
    private bool WriteBlock(IBufferWriter<byte> output, AnthropicBlockEvent block)
    {
        CloseOpenBlock(output);
        _nextBlock = Math.Max(_nextBlock, block.Index + 1);
        ReadOnlySpan<byte> type = block.Type switch
        {
            "content_block_start" => "content_block_start"u8,
            "content_block_delta" => "content_block_delta"u8,
            "content_block_stop" => "content_block_stop"u8,
            _ => System.Text.Encoding.UTF8.GetBytes(block.Type),
        };
        Sse.SseWriter.WriteEventType(output, type);
        Sse.SseWriter.WriteData(output, block.Json.Span);
        return true;
    }

    private bool WriteText(IBufferWriter<byte> output, string text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        if (!_openIsText)
        {
            CloseOpenBlock(output);
            _openBlock = _nextBlock++;
            _openIsText = true;
            BeginFrame(output, "content_block_start"u8);
            _json.WriteStartObject();
            _json.WriteString("type"u8, "content_block_start"u8);
            _json.WriteNumber("index"u8, _openBlock);
            _json.WriteStartObject("content_block"u8);
            _json.WriteString("type"u8, "text"u8);
            _json.WriteString("text"u8, string.Empty);
            _json.WriteEndObject();
            _json.WriteEndObject();
            EndFrame(output);
        }

        BeginFrame(output, "content_block_delta"u8);
        _json.WriteStartObject();
        _json.WriteString("type"u8, "content_block_delta"u8);
        _json.WriteNumber("index"u8, _openBlock);
        _json.WriteStartObject("delta"u8);
        _json.WriteString("type"u8, "text_delta"u8);
        _json.WriteString("text"u8, text);
        _json.WriteEndObject();
        _json.WriteEndObject();
        EndFrame(output);
        return true;
    }

    private bool WriteTool(IBufferWriter<byte> output, ToolCallDeltaEvent tool)
    {
        var wrote = false;
        if (!_toolBlocks.TryGetValue(tool.ToolIndex, out var block))
        {
            CloseOpenBlock(output);
            block = _nextBlock++;
            _openBlock = block;
            _toolBlocks[tool.ToolIndex] = block;
            BeginFrame(output, "content_block_start"u8);
            _json.WriteStartObject();
            _json.WriteString("type"u8, "content_block_start"u8);
            _json.WriteNumber("index"u8, block);
            _json.WriteStartObject("content_block"u8);
            _json.WriteString("type"u8, "tool_use"u8);
            _json.WriteString("id"u8, string.IsNullOrEmpty(tool.Id) ? "toolu_" + Guid.NewGuid().ToString("N") : tool.Id);
            _json.WriteString("name"u8, tool.Name ?? string.Empty);
            _json.WriteStartObject("input"u8);
            _json.WriteEndObject();
            _json.WriteEndObject();
            _json.WriteEndObject();
            EndFrame(output);
            wrote = true;
        }

        if (string.IsNullOrEmpty(tool.ArgumentsFragment))
        {
            return wrote;
        }

        BeginFrame(output, "content_block_delta"u8);
        _json.WriteStartObject();
        _json.WriteString("type"u8, "content_block_delta"u8);
        _json.WriteNumber("index"u8, block);
        _json.WriteStartObject("delta"u8);
        _json.WriteString("type"u8, "input_json_delta"u8);
        _json.WriteString("partial_json"u8, tool.ArgumentsFragment);
        _json.WriteEndObject();
        _json.WriteEndObject();
        EndFrame(output);
        return true;
    }

    private void CloseOpenBlock(IBufferWriter<byte> output)
    {
        if (_openBlock < 0)
        {
            return;
        }

        BeginFrame(output, "content_block_stop"u8);
        _json.WriteStartObject();
        _json.WriteString("type"u8, "content_block_stop"u8);
        _json.WriteNumber("index"u8, _openBlock);
        _json.WriteEndObject();
        EndFrame(output);
        _openBlock = -1;
        _openIsText = false;
    }

    /// <summary>Writes <c>event: {type}\ndata: </c> and points the JSON writer at <paramref name="output"/>.</summary>
    private void BeginFrame(IBufferWriter<byte> output, ReadOnlySpan<byte> eventType)
    {
        Write(output, "event: "u8);
        Write(output, eventType);
        Write(output, "\ndata: "u8);
        _json.Reset(output);
    }

    private void EndFrame(IBufferWriter<byte> output)
    {
        _json.Flush();
        Write(output, "\n\n"u8);
    }

    private static void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> bytes)
    {
        var span = output.GetSpan(bytes.Length);
        bytes.CopyTo(span);
        output.Advance(bytes.Length);
    }
}
