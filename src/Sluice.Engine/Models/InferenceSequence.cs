using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Sluice.Engine.Models;

/// <summary>
/// One token sequence being evaluated by a model: its key/value cache (f32, or f16 with <see cref="KvCacheType.F16"/>) (every layer, every position up to
/// <see cref="ContextSize"/>, allocated up front) and how many positions are filled. Each layer's cache is stored head
/// by head (<c>[kv head][position][head dimension]</c>): attention reads one head's keys and values for every position,
/// and as one contiguous run they stream from memory faster than rows strided by the whole key length. Several sequences can be
/// evaluated in one batch by <see cref="LocalModel.Evaluate(IReadOnlyList{BatchEntry}, CancellationToken)"/>. Not thread-safe; a sequence belongs to one model.
/// </summary>
public sealed unsafe class InferenceSequence
{
    private readonly byte[][] _keys;
    private readonly byte[][] _values;
    private readonly long _headBytes;

    internal InferenceSequence(LocalModel owner, int contextSize, int layers, int kvLength, int kvHeads, KvCacheType type)
    {
        Owner = owner;
        ContextSize = contextSize;
        KvLength = kvLength;
        CacheType = type;
        var size = ElementSize(type);
        _headBytes = (long)contextSize * (kvLength / kvHeads) * size;
        _keys = new byte[layers][];
        _values = new byte[layers][];
        for (var l = 0; l < layers; l++)
        {
            // Pinned: the forward pass addresses the cache through pointers.
            _keys[l] = GC.AllocateUninitializedArray<byte>(checked(contextSize * kvLength * size), pinned: true);
            _values[l] = GC.AllocateUninitializedArray<byte>(checked(contextSize * kvLength * size), pinned: true);
        }
    }

    /// <summary>Positions this sequence can hold.</summary>
    public int ContextSize { get; }

    /// <summary>Positions filled so far (the next token goes at this position).</summary>
    public int Length { get; internal set; }

    /// <summary>Bytes of the key/value cache.</summary>
    public long KvCacheBytes => 2L * _keys.Length * ContextSize * KvLength * ElementSize(CacheType);

    /// <summary>Element type of the cache.</summary>
    public KvCacheType CacheType { get; }

    internal LocalModel Owner { get; }

    internal int KvLength { get; }

    /// <summary>Forgets positions from <paramref name="length"/> on (0 clears the sequence), e.g. to reuse a shared prefix.</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }

    /// <summary>Bytes per cached value of a cache of <paramref name="type"/>.</summary>
    internal static int ElementSize(KvCacheType type) => type == KvCacheType.F16 ? sizeof(ushort) : sizeof(float);

    /// <summary>Keys of <paramref name="kvHead"/> in <paramref name="layer"/> (f32 or f16 per <see cref="CacheType"/>): position p at element <c>p · head dimension</c>.</summary>
    internal byte* Keys(int layer, int kvHead) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_keys[layer])) + (kvHead * _headBytes);

    /// <summary>Values of <paramref name="kvHead"/> in <paramref name="layer"/> (f32 or f16 per <see cref="CacheType"/>): position p at element <c>p · head dimension</c>.</summary>
    internal byte* Values(int layer, int kvHead) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values[layer])) + (kvHead * _headBytes);
}
