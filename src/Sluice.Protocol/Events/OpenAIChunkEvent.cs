namespace Sluice.Protocol.Events;

/// <summary>
/// One upstream OpenAI <c>chat.completion.chunk</c>, kept as the exact JSON bytes the upstream sent, together
/// with the answer events decoded from it.
/// </summary>
/// <remarks>
/// When the upstream already speaks the client's format, the gateway forwards <see cref="Json"/> verbatim
/// (tool-call deltas, refusals, logprobs and fields Sluice does not know survive untouched, and nothing is
/// re-serialized); accounting and answer assembly read <see cref="Events"/> instead of parsing again.
/// </remarks>
public sealed class OpenAIChunkEvent : ChatStreamEvent
{
    private IReadOnlyList<ChatStreamEvent>? _events;

    /// <summary>Creates the event.</summary>
    /// <param name="json">The chunk's JSON, exactly as received (the SSE <c>data</c> value).</param>
    /// <param name="events">
    /// What it means: text, refusal and tool-call deltas, finishes, and usage if the chunk carried any — or null for a
    /// plain delta chunk, which is then decoded only if a consumer asks for <see cref="Events"/>.
    /// </param>
    /// <param name="identity">The chunk's <c>id</c>/<c>created</c>/<c>model</c>; set on the first chunk of a stream.</param>
    /// <param name="estimatedTokens">For an undecoded chunk: the tokens it is assumed to carry (upstreams send about one per chunk).</param>
    public OpenAIChunkEvent(ReadOnlyMemory<byte> json, IReadOnlyList<ChatStreamEvent>? events, OpenAIChunkIdentity? identity = null, int estimatedTokens = 1)
        : base(0)
    {
        Json = json;
        _events = events;
        Identity = identity;
        EstimatedTokens = estimatedTokens;
    }

    /// <summary>The upstream chunk's JSON bytes, unchanged.</summary>
    public ReadOnlyMemory<byte> Json { get; }

    /// <summary>The answer events the chunk carries, in order; never nested <see cref="OpenAIChunkEvent"/>s. Decoded on first use.</summary>
    public IReadOnlyList<ChatStreamEvent> Events => _events ??= Decode(Json.Span);

    /// <summary>Whether <see cref="Events"/> is already known (a decoded chunk: finish, usage, first of a stream).</summary>
    public bool IsDecoded => _events is not null;

    /// <summary>Tokens assumed for accounting while the chunk is not decoded.</summary>
    public int EstimatedTokens { get; }

    /// <summary>The upstream stream's identity, so chunks the gateway writes itself can match it.</summary>
    public OpenAIChunkIdentity? Identity { get; }

    private static ChatStreamEvent[] Decode(ReadOnlySpan<byte> json)
    {
        var events = new List<ChatStreamEvent>(2);
        var info = Sluice.Protocol.OpenAI.OpenAIChunkDecoder.Decode(json, events);
        if (info.Usage is { } usage)
        {
            events.Add(new UsageEvent(usage));
        }

        return [.. events];
    }
}

/// <summary>The fields that must be equal on every chunk of one OpenAI stream.</summary>
/// <param name="Id">The completion id (<c>chatcmpl-…</c>).</param>
/// <param name="Created">Unix seconds.</param>
/// <param name="Model">The model name as the upstream reports it.</param>
/// <param name="SystemFingerprint">The backend configuration fingerprint, if sent.</param>
public sealed record OpenAIChunkIdentity(string Id, long Created, string Model, string? SystemFingerprint);
