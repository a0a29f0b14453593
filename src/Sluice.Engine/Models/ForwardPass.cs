using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Models;

/// <summary>What logits one batch entry wants back.</summary>
public enum LogitsRequest
{
    /// <summary>No logits (prompt prefill whose last logits are not needed).</summary>
    None,

    /// <summary>Logits of the entry's last token only (generation).</summary>
    Last,

    /// <summary>Logits of every token of the entry (scoring, tests).</summary>
    All,
}

/// <summary>Tokens of one sequence to evaluate in a batch.</summary>
/// <param name="Sequence">The sequence the tokens extend.</param>
/// <param name="Tokens">Token ids, appended at the sequence's current length.</param>
/// <param name="Logits">Which logits to return.</param>
/// <param name="Into">
/// Where to write the logits when it has exactly their length (<see cref="ModelInfo.VocabularySize"/> for
/// <see cref="LogitsRequest.Last"/>): it is then this entry's result, overwritten by the next pass given it. Otherwise
/// the result is a new array. A generator passes one buffer per sequence: a new vocabulary-sized array per token is a
/// large-object-heap allocation (600 KB for a 152k vocabulary) and, at tens of tokens a second, full collections.
/// </param>
public readonly record struct BatchEntry(InferenceSequence Sequence, ReadOnlyMemory<int> Tokens, LogitsRequest Logits = LogitsRequest.Last, float[]? Into = null);

/// <summary>
/// The forward pass of a decoder-only transformer (llama, qwen2, qwen3) over a batch of tokens from one or more
/// sequences: every weight matrix is applied to all tokens of the batch in one matrix product; attention runs per
/// token against its own sequence's cache. Numerics follow llama.cpp's CPU backend (see docs in <c>gguf.md</c>):
/// RMSNorm sums squares in f64, RoPE angles are built by repeated multiplication in f32, softmax sums in f64.
/// Holds reusable work buffers, so one instance runs one pass at a time.
/// </summary>
internal sealed unsafe class ForwardPass
{
    private readonly TransformerWeights _weights;
    private readonly WorkerPool _pool;
    private readonly Dictionary<ActivationKind, Activations> _activations = [];
    private readonly Dictionary<ActivationKind, (nint Source, int Rows, int Columns)> _prepared = [];
    private float[] _x = [];
    private float[] _h = [];
    private float[] _q = [];
    private float[] _k = [];
    private float[] _v = [];
    private float[] _attention = [];
    private float[] _gate = [];
    private float[] _up = [];

    [ThreadStatic]
    private static float[]? t_widening;

    [ThreadStatic]
    private static float[]? t_scores;
    private float[] _logitRows = [];
    private int[] _positions = [];
    private int[] _sequenceIndex = [];

    public ForwardPass(TransformerWeights weights, WorkerPool pool)
    {
        _weights = weights;
        _pool = pool;
    }

    private ModelInfo Info => _weights.Info;

    /// <summary>
    /// Runs the batch, appends its keys and values to the sequences' caches, advances their lengths and returns, per
    /// entry, the requested logits (rows × vocabulary, row-major; empty for <see cref="LogitsRequest.None"/>).
    /// </summary>
    public float[][] Run(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken)
    {
        var info = Info;
        var total = 0;
        foreach (var entry in batch)
        {
            if (entry.Tokens.Length == 0)
            {
                throw new ArgumentException("a batch entry has no tokens");
            }

            if (entry.Sequence.Length + entry.Tokens.Length > entry.Sequence.ContextSize)
            {
                throw new InvalidOperationException(
                    $"the sequence holds {entry.Sequence.Length} of {entry.Sequence.ContextSize} positions; {entry.Tokens.Length} more tokens do not fit (raise the context size)");
            }

            foreach (var token in entry.Tokens.Span)
            {
                if ((uint)token >= (uint)info.VocabularySize)
                {
                    throw new ArgumentOutOfRangeException(nameof(batch), token, $"token id outside the vocabulary of {info.VocabularySize}");
                }
            }

            total += entry.Tokens.Length;
        }

        for (var i = 0; i < batch.Count; i++)
        {
            for (var j = i + 1; j < batch.Count; j++)
            {
                if (ReferenceEquals(batch[i].Sequence, batch[j].Sequence))
                {
                    throw new ArgumentException("a sequence appears twice in one batch");
                }
            }
        }

        Reserve(total);
        var d = info.EmbeddingLength;
        var t = 0;
        for (var e = 0; e < batch.Count; e++)
        {
            var tokens = batch[e].Tokens.Span;
            for (var i = 0; i < tokens.Length; i++, t++)
            {
                _positions[t] = batch[e].Sequence.Length + i;
                _sequenceIndex[t] = e;
                _weights.Embeddings.DequantizeRow(tokens[i], _x.AsSpan(t * d, d));
            }
        }

        var x = Ptr(_x);
        var h = Ptr(_h);
        for (var l = 0; l < _weights.Layers.Length; l++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Layer(l, _weights.Layers[l], batch, total, x, h);
        }

        // Final norm and output projection, only for the rows whose logits were asked for.
        var rows = new List<int>();
        t = 0;
        foreach (var entry in batch)
        {
            var n = entry.Tokens.Length;
            if (entry.Logits == LogitsRequest.All)
            {
                for (var i = 0; i < n; i++)
                {
                    rows.Add(t + i);
                }
            }
            else if (entry.Logits == LogitsRequest.Last)
            {
                rows.Add(t + n - 1);
            }

            t += n;
        }

        var results = new float[batch.Count][];
        if (rows.Count > 0)
        {
            for (var r = 0; r < rows.Count; r++)
            {
                RmsNorm(x + (rows[r] * d), h + (r * d), _weights.OutputNorm, d, info.RmsEpsilon);
            }

            var vocab = info.VocabularySize;
            Grow(ref _logitRows, checked(rows.Count * vocab));
            NewSource();
            MatMulInto(_weights.Output, h, rows.Count, Ptr(_logitRows), vocab);
            var r0 = 0;
            for (var e = 0; e < batch.Count; e++)
            {
                var count = batch[e].Logits switch
                {
                    LogitsRequest.All => batch[e].Tokens.Length,
                    LogitsRequest.Last => 1,
                    _ => 0,
                };
                var rowsOf = _logitRows.AsSpan(r0 * vocab, count * vocab);
                if (batch[e].Into is { } into && into.Length == rowsOf.Length)
                {
                    rowsOf.CopyTo(into);
                    results[e] = into;
                }
                else
                {
                    results[e] = rowsOf.ToArray();
                }

                r0 += count;
            }
        }
        else
        {
            for (var e = 0; e < batch.Count; e++)
            {
                results[e] = [];
            }
        }

        foreach (var entry in batch)
        {
            entry.Sequence.Length += entry.Tokens.Length;
        }

        return results;
    }

    private void Layer(int layerIndex, LayerWeights w, IReadOnlyList<BatchEntry> batch, int n, float* x, float* h)
    {
        var info = Info;
        var d = info.EmbeddingLength;
        var qDim = info.QueryLength;
        var kvDim = info.KvLength;
        var headDim = info.HeadDimension;
        var q = Ptr(_q);
        var k = Ptr(_k);
        var v = Ptr(_v);

        NormRows(x, h, w.AttentionNorm, n, d);
        NewSource();
        MatMulInto(w.Query, h, n, q, qDim);
        MatMulInto(w.Key, h, n, k, kvDim);
        MatMulInto(w.Value, h, n, v, kvDim);
        AddBias(q, w.QueryBias, n, qDim);
        AddBias(k, w.KeyBias, n, kvDim);
        AddBias(v, w.ValueBias, n, kvDim);
        if (w.QueryNorm is not null && w.KeyNorm is not null)
        {
            // qwen3: RMSNorm over each head of Q and K before RoPE.
            NormRows(q, q, w.QueryNorm, n * info.HeadCount, headDim);
            NormRows(k, k, w.KeyNorm, n * info.KvHeadCount, headDim);
        }

        ApplyRope(q, n, info.HeadCount);
        ApplyRope(k, n, info.KvHeadCount);

        for (var t = 0; t < n; t++)
        {
            var sequence = batch[_sequenceIndex[t]].Sequence;
            var pos = _positions[t];
            for (var g = 0; g < info.KvHeadCount; g++)
            {
                var from = (t * kvDim) + (g * headDim);
                if (sequence.CacheType == KvCacheType.F16)
                {
                    FloatConversions.ToSaturatedHalves(k + from, (ushort*)sequence.Keys(layerIndex, g) + (pos * headDim), headDim);
                    FloatConversions.ToSaturatedHalves(v + from, (ushort*)sequence.Values(layerIndex, g) + (pos * headDim), headDim);
                }
                else
                {
                    new ReadOnlySpan<float>(k + from, headDim).CopyTo(new Span<float>((float*)sequence.Keys(layerIndex, g) + (pos * headDim), headDim));
                    new ReadOnlySpan<float>(v + from, headDim).CopyTo(new Span<float>((float*)sequence.Values(layerIndex, g) + (pos * headDim), headDim));
                }
            }
        }

        Attention(layerIndex, batch, n);

        // Attention output projection and residual (h is free again: reuse it for the projection).
        NewSource();
        MatMulInto(w.AttentionOutput, Ptr(_attention), n, h, d, qDim);
        AddBias(h, w.OutputBias, n, d);
        AddInPlace(x, h, n * d);

        NormRows(x, h, w.FfnNorm, n, d);
        NewSource();
        var ff = info.FeedForwardLength;
        var gate = Ptr(_gate);
        var up = Ptr(_up);
        MatMulInto(w.Gate, h, n, gate, ff);
        MatMulInto(w.Up, h, n, up, ff);
        // Element-wise, but ~22,000 exponentials per layer for four streams: on one thread it was 3 % of a 2-thread
        // four-stream step. Split like the products; each element's arithmetic is unchanged, so the bits are too.
        var gates = (nint)gate;
        var ups = (nint)up;
        _pool.ForRange(n * ff, SwiGluGrain, (start, end) => SwiGlu((float*)gates + start, (float*)ups + start, end - start));
        NewSource();
        MatMulInto(w.Down, gate, n, h, d, ff);
        AddInPlace(x, h, n * d);
    }

    private void Attention(int layerIndex, IReadOnlyList<BatchEntry> batch, int n)
    {
        var info = Info;
        var heads = info.HeadCount;
        var group = heads / info.KvHeadCount;
        var scale = 1.0f / MathF.Sqrt(info.HeadDimension);

        // Items are (token, KV head, part of its query heads): whole groups when there are enough to keep every thread
        // busy, else each group split in parts (a single stream of a model with 2 KV heads would otherwise use 2 threads
        // for attention). A group's query heads go together so each block of keys and values is read once for all of them.
        var f16 = batch[0].Sequence.CacheType == KvCacheType.F16;
        var workers = _pool.ThreadCount;
        var groups = n * info.KvHeadCount;
        var parts = Math.Clamp(((2 * workers) + groups - 1) / groups, 1, group);
        var q = (nint)Ptr(_q);
        var output = (nint)Ptr(_attention);
        _pool.ForRange(groups * parts, 1, (start, end) =>
            AttendGroups(layerIndex, batch, start, end, parts, f16, (float*)q, (float*)output, scale, group));
    }

    /// <summary>
    /// Attention for (token, KV head, part) items [start, end): the part's query heads over the KV head's keys and values
    /// for the token's positions (<see cref="AttendHeads"/>). An f16 cache is widened to f32 once per item (exact) into the
    /// thread's scratch, then read as an f32 cache — widening per query head would cost more than the halved reads save.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AttendGroups(int layerIndex, IReadOnlyList<BatchEntry> batch, int start, int end, int parts, bool f16, float* q, float* output, float scale, int group)
    {
        var info = Info;
        var kvHeads = info.KvHeadCount;
        var headDim = info.HeadDimension;
        var qDim = info.QueryLength;
        var perPart = (group + parts - 1) / parts;
        for (var item = start; item < end; item++)
        {
            var t = item / (kvHeads * parts);
            var g = item % (kvHeads * parts) / parts;
            var part = item % parts;
            var first = (g * group) + (part * perPart);
            var last = Math.Min((g + 1) * group, first + perPart);
            if (first >= last)
            {
                continue;
            }

            var sequence = batch[_sequenceIndex[t]].Sequence;
            var count = _positions[t] + 1;
            float* keys, values;
            if (f16)
            {
                keys = ThreadScratch(ref t_widening, 2 * count * headDim);
                values = keys + (count * headDim);
                FloatConversions.FiniteHalvesToSingles((ushort*)sequence.Keys(layerIndex, g), keys, count * headDim);
                FloatConversions.FiniteHalvesToSingles((ushort*)sequence.Values(layerIndex, g), values, count * headDim);
            }
            else
            {
                keys = (float*)sequence.Keys(layerIndex, g);
                values = (float*)sequence.Values(layerIndex, g);
            }

            var at = (t * qDim) + (first * headDim);
            AttendHeads(keys, values, count, q + at, output + at, last - first, ThreadScratch(ref t_scores, (last - first) * count), scale, headDim);
        }
    }

    /// <summary>
    /// The calling thread's scratch in <paramref name="slot"/> (a thread-static field: widened keys and values, or a row
    /// of scores per query head), pinned and grown on demand: per thread, not per chunk or batch, so it is bounded by the
    /// threads running passes (2 × context × head dimension floats, and context × query heads of a KV head, each).
    /// </summary>
    private static float* ThreadScratch(ref float[]? slot, int length)
    {
        var scratch = slot;
        if (scratch is null || scratch.Length < length)
        {
            // At least double: the length grows by a position per decode step, and a new array per step was the cost.
            scratch = GC.AllocateUninitializedArray<float>(Math.Max(length, 2 * (scratch?.Length ?? 0)), pinned: true);
            slot = scratch;
        }

        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(scratch));
    }

    /// <summary>
    /// Whether attention takes the straightforward loops (<see cref="AttendOneReference"/>) instead of the blocked ones.
    /// Both compute the same operations in the same order per (token, head, position), so the same bits; tests switch it
    /// to check that.
    /// </summary>
    internal static bool UseReferenceAttention { get; set; }

    /// <summary>
    /// <paramref name="heads"/> consecutive query heads (<paramref name="queries"/>, outputs likewise) over the same
    /// <paramref name="count"/> f32 keys and values (position j at <c>keys + j · headDim</c>): scores, softmax (f64 sum, as
    /// ggml), weighted values; <paramref name="s"/> holds a row of <paramref name="count"/> scores per head. Hot loop, per
    /// block of positions whose keys (then values) stay in the first-level cache while every head takes them — one
    /// read from further out per group instead of one per head: (1) the scores of 4 positions at a time, four independent
    /// dot products in flight, each with <see cref="VecDot.F32"/>'s two running sums and final reduction, then the
    /// block's maximum 8 at a time (a maximum does not depend on its order); (2) per head the exponentials 8 at a time
    /// (<see cref="Exponential"/>) and their f64 sum in position order, two heads' sums interleaved; (3) the weighted
    /// values summed position by position, for heads of 64 or 128 values in registers within a block. Every
    /// (head, position) gets the reference's operations in the reference's order (<see cref="AttendOneReference"/>), so
    /// the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendHeads(float* keys, float* values, int count, float* queries, float* outputs, int heads, float* s, float scale, int headDim)
    {
        if (UseReferenceAttention || !Vector256.IsHardwareAccelerated || headDim % 16 != 0)
        {
            for (var h = 0; h < heads; h++)
            {
                AttendOneReference(keys, values, count, queries + (h * headDim), outputs + (h * headDim), s, scale, headDim);
            }

            return;
        }

        // 16 KiB of keys or values per block (64 positions of 64 values).
        var block = Math.Max(4, (4096 / headDim) & ~3);
        var maxes = stackalloc float[heads];
        var inverses = stackalloc float[heads];
        for (var h = 0; h < heads; h++)
        {
            maxes[h] = float.NegativeInfinity;
        }

        for (var j0 = 0; j0 < count; j0 += block)
        {
            var j1 = Math.Min(count, j0 + block);
            for (var h = 0; h < heads; h++)
            {
                var query = queries + (h * headDim);
                var sh = s + (h * count);
                var j = j0;
                for (; j + 4 <= j1; j += 4)
                {
                    var k0 = keys + (j * headDim);
                    (Dot4(k0, k0 + headDim, k0 + (2 * headDim), k0 + (3 * headDim), query, headDim) * Vector128.Create(scale)).Store(sh + j);
                }

                for (; j < j1; j++)
                {
                    sh[j] = VecDot.F32(keys + (j * headDim), query, headDim) * scale;
                }

                // The maximum does not depend on the order it is taken in (Math.Max's order on ±0 and NaN included).
                var max = maxes[h];
                var most = Vector256.Create(float.NegativeInfinity);
                j = j0;
                for (; j + 8 <= j1; j += 8)
                {
                    most = Vector256.Max(most, Vector256.Load(sh + j));
                }

                for (; j < j1; j++)
                {
                    max = Math.Max(max, sh[j]);
                }

                for (var i = 0; i < 8; i++)
                {
                    max = Math.Max(max, most.GetElement(i));
                }

                maxes[h] = max;
            }
        }

        // Two heads at a time: each f64 sum is a chain of dependent adds in position order, and two chains overlap.
        var h2 = 0;
        for (; h2 + 2 <= heads; h2 += 2)
        {
            Exponentials(s + (h2 * count), maxes[h2], s + ((h2 + 1) * count), maxes[h2 + 1], count, out var sum0, out var sum1);
            inverses[h2] = (float)(1.0 / sum0);
            inverses[h2 + 1] = (float)(1.0 / sum1);
        }

        if (h2 < heads)
        {
            Exponentials(s + (h2 * count), maxes[h2], null, 0, count, out var sum0, out _);
            inverses[h2] = (float)(1.0 / sum0);
        }

        for (var j0 = 0; j0 < count; j0 += block)
        {
            var j1 = Math.Min(count, j0 + block);
            for (var h = 0; h < heads; h++)
            {
                var sh = s + (h * count);
                var inv = inverses[h];
                var o = outputs + (h * headDim);
                if (headDim == 64)
                {
                    WeightedSum64(sh, inv, values, headDim, j0, j1, o);
                }
                else if (headDim == 128)
                {
                    WeightedSum64(sh, inv, values, headDim, j0, j1, o);
                    WeightedSum64(sh, inv, values + 64, headDim, j0, j1, o + 64);
                }
                else
                {
                    if (j0 == 0)
                    {
                        new Span<float>(o, headDim).Clear();
                    }

                    for (var j = j0; j < j1; j++)
                    {
                        Axpy(sh[j] * inv, values + (j * headDim), o, headDim);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Two heads' scores in place to <c>e^(s − max)</c> (<see cref="Exponential"/>), each with the f64 sum of its values in
    /// position order; <paramref name="b"/> null for one head.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Exponentials(float* a, float maxA, float* b, float maxB, int count, out double sumA, out double sumB)
    {
        double sa = 0, sb = 0;
        var j = 0;
        if (b is not null)
        {
            for (; j + 8 <= count; j += 8)
            {
                sa = AddInOrder(sa, ExpInPlace(a + j, maxA));
                sb = AddInOrder(sb, ExpInPlace(b + j, maxB));
            }

            sb = ExpTail(b, maxB, j, count, sb);
        }

        for (; j + 8 <= count; j += 8)
        {
            sa = AddInOrder(sa, ExpInPlace(a + j, maxA));
        }

        sumA = ExpTail(a, maxA, j, count, sa);
        sumB = sb;
    }

    /// <summary>8 scores in place to <c>e^(s − max)</c>; returns them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ExpInPlace(float* s, float max)
    {
        var e = Exponential.Exp(Vector256.Load(s) - Vector256.Create(max));
        e.Store(s);
        return e;
    }

    /// <summary>Scores [<paramref name="from"/>, <paramref name="count"/>) one at a time; returns the sum carried on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double ExpTail(float* s, float max, int from, int count, double sum)
    {
        for (var j = from; j < count; j++)
        {
            var e = Exponential.Exp(s[j] - max);
            s[j] = e;
            sum += e;
        }

        return sum;
    }

    /// <summary><paramref name="sum"/> + e₀ + e₁ + … + e₇ in that order (in f64), as a position-by-position loop adds them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double AddInOrder(double sum, Vector256<float> e) =>
        sum + e.GetElement(0) + e.GetElement(1) + e.GetElement(2) + e.GetElement(3) + e.GetElement(4) + e.GetElement(5) + e.GetElement(6) + e.GetElement(7);

    /// <summary>
    /// Four <see cref="VecDot.F32"/> dot products of <paramref name="n"/> (a multiple of 16) values against one query,
    /// interleaved: each keeps F32's two 8-lane running sums and ends with their sum reduced as <c>Vector256.Sum</c>
    /// reduces it (pairs within each 128-bit half, then the halves) — for the four at once by three horizontal adds.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot4(float* k0, float* k1, float* k2, float* k3, float* x, int n)
    {
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        for (var i = 0; i < n; i += 16)
        {
            var xl = Vector256.Load(x + i);
            var xh = Vector256.Load(x + i + 8);
            a00 = Vector256.FusedMultiplyAdd(Vector256.Load(k0 + i), xl, a00);
            a01 = Vector256.FusedMultiplyAdd(Vector256.Load(k0 + i + 8), xh, a01);
            a10 = Vector256.FusedMultiplyAdd(Vector256.Load(k1 + i), xl, a10);
            a11 = Vector256.FusedMultiplyAdd(Vector256.Load(k1 + i + 8), xh, a11);
            a20 = Vector256.FusedMultiplyAdd(Vector256.Load(k2 + i), xl, a20);
            a21 = Vector256.FusedMultiplyAdd(Vector256.Load(k2 + i + 8), xh, a21);
            a30 = Vector256.FusedMultiplyAdd(Vector256.Load(k3 + i), xl, a30);
            a31 = Vector256.FusedMultiplyAdd(Vector256.Load(k3 + i + 8), xh, a31);
        }

        if (Avx.IsSupported)
        {
            // [d0 01, d0 23, d1 01, d1 23 | d0 45, d0 67, d1 45, d1 67], then the pairs of pairs, then the halves added.
            var sums = Avx.HorizontalAdd(Avx.HorizontalAdd(a00 + a01, a10 + a11), Avx.HorizontalAdd(a20 + a21, a30 + a31));
            return sums.GetLower() + sums.GetUpper();
        }

        return Vector128.Create(Vector256.Sum(a00 + a01), Vector256.Sum(a10 + a11), Vector256.Sum(a20 + a21), Vector256.Sum(a30 + a31));
    }

    /// <summary>
    /// <c>o[0..64) += Σ_j (p[j]·inv)·v_j</c> for positions [<paramref name="from"/>, <paramref name="to"/>) in order,
    /// from zero when <paramref name="from"/> is 0 (else from what <paramref name="o"/> holds), the running sums in
    /// registers: per element the reference's <c>o + (a·v)</c> (a multiply, then an add; never fused), so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WeightedSum64(float* p, float inv, float* values, int stride, int from, int to, float* o)
    {
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
        Vector256<float> o4 = default, o5 = default, o6 = default, o7 = default;
        if (from > 0)
        {
            o0 = Vector256.Load(o);
            o1 = Vector256.Load(o + 8);
            o2 = Vector256.Load(o + 16);
            o3 = Vector256.Load(o + 24);
            o4 = Vector256.Load(o + 32);
            o5 = Vector256.Load(o + 40);
            o6 = Vector256.Load(o + 48);
            o7 = Vector256.Load(o + 56);
        }

        for (var j = from; j < to; j++)
        {
            var a = Vector256.Create(p[j] * inv);
            var v = values + (j * stride);
            o0 += a * Vector256.Load(v);
            o1 += a * Vector256.Load(v + 8);
            o2 += a * Vector256.Load(v + 16);
            o3 += a * Vector256.Load(v + 24);
            o4 += a * Vector256.Load(v + 32);
            o5 += a * Vector256.Load(v + 40);
            o6 += a * Vector256.Load(v + 48);
            o7 += a * Vector256.Load(v + 56);
        }

        o0.Store(o);
        o1.Store(o + 8);
        o2.Store(o + 16);
        o3.Store(o + 24);
        o4.Store(o + 32);
        o5.Store(o + 40);
        o6.Store(o + 48);
        o7.Store(o + 56);
    }

    /// <summary>Attention, one position at a time: the definition the blocked <see cref="AttendHeads"/> must match bit for bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendOneReference(float* keys, float* values, int count, float* query, float* o, float* s, float scale, int headDim)
    {
        var max = float.NegativeInfinity;
        for (var j = 0; j < count; j++)
        {
            var score = VecDot.F32(keys + (j * headDim), query, headDim) * scale;
            s[j] = score;
            max = Math.Max(max, score);
        }

        double sum = 0;
        for (var j = 0; j < count; j++)
        {
            var e = Exponential.Exp(s[j] - max);
            s[j] = e;
            sum += e;
        }

        var inv = (float)(1.0 / sum);
        new Span<float>(o, headDim).Clear();
        for (var j = 0; j < count; j++)
        {
            Axpy(s[j] * inv, values + (j * headDim), o, headDim);
        }
    }

    /// <summary>RoPE in place on <paramref name="heads"/> heads per token, angles built the way ggml builds them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ApplyRope(float* data, int n, int heads)
    {
        var info = Info;
        var headDim = info.HeadDimension;
        var nRot = info.RopeDimensionCount;
        var thetaScale = MathF.Pow(info.RopeFreqBase, -2.0f / nRot);
        var factors = _weights.RopeFactors;
        var neox = info.RopeStyle == RopeStyle.Neox;
        Span<float> cache = stackalloc float[nRot];
        var lastPosition = -1;
        for (var t = 0; t < n; t++)
        {
            var p = _positions[t];
            if (p != lastPosition)
            {
                float theta = p;
                for (var i0 = 0; i0 < nRot; i0 += 2)
                {
                    var ff = factors is null ? 1.0f : factors[i0 / 2];
                    var angle = info.RopeFreqScale * (theta / ff);
                    cache[i0] = MathF.Cos(angle);
                    cache[i0 + 1] = MathF.Sin(angle);
                    theta *= thetaScale;
                }

                lastPosition = p;
            }

            for (var head = 0; head < heads; head++)
            {
                var x = data + (((long)t * heads) + head) * headDim;
                for (var i0 = 0; i0 < nRot; i0 += 2)
                {
                    var cos = cache[i0];
                    var sin = cache[i0 + 1];
                    int a, b;
                    if (neox)
                    {
                        a = i0 / 2;
                        b = a + (nRot / 2);
                    }
                    else
                    {
                        a = i0;
                        b = i0 + 1;
                    }

                    var x0 = x[a];
                    var x1 = x[b];
                    x[a] = (x0 * cos) - (x1 * sin);
                    x[b] = (x0 * sin) + (x1 * cos);
                }
            }
        }
    }

    private void NormRows(float* source, float* destination, float[] weight, int rows, int length)
    {
        var eps = Info.RmsEpsilon;
        if (rows * length < 1 << 16)
        {
            for (var r = 0; r < rows; r++)
            {
                RmsNorm(source + (r * length), destination + (r * length), weight, length, eps);
            }

            return;
        }

        var src = (nint)source;
        var dst = (nint)destination;
        _pool.ForRange(rows, 8, (start, end) =>
        {
            for (var r = start; r < end; r++)
            {
                RmsNorm((float*)src + (r * length), (float*)dst + (r * length), weight, length, eps);
            }
        });
    }

    /// <summary>ggml's rms_norm then mul: squares summed in f64, mean and scale in f32, y = (x·scale)·w.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RmsNorm(float* x, float* y, float[] weight, int length, float eps)
    {
        double sum = 0;
        for (var i = 0; i < length; i++)
        {
            sum += x[i] * x[i];
        }

        var mean = (float)(sum / length);
        var scale = 1.0f / MathF.Sqrt(mean + eps);
        for (var i = 0; i < length; i++)
        {
            y[i] = x[i] * scale * weight[i];
        }
    }

    /// <summary>Marks the activation conversions stale: the next product converts its input again.</summary>
    private void NewSource() => _prepared.Clear();

    /// <summary><c>y[t·ldy + r] = W[r] · x[t]</c>, converting <paramref name="x"/> once per activation format between calls to <see cref="NewSource"/>.</summary>
    private void MatMulInto(WeightMatrix w, float* x, int n, float* y, int ldy, int? xStride = null)
    {
        var kind = w.ActivationKind;
        if (!_activations.TryGetValue(kind, out var act))
        {
            act = new Activations();
            _activations[kind] = act;
        }

        // Q, K and V (and gate and up) read the same input: convert it once per format. The key guards against a
        // missing NewSource call reusing a stale conversion of a different buffer or shape.
        var key = ((nint)x, n, w.Columns);
        if (!_prepared.TryGetValue(kind, out var prepared) || prepared != key)
        {
            act.Load(kind, x, n, w.Columns, xStride ?? w.Columns, _pool);
            _prepared[kind] = key;
        }

        MatMul.Multiply(w, act, y, ldy, _pool);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddBias(float* data, float[]? bias, int rows, int length)
    {
        if (bias is null)
        {
            return;
        }

        for (var r = 0; r < rows; r++)
        {
            var row = data + (r * length);
            for (var i = 0; i < length; i++)
            {
                row[i] += bias[i];
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddInPlace(float* x, float* y, int count)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= count; i += 8)
            {
                (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
            }
        }

        for (; i < count; i++)
        {
            x[i] += y[i];
        }
    }

    /// <summary>Elements per parallel SwiGLU chunk at least: one token's worth keeps a single stream's step on few chunks.</summary>
    private const int SwiGluGrain = 2048;

    /// <summary>gate ← silu(gate) · up.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SwiGlu(float* gate, float* up, int count)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= count; i += 8)
            {
                var g = Vector256.Load(gate + i);
                (g / (Vector256<float>.One + Exponential.Exp(-g)) * Vector256.Load(up + i)).Store(gate + i);
            }
        }

        for (; i < count; i++)
        {
            var g = gate[i];
            gate[i] = g / (1.0f + Exponential.Exp(-g)) * up[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float a, float* x, float* y, int n)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i + 8 <= n; i += 8)
            {
                (Vector256.Load(y + i) + (va * Vector256.Load(x + i))).Store(y + i);
            }
        }

        for (; i < n; i++)
        {
            y[i] += a * x[i];
        }
    }

    private void Reserve(int tokens)
    {
        var info = Info;
        Grow(ref _x, tokens * info.EmbeddingLength);
        Grow(ref _h, tokens * Math.Max(info.EmbeddingLength, info.QueryLength));
        Grow(ref _q, tokens * info.QueryLength);
        Grow(ref _k, tokens * info.KvLength);
        Grow(ref _v, tokens * info.KvLength);
        Grow(ref _attention, tokens * info.QueryLength);
        Grow(ref _gate, tokens * info.FeedForwardLength);
        Grow(ref _up, tokens * info.FeedForwardLength);
        if (_positions.Length < tokens)
        {
            _positions = new int[tokens];
            _sequenceIndex = new int[tokens];
        }
    }

    private static void Grow(ref float[] buffer, int length)
    {
        if (buffer.Length < length)
        {
            buffer = GC.AllocateUninitializedArray<float>(length, pinned: true);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* Ptr(float[] array) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
}
