using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.Ollama;

namespace Sluice.Gateway.Streaming;

/// <summary>Ollama NDJSON: a line per piece of text, a <c>done</c> line, an <c>{"error"}</c> line on failure.</summary>
internal sealed class OllamaStreamFormat(OllamaStreamWriter writer) : IStreamFormat
{
    public string ContentType => "application/x-ndjson";

    public ErrorDialect Errors => ErrorDialect.Ollama;

    public ReplayFrames? Replay => null;

    public int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage) => 0;

    public void WritePing(IBufferWriter<byte> output) => writer.WritePing(output);

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
