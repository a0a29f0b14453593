using System.Buffers;
using Sluice.Protocol;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Streaming;

/// <summary>
/// A wire format for streamed answers (OpenAI SSE, Anthropic SSE, Ollama NDJSON). The relay owns pacing, pings,
/// flushing, cancellation and accounting; a format owns its framing — content type, opening frame, keep-alive frame,
/// answer frames, closing frames, error frame and error bodies — so each format is written once.
/// </summary>
internal interface IStreamFormat
{
    /// <summary>The response content type, e.g. <c>text/event-stream</c> or <c>application/x-ndjson</c>.</summary>
    string ContentType { get; }

    /// <summary>How errors before the first byte are written (status and body shape).</summary>
    ErrorDialect Errors { get; }

    /// <summary>
    /// What a resumable stream in this format keeps for its readers (keep-alive and error frames, without this format's
    /// per-stream state); null for a format whose streams are not kept for resume.
    /// </summary>
    ReplayFrames? Replay { get; }

    /// <summary>
    /// Writes the frames that open the stream, right after the headers (Anthropic's <c>message_start</c>);
    /// <paramref name="usage"/> holds the backend's counts if it reported any yet, else estimates.
    /// </summary>
    /// <returns>How many sequence numbers were used.</returns>
    int WriteStart(IBufferWriter<byte> output, long sequence, ChatUsage usage);

    /// <summary>Writes one keep-alive frame, sent while the backend is silent.</summary>
    void WritePing(IBufferWriter<byte> output);

    /// <summary>Writes a frame for an answer event (text, tool call, finish); returns false if it has none.</summary>
    bool WriteEvent(IBufferWriter<byte> output, long sequence, ChatStreamEvent streamEvent);

    /// <summary>Writes the frames that end a successful stream.</summary>
    /// <returns>How many sequence numbers were used.</returns>
    int WriteEnd(IBufferWriter<byte> output, long nextSequence, ChatUsage usage);

    /// <summary>Writes the error frame that ends a failed stream (no success marker after it).</summary>
    void WriteError(IBufferWriter<byte> output, long sequence, ErrorInfo error);
}

/// <summary>
/// A format whose opening frame carries what the backend said before its content (<see cref="AnswerStartEvent"/>: an
/// upstream's message id, prompt count and service tier). The sink hands it over before <see cref="IStreamFormat.WriteStart"/>
/// when the backend's first event brought it.
/// </summary>
internal interface IAnswerStartFormat
{
    /// <summary>The backend's opening facts; called at most once, before the opening frame.</summary>
    void OnAnswerStart(AnswerStartEvent start);
}
