using System.Buffers;

namespace Sluice.Protocol.Events;

/// <summary>
/// Consecutive upstream OpenAI <c>chat.completion.chunk</c>s that arrived together (what one upstream read delivered),
/// as one event: their exact JSON bytes, side by side in one pooled buffer, plus what accounting needs per chunk.
/// </summary>
/// <remarks>
/// <para>A pass-through costs per event, not per byte: with one event per upstream read, the relay writes and decides
/// whether to flush once per read, as a plain byte-copying proxy does, instead of once per chunk. Only consumers that ask
/// for it (the backend call's <c>ChatCallOptions.AcceptsChunkBatches</c>) receive batches; everyone else keeps getting one
/// <see cref="OpenAIChunkEvent"/> per chunk.</para>
/// <para>Chunks the upstream adapter had to decode (the first of a stream, finishes, usage, every chunk when several
/// choices are asked for) keep what they mean (<see cref="EventsAt"/>, <see cref="IdentityAt"/>) next to their bytes in
/// the shared buffer — no copy of their own unless a consumer asks for a stand-alone event (<see cref="ChunkAt"/>); the
/// others are only counted (<see cref="EstimatedTokens"/>). The consumer owns the batch and disposes it once written, which returns
/// the buffer to the pool; nothing read from it may be kept after that (copy what must be kept).</para>
/// </remarks>
public sealed class OpenAIChunkBatch : ChatStreamEvent, IDisposable
{
    private const int InitialBytes = 4 * 1024;

    private byte[] _buffer;
    private int _written;
    // Pooled like the bytes: a 64-chunk answer in one read would otherwise allocate and discard 16, 32, 64 and 128 entries.
    private Entry[] _entries = ArrayPool<Entry>.Shared.Rent(16);
    private int _count;
    private bool _disposed;

    /// <summary>Creates an empty batch with a pooled buffer.</summary>
    public OpenAIChunkBatch()
        : base(0) => _buffer = ArrayPool<byte>.Shared.Rent(InitialBytes);

    /// <summary>How many chunks the batch holds.</summary>
    public int Count => _count;

    /// <summary>The JSON bytes of all chunks together.</summary>
    public int ByteCount => _written;

    /// <summary>Tokens assumed for the chunks that were not decoded (upstreams send about one per chunk).</summary>
    public int EstimatedTokens { get; private set; }

    /// <summary>Whether any chunk was not decoded: such a chunk is a plain content delta, i.e. answer tokens.</summary>
    public bool HasUndecoded { get; private set; }

    /// <summary>Appends a chunk: its JSON (copied) and, if the adapter decoded it, what it means.</summary>
    /// <param name="json">The chunk's JSON, exactly as received.</param>
    /// <param name="events">
    /// The chunk's answer events if the adapter decoded it (an empty list for a decoded chunk that carries none), or
    /// null for a plain delta that was only checked and counted.
    /// </param>
    /// <param name="identity">The stream's identity, on the chunk that carried it (the first).</param>
    /// <param name="estimatedTokens">For an undecoded chunk: the tokens it is assumed to carry.</param>
    public void Add(ReadOnlySpan<byte> json, IReadOnlyList<ChatStreamEvent>? events, OpenAIChunkIdentity? identity = null, int estimatedTokens = 1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_written + json.Length > _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _written + json.Length));
            _buffer.AsSpan(0, _written).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }

        if (_count == _entries.Length)
        {
            var more = ArrayPool<Entry>.Shared.Rent(_entries.Length * 2);
            _entries.AsSpan(0, _count).CopyTo(more);
            ArrayPool<Entry>.Shared.Return(_entries, clearArray: true);
            _entries = more;
        }

        json.CopyTo(_buffer.AsSpan(_written));
        _entries[_count++] = new Entry(_written, json.Length, events, identity);
        _written += json.Length;
        if (events is null)
        {
            HasUndecoded = true;
            EstimatedTokens += estimatedTokens;
        }
    }

    /// <summary>The JSON of chunk <paramref name="index"/>, exactly as received. Valid until the batch is disposed.</summary>
    public ReadOnlySpan<byte> JsonAt(int index)
    {
        var entry = EntryAt(index);
        return _buffer.AsSpan(entry.Offset, entry.Length);
    }

    /// <summary>
    /// The answer events of chunk <paramref name="index"/> if the adapter decoded it (text, refusal and tool-call deltas,
    /// finishes, usage; possibly none), or null for a plain delta it only counted.
    /// </summary>
    public IReadOnlyList<ChatStreamEvent>? EventsAt(int index) => EntryAt(index).Events;

    /// <summary>The stream's identity if chunk <paramref name="index"/> carried it (the first decoded chunk), else null.</summary>
    public OpenAIChunkIdentity? IdentityAt(int index) => EntryAt(index).Identity;

    /// <summary>
    /// Chunk <paramref name="index"/> as a stand-alone <see cref="OpenAIChunkEvent"/> (its JSON copied, so it outlives
    /// the batch), for consumers that handle chunks one at a time.
    /// </summary>
    public OpenAIChunkEvent ChunkAt(int index)
    {
        var entry = EntryAt(index);
        return new OpenAIChunkEvent(_buffer.AsSpan(entry.Offset, entry.Length).ToArray(), entry.Events, entry.Identity);
    }

    /// <summary>
    /// Makes a disposed batch an empty, usable one again (fresh pooled buffers), so the producer that made it can pass
    /// the same object on for its next read. Returns false, changing nothing, while the batch is in use (not disposed).
    /// </summary>
    /// <remarks>
    /// Why: a paced stream's batch is new when the read delivers it and is then stored in the stream's long-lived objects
    /// (the iterators' current event, the relay's state) — each such store of a new object into an old one dirties a card
    /// that the next gen-0 collection scans, and with thousands of streams open that scanning is most of the pause. A
    /// reused batch is old itself. Only the producer may call this, and only for a batch its consumer has disposed (the
    /// contract: nothing read from a batch is kept after its disposal).
    /// </remarks>
    public bool TryReopen()
    {
        if (!Volatile.Read(ref _disposed))
        {
            return false;
        }

        _buffer = ArrayPool<byte>.Shared.Rent(InitialBytes);
        _entries = ArrayPool<Entry>.Shared.Rent(16);
        EstimatedTokens = 0;
        HasUndecoded = false;
        Volatile.Write(ref _disposed, false);
        return true;
    }

    /// <summary>Returns the buffer to the pool. The batch is empty afterwards.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        var buffer = _buffer;
        var entries = _entries;
        _buffer = [];
        _entries = [];
        _written = 0;
        _count = 0;
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        if (entries.Length > 0)
        {
            // Cleared: the entries hold decoded events, which must not outlive the batch in the pool.
            ArrayPool<Entry>.Shared.Return(entries, clearArray: true);
        }

        // Last: a producer that sees the batch disposed may reopen it (TryReopen).
        Volatile.Write(ref _disposed, true);
    }

    private Entry EntryAt(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _count);
        return _entries[index];
    }

    private readonly record struct Entry(int Offset, int Length, IReadOnlyList<ChatStreamEvent>? Events, OpenAIChunkIdentity? Identity);
}
