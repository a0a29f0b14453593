using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// OpenAI-style SSE: <c>chat.completion.chunk</c> (or legacy <c>text_completion</c>) frames, an optional usage chunk, then
/// <c>[DONE]</c>; <c>: ping</c> comments keep it alive.
/// </summary>
internal sealed class OpenAIStreamFormat(IOpenAIStreamWriter writer, bool includeUsage) : IStreamFormat, IChunkBatchFormat
{
    public string ContentType => "text/event-stream";

    public ErrorDialect Errors => ErrorDialect.OpenAI;

    public ReplayFrames? Replay => ReplayFrames.OpenAI;

    public int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage) => 0;

    public void WritePing(IBufferWriter<byte> output) => output.Write(SseWriter.PingFrame);

    public bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent) =>
        writer.WriteEvent(output, sequence, streamEvent);

    public int WriteBatch(IBufferWriter<byte> output, long firstSequence, OpenAIChunkBatch batch) =>
        writer.WriteBatch(output, firstSequence, batch);

    public void WriteBatchChunk(IBufferWriter<byte> output, long sequence, OpenAIChunkBatch batch, int index) =>
        writer.WriteBatchChunk(output, sequence, batch, index);

    public int WriteEnd(IBufferWriter<byte> output, long nextSequence, ChatUsage usage)
    {
        if (includeUsage)
        {
            writer.WriteUsage(output, nextSequence, usage);
            OpenAIChunkWriter.WriteDone(output, nextSequence + 1);
            return 2;
        }

        OpenAIChunkWriter.WriteDone(output, nextSequence);
        return 1;
    }

    public void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error) =>
        writer.WriteError(output, sequence, error);
}

/// <summary>
/// A format that writes a whole <see cref="OpenAIChunkBatch"/> in one call (one frame per chunk, the same bytes as one
/// <see cref="IStreamFormat.WriteEvent"/> per chunk). The relay asks upstreams for batches only for such formats.
/// </summary>
internal interface IChunkBatchFormat
{
    /// <summary>Writes one frame per chunk, with sequence numbers from <paramref name="firstSequence"/> on.</summary>
    /// <returns>How many sequence numbers were used.</returns>
    int WriteBatch(IBufferWriter<byte> output, long firstSequence, OpenAIChunkBatch batch);

    /// <summary>Writes the frame of chunk <paramref name="index"/> alone, with sequence number <paramref name="sequence"/>.</summary>
    void WriteBatchChunk(IBufferWriter<byte> output, long sequence, OpenAIChunkBatch batch, int index);
}
