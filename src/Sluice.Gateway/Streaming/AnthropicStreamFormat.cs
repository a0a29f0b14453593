using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Streaming;

/// <summary>Anthropic Messages SSE (<c>message_start</c> … <c>message_stop</c>); <c>event: ping</c> keeps it alive.</summary>
internal sealed class AnthropicStreamFormat(AnthropicStreamWriter writer) : IStreamFormat, IAnswerStartFormat
{
    private AnswerStartEvent? _start;

    public string ContentType => "text/event-stream";

    public ErrorDialect Errors => ErrorDialect.Anthropic;

    public ReplayFrames? Replay => null;

    public void OnAnswerStart(AnswerStartEvent start) => _start = start;

    public int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage)
    {
        writer.WriteStart(output, usage, _start);
        return 1;
    }

    public void WritePing(IBufferWriter<byte> output) => output.Write(AnthropicStreamWriter.PingFrame);

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
