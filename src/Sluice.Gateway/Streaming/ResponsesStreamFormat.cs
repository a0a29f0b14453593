using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.Responses;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// The Responses API stream (<c>event: response.…</c> + <c>data: {…, "sequence_number"}</c>); <c>: ping</c> comments keep it
/// alive. The opening <c>response.created</c>/<c>response.in_progress</c> go out with the first answer event, not with the
/// headers: only then is it known whether the upstream sends its own (passed through) or Sluice writes them.
/// </summary>
internal sealed class ResponsesStreamFormat(ResponsesStreamWriter writer) : IStreamFormat
{
    public string ContentType => "text/event-stream";

    public ErrorDialect Errors => ErrorDialect.OpenAI;

    public ReplayFrames? Replay => null;

    public int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage) => 0;

    public void WritePing(IBufferWriter<byte> output) => output.Write(SseWriter.PingFrame);

    public bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent) =>
        writer.WriteEvent(output, streamEvent);

    public int WriteEnd(IBufferWriter<byte> output, long nextSequence, ChatUsage usage)
    {
        writer.WriteEnd(output, usage);
        return 1;
    }

    public void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error) =>
        writer.WriteError(output, error);
}
