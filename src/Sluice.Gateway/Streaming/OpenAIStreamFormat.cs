using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Gateway.Streaming;

/// <summary>OpenAI <c>chat.completion.chunk</c> frames, an optional usage chunk, then <c>[DONE]</c>.</summary>
internal sealed class OpenAIStreamFormat(OpenAIChunkWriter writer, bool includeUsage) : IStreamFormat
{
    public bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent) =>
        writer.WriteEvent(output, sequence, streamEvent);

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
