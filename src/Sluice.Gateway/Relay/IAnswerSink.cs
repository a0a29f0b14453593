using Sluice.Protocol;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Relay;

/// <summary>
/// Where one answer goes: an HTTP response in a dialect's stream format (SSE or NDJSON) or as one body, a
/// WebSocket request's messages, an MQTT reply topic. The <see cref="StreamRelay"/> drives it; a sink owns its
/// framing, its pacing and its transport's quirks, and nothing else — the consume loop, error handling, outcome
/// and usage are the relay's, written once.
/// </summary>
/// <remarks>
/// Call order: <see cref="Open"/>; then <see cref="WriteAsync"/>, <see cref="FlushAsync"/>, <see cref="Idle"/> /
/// <see cref="BusyAsync"/> any number of times; then one of <see cref="CompleteAsync"/>, <see cref="FailAsync"/>,
/// <see cref="AbandonAsync"/>; then <c>DisposeAsync</c>. One caller at a time.
/// </remarks>
internal interface IAnswerSink : IAsyncDisposable
{
    /// <summary>Stops the generation: the client's connection, or what outlives it (a resumable stream's token).</summary>
    CancellationToken Generation { get; }

    /// <summary>
    /// Why <see cref="Generation"/> was cancelled when it was not the client leaving (the bridge or gateway shutting
    /// down, the transport lost): the answer then fails with this error. Null: the client left (the answer is abandoned).
    /// </summary>
    ChatException? CancellationReason { get; }

    /// <summary>Whether the sink writes <see cref="OpenAIChunkBatch"/> events as they are (the OpenAI SSE format).</summary>
    bool AcceptsChunkBatches { get; }

    /// <summary>Whether anything went to the client; from then on an error is an error frame, not an error response.</summary>
    bool Started { get; }

    /// <summary>Bytes written and not flushed (0 where the sink does not buffer).</summary>
    long PendingBytes { get; }

    /// <summary>Called once, before anything else, with the meter of this answer (for opening frames that carry usage).</summary>
    void Open(UsageMeter meter);

    /// <summary>Writes one answer event (never a usage event); false when it makes no frame in this format.</summary>
    ValueTask<bool> WriteAsync(ChatStreamEvent streamEvent);

    /// <summary>Sends what is written.</summary>
    ValueTask FlushAsync();

    /// <summary>The backend has nothing ready: keep-alive frames may go out until <see cref="BusyAsync"/>.</summary>
    void Idle();

    /// <summary>The relay writes again: waits for a keep-alive frame being written.</summary>
    ValueTask BusyAsync();

    /// <summary>Ends a successful answer with the format's closing frames and <paramref name="usage"/>.</summary>
    ValueTask CompleteAsync(ChatUsage usage, string? finishReason);

    /// <summary>Ends a failed answer: an error response in the dialect's shape before the first byte, an error frame after.</summary>
    ValueTask FailAsync(ChatException error);

    /// <summary>The generation was cancelled; a sink that still has a reader (a resumable stream's buffer) says so.</summary>
    ValueTask AbandonAsync();
}
