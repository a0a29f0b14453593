using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace Sluice.Providers.Buffers;

/// <summary>
/// A pool of same-sized byte buffers for what a stream holds for its whole life (its upstream read buffer, its frame
/// scratch), allocated on the pinned object heap and kept for reuse up to a fixed count.
/// </summary>
/// <remarks>
/// <para>Why not <see cref="System.Buffers.ArrayPool{T}.Shared"/>: it keeps a few dozen arrays per size, so with
/// thousands of streams open at once it runs dry, and every further rent is a new array in generation 0 that the
/// collections then copy into generation 1 and 2 for as long as the stream lives. Measured with
/// <c>bench/proxied-streams.sh</c> (8,000 streams opened at 1,000 a second): 16 KiB arrays were 56 % of the bytes the
/// gateway allocated, and the opening seconds ran 30 generation-1 collections that paused it ~1 s in all. Arrays on the
/// pinned object heap are never moved (a collection does not copy them) and do not count against generation 0's
/// budget; they hold no references, so pinning them costs nothing.</para>
/// <para>A returned buffer is kept while fewer than <see cref="MaxRetained"/> are (what a busy gateway reuses at
/// once); past that, and for a buffer of another size (one grown for a long line), it is left to the collector, so an
/// idle gateway holds at most <see cref="BufferBytes"/> × <see cref="MaxRetained"/> bytes here. The last buffer returned
/// on each core is rented first on that core (still in its cache), the others in the order they came back. Renting and
/// returning are lock-free and allocate nothing once the pool is warm. Thread-safe.</para>
/// </remarks>
public sealed class PinnedBufferPool
{
    private readonly ConcurrentQueue<byte[]> _free = new();

    // One buffer per core in front of the queue, so a stream started where the last one ended reuses its buffer while it
    // is still in that core's cache (the queue alone hands out the least recently used one).
    private readonly byte[]?[] _hot = new byte[]?[Math.Min(Environment.ProcessorCount, 64)];
    private int _retained;

    /// <param name="bufferBytes">The length of every buffer.</param>
    /// <param name="maxRetained">Most returned buffers kept for reuse.</param>
    public PinnedBufferPool(int bufferBytes, int maxRetained)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(maxRetained);
        BufferBytes = bufferBytes;
        MaxRetained = maxRetained;
    }

    /// <summary>The length of every buffer this pool hands out.</summary>
    public int BufferBytes { get; }

    /// <summary>Most returned buffers kept for reuse.</summary>
    public int MaxRetained { get; }

    /// <summary>Buffers kept for reuse now.</summary>
    public int Retained => Volatile.Read(ref _retained);

    /// <summary>A buffer of <see cref="BufferBytes"/> bytes (contents undefined): a kept one, or a new pinned one.</summary>
    public byte[] Rent()
    {
        var buffer = Interlocked.Exchange(ref _hot[Thread.GetCurrentProcessorId() % _hot.Length], null);
        if (buffer is not null || _free.TryDequeue(out buffer) || TakeAnyHot(out buffer))
        {
            Interlocked.Decrement(ref _retained);
            return buffer;
        }

        return GC.AllocateUninitializedArray<byte>(BufferBytes, pinned: true);
    }

    /// <summary>
    /// Gives a buffer back. The caller must not touch it afterwards (nor may anything still write into it, such as a
    /// pending socket read). Buffers of another length are left to the collector.
    /// </summary>
    public void Return(byte[] buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (buffer.Length != BufferBytes)
        {
            return;
        }

        if (Interlocked.Increment(ref _retained) > MaxRetained)
        {
            Interlocked.Decrement(ref _retained);
            return;
        }

        if (Interlocked.CompareExchange(ref _hot[Thread.GetCurrentProcessorId() % _hot.Length], buffer, null) is not null)
        {
            _free.Enqueue(buffer);
        }
    }

    /// <summary>
    /// Gives back a buffer that is either this pool's or one its user grew into from
    /// <see cref="System.Buffers.ArrayPool{T}.Shared"/> (larger than <see cref="BufferBytes"/>): each goes back where it
    /// came from.
    /// </summary>
    public void Release(byte[] buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (buffer.Length == BufferBytes)
        {
            Return(buffer);
        }
        else
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // Only when this core's slot and the queue are empty: a buffer kept on another core (the thread moved between the
    // return and this rent) is still better than a new one.
    private bool TakeAnyHot([NotNullWhen(true)] out byte[]? buffer)
    {
        for (var i = 0; i < _hot.Length; i++)
        {
            if (Volatile.Read(ref _hot[i]) is not null && Interlocked.Exchange(ref _hot[i], null) is { } taken)
            {
                buffer = taken;
                return true;
            }
        }

        buffer = null;
        return false;
    }
}
