using System.Buffers;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.OpenAI;

/// <summary>
/// Writes the frames of an OpenAI-style SSE stream (chat <c>chat.completion.chunk</c> or legacy <c>text_completion</c>):
/// both end with an optional usage chunk and <c>data: [DONE]</c>, so one stream format serves them.
/// </summary>
public interface IOpenAIStreamWriter
{
    /// <summary>Writes the frame for <paramref name="streamEvent"/>, if it has one.</summary>
    /// <returns>True when a frame was written (a sequence number used).</returns>
    bool WriteEvent(IBufferWriter<byte> output, long sseId, ChatStreamEvent streamEvent);

    /// <summary>Writes one frame per chunk of <paramref name="batch"/>.</summary>
    /// <returns>How many sequence numbers were used.</returns>
    int WriteBatch(IBufferWriter<byte> output, long firstSseId, OpenAIChunkBatch batch);

    /// <summary>
    /// Writes the frame of chunk <paramref name="index"/> of <paramref name="batch"/> alone: what <see cref="WriteBatch"/>
    /// writes for it, for a caller that needs to know where each frame ends (a resumable stream keeps frames apart).
    /// </summary>
    void WriteBatchChunk(IBufferWriter<byte> output, long sseId, OpenAIChunkBatch batch, int index);

    /// <summary>Writes the usage chunk (<c>stream_options.include_usage</c>).</summary>
    void WriteUsage(IBufferWriter<byte> output, long sseId, ChatUsage usage);

    /// <summary>Writes an error frame.</summary>
    void WriteError(IBufferWriter<byte> output, long sseId, ErrorInfo error);
}
