using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.OpenAI;

/// <summary>
/// Writes one stream's events as OpenAI <c>chat.completion.chunk</c> Server-Sent Events. Keeps the per-stream
/// state (<c>id</c>, <c>created</c>, <c>model</c>, whether the role was sent) so every chunk carries the same
/// identity. One instance per stream; not thread-safe (a stream is written by one loop).
/// </summary>
public sealed class OpenAIChunkWriter : IOpenAIStreamWriter
{
    // One JSON writer per thread, not per stream: every frame is written in one synchronous call that resets it first,
    // and a forwarded stream writes few frames of its own (often none before its usage chunk) — the writer and the
    // encoded id and model were ~560 bytes per stream, made up front and again when the upstream's identity arrived.
    [ThreadStatic]
    private static Utf8JsonWriter? t_json;

    private string _id;
    private long _created;
    private string _model;
    private string? _systemFingerprint;
    private bool _identityAdopted;
    private ulong _roleSentMask;

    /// <summary>Creates a writer for one stream.</summary>
    public OpenAIChunkWriter(string id, long created, string model, string? systemFingerprint = null)
    {
        _id = id;
        _created = created;
        _model = model;
        _systemFingerprint = systemFingerprint;
    }

    /// <summary>
    /// Whether the chunks this writer makes carry <c>"usage": null</c>, as OpenAI's do when the request set
    /// <c>stream_options.include_usage</c> (some clients read the field on every chunk).
    /// </summary>
    public bool WritesUsageNull { get; init; }

    /// <summary>
    /// Writes <paramref name="streamEvent"/> as one SSE frame with id <paramref name="sseId"/>.
    /// Returns false (writing nothing) for events that have no chunk of their own (usage, errors: see
    /// <see cref="WriteUsage"/> and <see cref="WriteError"/>).
    /// </summary>
    /// <remarks>
    /// An <see cref="OpenAIChunkEvent"/> is written as its upstream JSON, byte for byte; the first one that carries
    /// an identity makes this writer adopt it, so the usage chunk the gateway adds later has the same
    /// <c>id</c>, <c>created</c> and <c>model</c> as the chunks the client already received.
    /// </remarks>
    public bool WriteEvent(IBufferWriter<byte> output, long sseId, ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        switch (streamEvent)
        {
            case OpenAIChunkEvent chunk:
                if (!_identityAdopted && chunk.Identity is { } identity)
                {
                    Adopt(identity);
                }

                SseWriter.WriteEvent(output, sseId, chunk.Json.Span);
                return true;
            case TextDeltaEvent text:
                WriteFrame(output, sseId, text.ChoiceIndex, static (json, e) => json.WriteString(OpenAIJson.Content, ((TextDeltaEvent)e).Text), null, text);
                return true;
            case RefusalDeltaEvent refusal:
                WriteFrame(output, sseId, refusal.ChoiceIndex, static (json, e) => json.WriteString(OpenAIJson.Refusal, ((RefusalDeltaEvent)e).Text), null, refusal);
                return true;
            case ToolCallDeltaEvent tool:
                WriteFrame(output, sseId, tool.ChoiceIndex, static (json, e) => WriteToolCallDelta(json, (ToolCallDeltaEvent)e), null, tool);
                return true;
            case FinishEvent finish:
                WriteFrame(output, sseId, finish.ChoiceIndex, null, finish.Reason, finish);
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// Writes every chunk of <paramref name="batch"/> as its own SSE frame, byte for byte, with ids
    /// <paramref name="firstSseId"/>, <paramref name="firstSseId"/> + 1, …: the same bytes as one
    /// <see cref="WriteEvent"/> per chunk.
    /// </summary>
    /// <returns>How many frames (ids) were written.</returns>
    public int WriteBatch(IBufferWriter<byte> output, long firstSseId, OpenAIChunkBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        for (var i = 0; i < batch.Count; i++)
        {
            WriteBatchChunk(output, firstSseId + i, batch, i);
        }

        return batch.Count;
    }

    /// <inheritdoc />
    public void WriteBatchChunk(IBufferWriter<byte> output, long sseId, OpenAIChunkBatch batch, int index)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!_identityAdopted && batch.IdentityAt(index) is { } identity)
        {
            Adopt(identity);
        }

        SseWriter.WriteEvent(output, sseId, batch.JsonAt(index));
    }

    /// <summary>Makes the chunks this writer writes from now on carry <paramref name="identity"/> (an upstream's).</summary>
    public void Adopt(OpenAIChunkIdentity identity)
    {
        ArgumentNullException.ThrowIfNull(identity);
        _id = identity.Id;
        _created = identity.Created;
        _model = identity.Model;
        _systemFingerprint = identity.SystemFingerprint;
        _identityAdopted = true;
    }

    /// <summary>Writes the final usage chunk: <c>choices: []</c> and <c>usage</c>.</summary>
    public void WriteUsage(IBufferWriter<byte> output, long sseId, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        SseWriter.WriteId(output, sseId);
        WriteDataPrefix(output);
        var json = RentJson(output);
        WriteChunkHeader(json);
        json.WriteStartArray(OpenAIJson.Choices);
        json.WriteEndArray();
        WriteUsageObject(json, usage);
        json.WriteEndObject();
        json.Flush();
        ReturnJson(json);
        WriteFrameEnd(output);
    }

    /// <summary>Writes an error frame <c>data: {"error": {...}}</c>. The stream must end after it, without [DONE].</summary>
    public void WriteError(IBufferWriter<byte> output, long sseId, ErrorInfo error)
    {
        SseWriter.WriteId(output, sseId);
        WriteDataPrefix(output);
        var json = RentJson(output);
        OpenAIErrorWriter.Write(json, error);
        json.Flush();
        ReturnJson(json);
        WriteFrameEnd(output);
    }

    /// <summary>Writes the end-of-stream sentinel <c>data: [DONE]</c>.</summary>
    public static void WriteDone(IBufferWriter<byte> output, long sseId) =>
        SseWriter.WriteEvent(output, sseId, "[DONE]"u8);

    internal static void WriteUsageObject(Utf8JsonWriter json, ChatUsage usage)
    {
        json.WriteStartObject(OpenAIJson.Usage);
        json.WriteNumber(OpenAIJson.PromptTokens, usage.PromptTokens);
        json.WriteNumber(OpenAIJson.CompletionTokens, usage.CompletionTokens);
        json.WriteNumber(OpenAIJson.TotalTokens, usage.TotalTokens);
        if (usage.Details is { } details)
        {
            // As OpenAI reports them; Anthropic's cache writes are prompt tokens with no OpenAI field of their own.
            json.WriteStartObject("prompt_tokens_details"u8);
            json.WriteNumber("cached_tokens"u8, details.CachedPromptTokens);
            json.WriteEndObject();
            json.WriteStartObject("completion_tokens_details"u8);
            json.WriteNumber("reasoning_tokens"u8, details.ReasoningTokens);
            json.WriteEndObject();
        }

        json.WriteEndObject();
    }

    private static void WriteToolCallDelta(Utf8JsonWriter json, ToolCallDeltaEvent tool)
    {
        json.WriteStartArray(OpenAIJson.ToolCalls);
        json.WriteStartObject();
        json.WriteNumber(OpenAIJson.Index, tool.ToolIndex);
        if (tool.Id is not null)
        {
            json.WriteString(OpenAIJson.Id, tool.Id);
            json.WriteString(OpenAIJson.Type, OpenAIJson.FunctionType);
        }

        json.WriteStartObject(OpenAIJson.Function);
        if (tool.Name is not null)
        {
            json.WriteString(OpenAIJson.Name, tool.Name);
        }

        if (tool.ArgumentsFragment is not null || tool.Id is not null)
        {
            json.WriteString(OpenAIJson.Arguments, tool.ArgumentsFragment ?? string.Empty);
        }

        json.WriteEndObject();
        json.WriteEndObject();
        json.WriteEndArray();
    }

    private static void WriteDataPrefix(IBufferWriter<byte> output)
    {
        var span = output.GetSpan(6);
        "data: "u8.CopyTo(span);
        output.Advance(6);
    }

    private static void WriteFrameEnd(IBufferWriter<byte> output)
    {
        var span = output.GetSpan(2);
        span[0] = (byte)'\n';
        span[1] = (byte)'\n';
        output.Advance(2);
    }

    private void WriteChunkHeader(Utf8JsonWriter json)
    {
        json.WriteStartObject();
        json.WriteString(OpenAIJson.Id, _id);
        json.WriteString(OpenAIJson.Object, OpenAIJson.ChunkObject);
        json.WriteNumber(OpenAIJson.Created, _created);
        json.WriteString(OpenAIJson.Model, _model);
        if (_systemFingerprint is not null)
        {
            json.WriteString(OpenAIJson.SystemFingerprint, _systemFingerprint);
        }
    }

    private static Utf8JsonWriter RentJson(IBufferWriter<byte> output)
    {
        var json = t_json ??= new Utf8JsonWriter(Stream.Null, OpenAIJson.WriterOptions);
        json.Reset(output);
        return json;
    }

    // The thread's writer lets go of the stream's output (it would otherwise keep it alive until the next frame).
    private static void ReturnJson(Utf8JsonWriter json) => json.Reset(Stream.Null);

    private void WriteFrame(
        IBufferWriter<byte> output,
        long sseId,
        int choiceIndex,
        Action<Utf8JsonWriter, ChatStreamEvent>? writeDelta,
        string? finishReason,
        ChatStreamEvent streamEvent)
    {
        SseWriter.WriteId(output, sseId);
        WriteDataPrefix(output);
        var json = RentJson(output);
        WriteChunkHeader(json);
        json.WriteStartArray(OpenAIJson.Choices);
        json.WriteStartObject();
        json.WriteNumber(OpenAIJson.Index, choiceIndex);
        json.WriteStartObject(OpenAIJson.Delta);
        if (writeDelta is not null && MarkRoleSent(choiceIndex))
        {
            json.WriteString(OpenAIJson.Role, OpenAIJson.Assistant);
        }

        writeDelta?.Invoke(json, streamEvent);
        json.WriteEndObject();
        OpenAILogprobs.Write(json, (streamEvent as TextDeltaEvent)?.Logprobs);
        if (finishReason is null)
        {
            json.WriteNull(OpenAIJson.FinishReason);
        }
        else
        {
            json.WriteString(OpenAIJson.FinishReason, finishReason);
        }

        json.WriteEndObject();
        json.WriteEndArray();
        if (WritesUsageNull)
        {
            json.WriteNull(OpenAIJson.Usage);
        }

        json.WriteEndObject();
        json.Flush();
        ReturnJson(json);
        WriteFrameEnd(output);
    }

    /// <summary>Returns true the first time it is called for a choice: that chunk carries <c>role</c>.</summary>
    private bool MarkRoleSent(int choiceIndex)
    {
        if (choiceIndex >= 64)
        {
            return false;
        }

        var bit = 1UL << choiceIndex;
        if ((_roleSentMask & bit) != 0)
        {
            return false;
        }

        _roleSentMask |= bit;
        return true;
    }
}
