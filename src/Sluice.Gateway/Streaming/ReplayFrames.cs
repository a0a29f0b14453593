using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Portal;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// The frames a resumable stream's readers write themselves, from any thread and after its writer is gone: the
/// keep-alive frame while they wait, and the error frame that ends a replay whose stream was lost. Immutable and
/// without per-stream buffers.
/// </summary>
/// <remarks>
/// A finished stream is kept for the replay time (seconds to minutes, long enough to reach an older GC generation);
/// keeping its <see cref="IStreamFormat"/> kept the format's per-stream writer, JSON writer and scratch buffer alive with
/// it (measured: ~300 bytes in four objects per kept stream, collected in gen 1). And a reader must not borrow the
/// format's writer: the relay may still be writing with it when a reader of an outgrown stream needs its error frame.
/// </remarks>
internal sealed class ReplayFrames
{
    /// <summary>OpenAI chat and legacy completion streams (the same error frame: <c>data: {"error": …}</c>).</summary>
    public static readonly ReplayFrames OpenAI = new(OpenAIName, null);

    private const string OpenAIName = "openai";
    private const string PortalName = "portal";
    private static readonly ReplayFrames PortalWithoutSession = new(PortalName, null);

    private readonly PortalSession? _session;
    private readonly bool _portal;

    private ReplayFrames(string name, PortalSession? session)
    {
        Name = name;
        _session = session;
        _portal = name == PortalName;
    }

    /// <summary>The format's name in <c>x-sluice-stream-format</c>, so a forwarding instance writes the same error frame.</summary>
    public string Name { get; }

    /// <summary>Every resumable format is Server-Sent Events.</summary>
    public string ContentType => "text/event-stream";

    /// <summary>Portal streams; with a session, the error frame names it as the stream's own would.</summary>
    public static ReplayFrames Portal(PortalSession? session) => session is null ? PortalWithoutSession : new(PortalName, session);

    /// <summary>The frames for a format name from <c>x-sluice-stream-format</c> (unknown or missing: OpenAI's).</summary>
    public static ReplayFrames ForName(string? name) =>
        string.Equals(name, PortalName, StringComparison.Ordinal) ? PortalWithoutSession : OpenAI;

    /// <summary>Writes the keep-alive comment.</summary>
    public void WritePing(IBufferWriter<byte> output) => output.Write(SseWriter.PingFrame);

    /// <summary>Writes the error frame with id <paramref name="sequence"/>; nothing follows it.</summary>
    public void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error)
    {
        // A writer per call: this is the rare end of a lost replay, and readers may write concurrently.
        if (_portal)
        {
            new PortalStreamWriter(_session).WriteError(output, sequence, error);
        }
        else
        {
            new OpenAIChunkWriter(string.Empty, 0, string.Empty).WriteError(output, sequence, error);
        }
    }
}
