using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Sluice.Engine.Models;

/// <summary>
/// One token sequence being evaluated by a model: its F32 key/value cache (every layer, every position up to
/// <see cref="ContextSize"/>, allocated up front) and how many positions are filled. Each layer's cache is stored head
/// by head (<c>[kv head][position][head dimension]</c>): attention reads one head's keys and values for every position,
/// and as one contiguous run they stream from memory faster than rows strided by the whole key length. Several sequences can be
/// evaluated in one batch by <see cref="LocalModel.Evaluate(IReadOnlyList{BatchEntry}, CancellationToken)"/>. Not thread-safe; a sequence belongs to one model.
/// </summary>
public sealed unsafe class InferenceSequence
{
    private readonly float[][] _keys;
    private readonly float[][] _values;
    private readonly int _headStride;

    internal InferenceSequence(LocalModel owner, int contextSize, int layers, int kvLength, int kvHeads)
    {
        Owner = owner;
        ContextSize = contextSize;
        KvLength = kvLength;
        _headStride = checked(contextSize * (kvLength / kvHeads));
        _keys = new float[layers][];
        _values = new float[layers][];
        for (var l = 0; l < layers; l++)
        {
            // Pinned: the forward pass addresses the cache through pointers.
            _keys[l] = GC.AllocateUninitializedArray<float>(checked(contextSize * kvLength), pinned: true);
            _values[l] = GC.AllocateUninitializedArray<float>(checked(contextSize * kvLength), pinned: true);
        }
    }

    /// <summary>Positions this sequence can hold.</summary>
    public int ContextSize { get; }

    /// <summary>Positions filled so far (the next token goes at this position).</summary>
    public int Length { get; internal set; }

    /// <summary>Bytes of the key/value cache.</summary>
    public long KvCacheBytes => 2L * _keys.Length * ContextSize * KvLength * sizeof(float);

    internal LocalModel Owner { get; }

    internal int KvLength { get; }

    /// <summary>Forgets positions from <paramref name="length"/> on (0 clears the sequence), e.g. to reuse a shared prefix.</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }

    /// <summary>Keys of <paramref name="kvHead"/> in <paramref name="layer"/>: position p at <c>p · head dimension</c>.</summary>
    internal float* Keys(int layer, int kvHead) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_keys[layer])) + ((long)kvHead * _headStride);

    /// <summary>Values of <paramref name="kvHead"/> in <paramref name="layer"/>: position p at <c>p · head dimension</c>.</summary>
    internal float* Values(int layer, int kvHead) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values[layer])) + ((long)kvHead * _headStride);
}
