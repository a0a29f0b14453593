using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Streaming;

/// <summary>Portal SSE: <c>{"content"}</c> frames, a <c>{"done", "usage"}</c> frame, <c>{"error"}</c> on failure; <c>: ping</c> comments.</summary>
internal sealed class PortalStreamFormat(PortalStreamWriter writer) : IStreamFormat
{
    public string ContentType => "text/event-stream";

    public ErrorDialect Errors => ErrorDialect.OpenAI;

    public ReplayFrames? Replay => ReplayFrames.Portal(writer.Session);

    public int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage) => 0;

    public void WritePing(IBufferWriter<byte> output) => output.Write(SseWriter.PingFrame);

    public bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent) =>
        writer.WriteEvent(output, sequence, streamEvent);

    public int WriteEnd(IBufferWriter<byte> output, long nextSequence, ChatUsage usage)
    {
        writer.WriteDone(output, nextSequence, usage);
        return 1;
    }

    public void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error) =>
        writer.WriteError(output, sequence, error);
}
