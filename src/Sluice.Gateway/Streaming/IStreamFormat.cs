using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// A wire format for streamed answers over SSE. The relay owns pacing, pings, flushing, cancellation and
/// accounting; a format only turns events into frames, so each format is written once.
/// </summary>
internal interface IStreamFormat
{
    /// <summary>Writes a frame for an answer event (text, tool call, finish); returns false if it has none.</summary>
    bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent);

    /// <summary>Writes the frames that end a successful stream.</summary>
    /// <returns>How many sequence numbers were used.</returns>
    int WriteEnd(IBufferWriter<byte> output, long nextSequence, ChatUsage usage);

    /// <summary>Writes the error frame that ends a failed stream (no success marker after it).</summary>
    void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error);
}
