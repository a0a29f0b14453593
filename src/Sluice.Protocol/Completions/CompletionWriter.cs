using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.Completions;

/// <summary>
/// Writes one legacy completion stream as <c>text_completion</c> Server-Sent Events: an OpenAI-compatible upstream's
/// chunks byte for byte (adopting its identity), chunks of its own for other backends' text and finishes, then the usage
/// chunk when asked for and <c>[DONE]</c>. One instance per stream; not thread-safe.
/// </summary>
public sealed class CompletionStreamWriter : Sluice.Protocol.OpenAI.IOpenAIStreamWriter
{
    private readonly Utf8JsonWriter _json = new(Stream.Null, OpenAIJson.WriterOptions);
    private readonly Dictionary<int, int> _textLength = [];
    private JsonEncodedText _id;
    private long _created;
    private JsonEncodedText _model;
    private bool _identityAdopted;

    /// <summary>Creates a writer for one stream.</summary>
    public CompletionStreamWriter(string id, long created, string model)
    {
        _id = JsonEncodedText.Encode(id);
        _created = created;
        _model = JsonEncodedText.Encode(model);
    }

    /// <summary>Whether its chunks carry <c>"usage": null</c> (the request set <c>stream_options.include_usage</c>).</summary>
    public bool WritesUsageNull { get; init; }

    /// <summary>Writes one event as a frame with id <paramref name="sseId"/>; false for events without one (usage, errors).</summary>
    public bool WriteEvent(IBufferWriter<byte> output, long sseId, ChatStreamEvent streamEvent)
    {
        ArgumentNullException.ThrowIfNull(streamEvent);
        switch (streamEvent)
        {
            case OpenAIChunkEvent chunk:
                Adopt(chunk.Identity);
                SseWriter.WriteEvent(output, sseId, chunk.Json.Span);
                return true;
            case TextDeltaEvent text:
                WriteChunk(output, sseId, text.ChoiceIndex, text.Text, text.Logprobs, null);
                return true;
            case FinishEvent finish:
                WriteChunk(output, sseId, finish.ChoiceIndex, string.Empty, null, finish.Reason);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Writes a batch of passed-through chunks, one frame each, with ids from <paramref name="firstSseId"/> on.</summary>
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
        Adopt(batch.IdentityAt(index));
        SseWriter.WriteEvent(output, sseId, batch.JsonAt(index));
    }

    /// <summary>Writes the usage chunk: <c>choices: []</c> and <c>usage</c>.</summary>
    public void WriteUsage(IBufferWriter<byte> output, long sseId, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        BeginFrame(output, sseId);
        WriteHeader();
        _json.WriteStartArray(OpenAIJson.Choices);
        _json.WriteEndArray();
        OpenAIChunkWriter.WriteUsageObject(_json, usage);
        _json.WriteEndObject();
        EndFrame(output);
    }

    /// <summary>Writes an error frame <c>data: {"error": {...}}</c>; the stream ends after it, without <c>[DONE]</c>.</summary>
    public void WriteError(IBufferWriter<byte> output, long sseId, ErrorInfo error)
    {
        BeginFrame(output, sseId);
        OpenAIErrorWriter.Write(_json, error);
        EndFrame(output);
    }

    private void WriteChunk(IBufferWriter<byte> output, long sseId, int choice, string text, IReadOnlyList<TokenLogprob>? logprobs, string? finishReason)
    {
        _textLength.TryGetValue(choice, out var offset);
        _textLength[choice] = offset + text.Length;
        BeginFrame(output, sseId);
        WriteHeader();
        _json.WriteStartArray(OpenAIJson.Choices);
        _json.WriteStartObject();
        _json.WriteString("text"u8, text);
        _json.WriteNumber(OpenAIJson.Index, choice);
        CompletionLogprobs.Write(_json, logprobs, offset);
        if (finishReason is null)
        {
            _json.WriteNull(OpenAIJson.FinishReason);
        }
        else
        {
            _json.WriteString(OpenAIJson.FinishReason, finishReason);
        }

        _json.WriteEndObject();
        _json.WriteEndArray();
        if (WritesUsageNull)
        {
            _json.WriteNull(OpenAIJson.Usage);
        }

        _json.WriteEndObject();
        EndFrame(output);
    }

    private void WriteHeader()
    {
        _json.WriteStartObject();
        _json.WriteString(OpenAIJson.Id, _id);
        _json.WriteString(OpenAIJson.Object, CompletionBodyWriter.ObjectName);
        _json.WriteNumber(OpenAIJson.Created, _created);
        _json.WriteString(OpenAIJson.Model, _model);
    }

    private void Adopt(OpenAIChunkIdentity? identity)
    {
        if (_identityAdopted || identity is null)
        {
            return;
        }

        // The usage chunk Sluice adds carries the upstream's id, created and model, like the chunks before it.
        _id = JsonEncodedText.Encode(identity.Id);
        _created = identity.Created;
        _model = JsonEncodedText.Encode(identity.Model);
        _identityAdopted = true;
    }

    private void BeginFrame(IBufferWriter<byte> output, long sseId)
    {
        SseWriter.WriteId(output, sseId);
        output.Write("data: "u8);
        _json.Reset(output);
    }

    private void EndFrame(IBufferWriter<byte> output)
    {
        _json.Flush();
        output.Write("\n\n"u8);
    }
}

/// <summary>Writes a non-streamed legacy completion: <c>{"id", "object": "text_completion", "created", "model", "choices", "usage"}</c>.</summary>
public static class CompletionBodyWriter
{
    /// <summary>The <c>object</c> of completions and their chunks.</summary>
    public const string ObjectName = "text_completion";

    /// <summary>Writes the completion from assembled choices (text, logprobs, finish reason) and usage.</summary>
    public static void Write(IBufferWriter<byte> output, string id, long created, string model, IEnumerable<AssembledChoice> choices, ChatUsage usage)
    {
        ArgumentNullException.ThrowIfNull(choices);
        ArgumentNullException.ThrowIfNull(usage);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString(OpenAIJson.Id, id);
        json.WriteString(OpenAIJson.Object, ObjectName);
        json.WriteNumber(OpenAIJson.Created, created);
        json.WriteString(OpenAIJson.Model, model);
        json.WriteStartArray(OpenAIJson.Choices);
        foreach (var choice in choices)
        {
            var text = choice.Content ?? string.Empty;
            json.WriteStartObject();
            json.WriteString("text"u8, text);
            json.WriteNumber(OpenAIJson.Index, choice.Index);

            // Logprobs cover the generated tokens, which end the text (an echoed prompt has none of its own here).
            var logprobs = choice.Logprobs;
            var generated = logprobs?.Sum(t => t.Token.Length) ?? 0;
            CompletionLogprobs.Write(json, logprobs, Math.Max(0, text.Length - generated));
            OpenAIErrorWriter.WriteNullableString(json, OpenAIJson.FinishReason, choice.FinishReason ?? FinishReasons.Stop);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        OpenAIChunkWriter.WriteUsageObject(json, usage);
        json.WriteEndObject();
    }
}
