using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Completions;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Streaming;

/// <summary>Legacy completion SSE: <c>text_completion</c> chunks, an optional usage chunk, then <c>[DONE]</c>; <c>: ping</c> keeps it alive.</summary>
internal sealed class CompletionStreamFormat(CompletionStreamWriter writer, bool includeUsage) : IStreamFormat, IChunkBatchFormat
{
    public string ContentType => "text/event-stream";

    public ErrorDialect Errors => ErrorDialect.OpenAI;

    public int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage) => 0;

    public void WritePing(IBufferWriter<byte> output) => output.Write(SseWriter.PingFrame);

    public bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent) =>
        writer.WriteEvent(output, sequence, streamEvent);

    public int WriteBatch(IBufferWriter<byte> output, long firstSequence, OpenAIChunkBatch batch) =>
        writer.WriteBatch(output, firstSequence, batch);

    public int WriteEnd(IBufferWriter<byte> output, long nextSequence, ChatUsage usage)
    {
        if (includeUsage)
        {
            writer.WriteUsage(output, nextSequence, usage);
            SseWriter.WriteEvent(output, nextSequence + 1, "[DONE]"u8);
            return 2;
        }

        SseWriter.WriteEvent(output, nextSequence, "[DONE]"u8);
        return 1;
    }

    public void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error) =>
        writer.WriteError(output, sequence, error);
}
