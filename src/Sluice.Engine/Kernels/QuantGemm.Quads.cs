using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Products for small batches (2–<see cref="MaxQuadTokens"/> tokens: the decode steps of concurrent sequences) for every
/// integer weight type (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K). The 8 lanes of a vector are 2 weight rows × 4 tokens (a token quad), so
/// each lane accumulates a whole (row, token) block sum by itself: no cross-lane sums (what the 1-token path pays per
/// block and row) and no unpacking into a buffer (what the token-lane GEMM pays per tile).
/// <para>
/// Per block, a pair of rows is loaded and expanded once, as <c>[A 0–15 | B 0–15]</c> and <c>[A 16–31 | B 16–31]</c>;
/// for each 4-value step one <c>pshufd</c> spreads the step's 4 bytes of A over the low half and of B over the high half,
/// and one integer dot per quad takes them against the quad's 4 bytes of that step, which the token-group layout of
/// <see cref="Activations"/> already holds side by side (16 bytes, broadcast to both halves). A second quad reuses the
/// same spread weights. Each lane's integer sum is exact and its float step is the scalar definition's
/// (<c>acc = fma(Σ, d_w·d_x, acc)</c>, blocks in order), so results equal <see cref="VecDot"/> bit for bit. K-quants do the
/// same per sub-block and multiply each sub-block's sum by its scale (integer, exact) before the super-block's float step.
/// </para>
/// </summary>
internal static unsafe partial class QuantGemm
{
    /// <summary>Most tokens the quad path takes (two quads: one token group).</summary>
    public const int MaxQuadTokens = 8;

    /// <summary><c>vpermd</c> indices spreading the 8 rows' scales over pair p: lanes 0–3 row 2p, lanes 4–7 row 2p+1.</summary>
    private static readonly int* PairPick = BuildSpread(rowsPerVector: 2);

    /// <summary>True when <see cref="MultiplyTokenQuads"/> takes this product.</summary>
    public static bool TakesQuads(WeightMatrix w, Activations x) =>
        IsAccelerated && x.Rows >= 2 && x.Rows <= MaxQuadTokens &&
        (x.Kind == ActivationKind.Q8_0 ? w.Type is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 : w.Type is GgmlType.Q4_K or GgmlType.Q6_K);

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) of <c>y[t·ldy + r] = W[r] · x[t]</c> (see <see cref="TakesQuads"/>).</summary>
    public static void MultiplyTokenQuads(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
    {
        var two = x.Rows > 4;
        switch (w.Type)
        {
            case GgmlType.Q8_0 when UseVnni:
                Quads32<Q8_0Unsigned, VnniDot>(w, x, y, ldy, start, end, two);
                break;
            case GgmlType.Q8_0:
                Quads32<Q8_0Signed, SignedMaddDot>(w, x, y, ldy, start, end, two);
                break;
            case GgmlType.Q4_0 when UseVnni:
                Quads32<Q4_0Values, VnniDot>(w, x, y, ldy, start, end, two);
                break;
            case GgmlType.Q4_0:
                Quads32<Q4_0Values, MaddDot>(w, x, y, ldy, start, end, two);
                break;
            case GgmlType.Q5_0 when UseVnni:
                Quads32<Q5_0Values, VnniDot>(w, x, y, ldy, start, end, two);
                break;
            case GgmlType.Q5_0:
                Quads32<Q5_0Values, MaddDot>(w, x, y, ldy, start, end, two);
                break;
            case GgmlType.Q4_K when UseWideKernels && two:
                QuadsQ4K<VnniDot, TwoGroups>(w, x, y, ldy, start, end, wide: true);
                break;
            case GgmlType.Q4_K when UseWideKernels:
                QuadsQ4K<VnniDot, OneGroup>(w, x, y, ldy, start, end, wide: true);
                break;
            case GgmlType.Q4_K when UseVnni && two:
                QuadsQ4K<VnniDot, TwoGroups>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K when UseVnni:
                QuadsQ4K<VnniDot, OneGroup>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K when two:
                QuadsQ4K<MaddDot, TwoGroups>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K:
                QuadsQ4K<MaddDot, OneGroup>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K when UseVnni && two:
                QuadsQ6K<VnniDot, TwoGroups>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K when UseVnni:
                QuadsQ6K<VnniDot, OneGroup>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K when two:
                QuadsQ6K<MaddDot, TwoGroups>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K:
                QuadsQ6K<MaddDot, OneGroup>(w, x, y, ldy, start, end);
                break;
            default:
                throw new NotSupportedException(w.Type.ToString());
        }
    }

    private static void Quads32<TB, TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end, bool two)
        where TB : IBlock32
        where TD : IDot
    {
        if (two)
        {
            Quads32<TB, TD, TwoGroups>(w, x, y, ldy, start, end);
        }
        else
        {
            Quads32<TB, TD, OneGroup>(w, x, y, ldy, start, end);
        }
    }

    /// <summary>
    /// Hot loop, per 8-row tile and block: (1) the 4 row pairs loaded and expanded, 2 vectors each; (2) per 4-value step,
    /// per pair one <c>pshufd</c> and one dot (with a broadcast load) per quad (the integer sums start at
    /// −Offset·Σx, taking the values' offset back off exactly); (3) the 8 rows' scales loaded once, spread per pair,
    /// and one fused add per pair and quad. <typeparamref name="TQ"/> says whether a second quad (tokens 4–7) runs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Quads32<TB, TD, TQ>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TB : IBlock32
        where TD : IDot
        where TQ : IGroups
    {
        var blocks = w.Columns / 32;
        var bb = TB.BlockBytes;
        var q = x.GroupQuants(0);
        var s = x.GroupScales(0);
        var m = x.GroupSums(0);
        var offsets = stackalloc nint[LaneRows];
        var tile = stackalloc float[2 * 4 * 8];
        var negOffset = Vector256.Create(-TB.Offset);
        var spread0 = Vector256.Load(PairPick);
        var spread1 = Vector256.Load(PairPick + 8);
        var spread2 = Vector256.Load(PairPick + 16);
        var spread3 = Vector256.Load(PairPick + 24);
        for (var r0 = start; r0 < end; r0 += LaneRows)
        {
            RowOffsets(w, r0, end, offsets);
            var row = w.Row(r0);
            nint o0 = offsets[0], o1 = offsets[1], o2 = offsets[2], o3 = offsets[3];
            nint o4 = offsets[4], o5 = offsets[5], o6 = offsets[6], o7 = offsets[7];
            var (nextTile, step) = NextTile(w, r0, end, blocks);
            var next = (byte*)nextTile;
            var fetched = next;
            Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
            Vector256<float> h0 = default, h1 = default, h2 = default, h3 = default;
            for (var b = 0; b < blocks; b++)
            {
                var p = row + (b * bb);
                fetched = PrefetchTo(fetched, next + ((b + 1) * step));

                // (1) [A 0–15 | B 0–15] and [A 16–31 | B 16–31] per pair.
                var a = TB.Values(p + o0);
                var c = TB.Values(p + o1);
                var lo0 = Avx2.Permute2x128(a, c, 0x20).AsInt32();
                var hi0 = Avx2.Permute2x128(a, c, 0x31).AsInt32();
                a = TB.Values(p + o2);
                c = TB.Values(p + o3);
                var lo1 = Avx2.Permute2x128(a, c, 0x20).AsInt32();
                var hi1 = Avx2.Permute2x128(a, c, 0x31).AsInt32();
                a = TB.Values(p + o4);
                c = TB.Values(p + o5);
                var lo2 = Avx2.Permute2x128(a, c, 0x20).AsInt32();
                var hi2 = Avx2.Permute2x128(a, c, 0x31).AsInt32();
                a = TB.Values(p + o6);
                c = TB.Values(p + o7);
                var lo3 = Avx2.Permute2x128(a, c, 0x20).AsInt32();
                var hi3 = Avx2.Permute2x128(a, c, 0x31).AsInt32();

                // (2) Integer sums per (row, token) lane.
                var start0 = Avx2.MultiplyLow(Avx2.BroadcastVector128ToVector256(m + (Activations.Group * b)), negOffset);
                Vector256<int> i0 = start0, i1 = start0, i2 = start0, i3 = start0;
                Vector256<int> j0 = default, j1 = default, j2 = default, j3 = default;
                if (TQ.Two)
                {
                    var start1 = Avx2.MultiplyLow(Avx2.BroadcastVector128ToVector256(m + (Activations.Group * b) + 4), negOffset);
                    j0 = start1;
                    j1 = start1;
                    j2 = start1;
                    j3 = start1;
                }

                var xb = q + (256 * b);
                i0 = Dot16<TD>(Dot16<TD>(i0, lo0, xb), hi0, xb + 128);
                i1 = Dot16<TD>(Dot16<TD>(i1, lo1, xb), hi1, xb + 128);
                i2 = Dot16<TD>(Dot16<TD>(i2, lo2, xb), hi2, xb + 128);
                i3 = Dot16<TD>(Dot16<TD>(i3, lo3, xb), hi3, xb + 128);
                if (TQ.Two)
                {
                    j0 = Dot16<TD>(Dot16<TD>(j0, lo0, xb + 16), hi0, xb + 144);
                    j1 = Dot16<TD>(Dot16<TD>(j1, lo1, xb + 16), hi1, xb + 144);
                    j2 = Dot16<TD>(Dot16<TD>(j2, lo2, xb + 16), hi2, xb + 144);
                    j3 = Dot16<TD>(Dot16<TD>(j3, lo3, xb + 16), hi3, xb + 144);
                }

                // (3) acc = fma(Σ, d_w·d_x, acc) per lane.
                // The 8 rows' f16 scales: plain loads and a conversion in registers (two gathers per 32-value block — the
                // dwords, then the f16 table — cost a 4-token product ~16 % on Qwen shapes).
                var raw = Vector256.Create(*(int*)(p + o0), *(int*)(p + o1), *(int*)(p + o2), *(int*)(p + o3), *(int*)(p + o4), *(int*)(p + o5), *(int*)(p + o6), *(int*)(p + o7));
                var dw = FloatConversions.HalfToSingle8(raw.AsUInt32() & Vector256.Create(0xFFFFu));
                var d0 = Avx2.PermuteVar8x32(dw, spread0);
                var d1 = Avx2.PermuteVar8x32(dw, spread1);
                var d2 = Avx2.PermuteVar8x32(dw, spread2);
                var d3 = Avx2.PermuteVar8x32(dw, spread3);
                var sx = Avx.BroadcastVector128ToVector256(s + (Activations.Group * b));
                f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), d0 * sx, f0);
                f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), d1 * sx, f1);
                f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), d2 * sx, f2);
                f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), d3 * sx, f3);
                if (TQ.Two)
                {
                    sx = Avx.BroadcastVector128ToVector256(s + (Activations.Group * b) + 4);
                    h0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(j0), d0 * sx, h0);
                    h1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(j1), d1 * sx, h1);
                    h2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(j2), d2 * sx, h2);
                    h3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(j3), d3 * sx, h3);
                }
            }

            f0.Store(tile);
            f1.Store(tile + 8);
            f2.Store(tile + 16);
            f3.Store(tile + 24);
            if (TQ.Two)
            {
                h0.Store(tile + 32);
                h1.Store(tile + 40);
                h2.Store(tile + 48);
                h3.Store(tile + 56);
            }

            StoreTile(tile, x.Rows, y, ldy, r0, Math.Min(LaneRows, end - r0), rowsPerVector: 2, vectorStride: 8, quadStride: 32);
        }
    }

    // ----- K-quants: super-blocks of 256 -----

    /// <summary>
    /// acc + the dots of one 16-value half of a pair's sub-block (<c>[A 4 values ×4 | B ×4]</c> dwords) with a quad: 4 steps,
    /// each a <c>pshufd</c> spreading step g's 4 bytes of A and B over their halves and one dot with the quad's 16 bytes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot16<TD>(Vector256<int> acc, Vector256<int> pair, sbyte* x)
        where TD : IDot
    {
        acc = TD.Dot(acc, Avx2.Shuffle(pair, 0x00).AsByte(), Avx2.BroadcastVector128ToVector256(x));
        acc = TD.Dot(acc, Avx2.Shuffle(pair, 0x55).AsByte(), Avx2.BroadcastVector128ToVector256(x + 32));
        acc = TD.Dot(acc, Avx2.Shuffle(pair, 0xAA).AsByte(), Avx2.BroadcastVector128ToVector256(x + 64));
        return TD.Dot(acc, Avx2.Shuffle(pair, 0xFF).AsByte(), Avx2.BroadcastVector128ToVector256(x + 96));
    }

    /// <summary>Σx of the quad (lanes 0–3, repeated in 4–7) over sum block <paramref name="j"/> (16 values).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> QuadSums(int* sums, int j, int quad) =>
        Avx2.BroadcastVector128ToVector256(sums + (Activations.Group * j) + (4 * quad));

    /// <summary>
    /// Q4_K, per 8-row tile, super-block and row pair: (1) the pair's 6-bit scales and mins into one vector
    /// (<c>[scales A, mins A | scales B, mins B]</c>); (2) per sub-block of 32, the nibbles of both rows as two
    /// <c>[A | B]</c> halves, 8 dots per quad, the sub-block sum times its scale (picked per half by <c>pshufb</c>), and the
    /// min times the quad's Σx; (3) two fused adds per pair and quad, as the definition: <c>fma(Σ, d·d_x, acc)</c> then
    /// <c>fma(−Σmins, dmin·d_x, acc)</c>. Float accumulators live in a small stack array (touched once per super-block).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuadsQ4K<TD, TQ>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end, bool wide = false)
        where TD : IDot
        where TQ : IGroups
    {
        var superBlocks = w.Columns / 256;
        var q = x.GroupQuants(0);
        var s = x.GroupScales(0);
        var offsets = stackalloc nint[LaneRows];
        var tile = stackalloc float[2 * 4 * 8];
        var acc = (Vector256<float>*)tile;
        var pairSums = x.QuadPairSums(wide ? 16 : 8);
        if (wide)
        {
            // Tokens past the last read token 0's row: their lanes are computed and never stored.
            var plain = stackalloc sbyte*[MaxQuadTokens];
            for (var t = 0; t < MaxQuadTokens; t++)
            {
                plain[t] = x.PlainQuants(t < x.Rows ? t : 0);
            }

            QuadsQ4KWide<TQ>(w, plain, s, pairSums, offsets, superBlocks, x.Rows, y, ldy, start, end);
        }
        else
        {
            QuadsQ4K<TD, TQ>(w, q, s, pairSums, offsets, tile, acc, superBlocks, x.Rows, y, ldy, start, end);
        }
    }

    /// <summary>Ints of <see cref="QuadPairSums(int*, int, int, int*)"/>'s output for <paramref name="lanes"/> lanes.</summary>
    internal static int QuadPairSumsLength(int superBlocks, int lanes) => superBlocks * 2 * 4 * lanes;

    /// <summary>
    /// Per super-block, quad and pair of sub-blocks p (0–3): the quad's Σx over 32-value sub-blocks 2p and 2p+1 as two
    /// 16-bit halves of each dword (lanes 0–3 the quad's tokens, repeated up to <paramref name="lanes"/>: 8 for 256-bit
    /// kernels, 16 for 512-bit ones), for one <c>vpmaddwd</c> against a pair of mins. |Σx| ≤ 32·128 fits 16 bits; the
    /// products and their sums are exact.
    /// </summary>
    internal static void QuadPairSums(int* m, int superBlocks, int lanes, int* into)
    {
        // A quad's 4 tokens are side by side in the token-group layout: one 4-lane vector per sum block, stored once
        // per 4 lanes (a scalar loop per lane was most of a 4-token step's activation conversion).
        var repeats = lanes / 4;
        var low = Vector128.Create(0xFFFF);
        for (var sb = 0; sb < superBlocks; sb++)
        {
            for (var quad = 0; quad < 2; quad++)
            {
                var quadSums = m + (4 * quad);
                for (var p = 0; p < 4; p++)
                {
                    var j = (16 * sb) + (4 * p);
                    var first = Vector128.Load(quadSums + (Activations.Group * j)) + Vector128.Load(quadSums + (Activations.Group * (j + 1)));
                    var second = Vector128.Load(quadSums + (Activations.Group * (j + 2))) + Vector128.Load(quadSums + (Activations.Group * (j + 3)));
                    var packed = (first & low) | (second << 16);
                    for (var r = 0; r < repeats; r++)
                    {
                        packed.Store(into + (4 * r));
                    }

                    into += lanes;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuadsQ4K<TD, TQ>(
        WeightMatrix w, sbyte* q, float* s, int* pairSums, nint* offsets, float* tile, Vector256<float>* acc,
        int superBlocks, int tokens, float* y, int ldy, int start, int end)
        where TD : IDot
        where TQ : IGroups
    {
        var low = Vector256.Create((byte)0x0F);
        for (var r0 = start; r0 < end; r0 += LaneRows)
        {
            RowOffsets(w, r0, end, offsets);
            var gather = GatherOffsets(offsets);
            var row = w.Row(r0);
            var (nextTile, step) = NextTile(w, r0, end, superBlocks);
            var next = (byte*)nextTile;
            var fetched = next;
            for (var i = 0; i < 8; i++)
            {
                acc[i] = Vector256<float>.Zero;
            }

            for (var sb = 0; sb < superBlocks; sb++)
            {
                var block0 = row + (144 * sb);
                fetched = PrefetchTo(fetched, next + ((sb + 1) * step));
                var dd = Avx2.GatherVector256((int*)block0, gather, 1);
                var d8 = Halves(dd, high: false);
                var dmin8 = Halves(dd, high: true);
                var sx0 = Avx.BroadcastVector128ToVector256(s + (Activations.Group * sb));
                var sx1 = Avx.BroadcastVector128ToVector256(s + (Activations.Group * sb) + 4);
                var xq = q + (2048 * sb);
                for (var pair = 0; pair < 4; pair++)
                {
                    var blockA = block0 + offsets[2 * pair];
                    var blockB = block0 + offsets[(2 * pair) + 1];
                    var sm = Vector256.Create(VecDot.ScalesMinsK4Vector(blockA + 4), VecDot.ScalesMinsK4Vector(blockB + 4));
                    Vector256<int> sum0 = default, mins0 = default, sum1 = default, mins1 = default;
                    var sums = pairSums + (sb * 2 * 4 * 8);
                    for (var p = 0; p < 4; p++)
                    {
                        var minPair = Avx2.Shuffle(sm, Vector256.Load(PickK4MinPairs + (64 * p))).AsInt16();
                        mins0 += Avx2.MultiplyAddAdjacent(minPair, Vector256.Load(sums + (8 * p)).AsInt16());
                        if (TQ.Two)
                        {
                            mins1 += Avx2.MultiplyAddAdjacent(minPair, Vector256.Load(sums + 32 + (8 * p)).AsInt16());
                        }
                    }

                    for (var jj = 0; jj < 4; jj++)
                    {
                        var rawA = Vector256.Load(blockA + 16 + (32 * jj));
                        var rawB = Vector256.Load(blockB + 16 + (32 * jj));
                        for (var h = 0; h < 2; h++)
                        {
                            // Low nibbles are sub-block 2jj, high nibbles 2jj+1.
                            var j = (2 * jj) + h;
                            var va = h == 0 ? rawA & low : ShiftRight(rawA, 4) & low;
                            var vb = h == 0 ? rawB & low : ShiftRight(rawB, 4) & low;
                            var lo = Avx2.Permute2x128(va, vb, 0x20).AsInt32();
                            var hi = Avx2.Permute2x128(va, vb, 0x31).AsInt32();
                            var scale = Avx2.Shuffle(sm, Vector256.Load(PickK4 + (32 * j))).AsInt32();
                            var xs = xq + (256 * j);
                            var t = Dot16<TD>(Dot16<TD>(Vector256<int>.Zero, lo, xs), hi, xs + 128);
                            sum0 += Avx2.MultiplyLow(t, scale);
                            if (TQ.Two)
                            {
                                t = Dot16<TD>(Dot16<TD>(Vector256<int>.Zero, lo, xs + 16), hi, xs + 144);
                                sum1 += Avx2.MultiplyLow(t, scale);
                            }
                        }
                    }

                    var spread = Vector256.Load(PairPick + (8 * pair));
                    var d = Avx2.PermuteVar8x32(d8, spread);
                    var dmin = Avx2.PermuteVar8x32(dmin8, spread);
                    var f = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), d * sx0, acc[pair]);
                    acc[pair] = Fma.MultiplyAddNegated(dmin * sx0, Avx.ConvertToVector256Single(mins0), f);
                    if (TQ.Two)
                    {
                        f = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), d * sx1, acc[4 + pair]);
                        acc[4 + pair] = Fma.MultiplyAddNegated(dmin * sx1, Avx.ConvertToVector256Single(mins1), f);
                    }
                }
            }

            StoreTile(tile, tokens, y, ldy, r0, Math.Min(LaneRows, end - r0), rowsPerVector: 2, vectorStride: 8, quadStride: 32);
        }
    }

    /// <summary>
    /// Q6_K, per 8-row tile, super-block and row pair: the pair's int8 scales in one vector (<c>[A | B]</c>); per 32 values
    /// the 6-bit values of both rows rebuilt from ql/qh, split into two sub-blocks of 16 as <c>[A | B]</c>, each dotted with
    /// the quad from −32·Σx (the values carry +32) and multiplied by its scale (sign-extended per half by <c>pshufb</c> and
    /// an arithmetic shift); then one fused add per pair and quad: <c>fma(Σ, d·d_x, acc)</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuadsQ6K<TD, TQ>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TD : IDot
        where TQ : IGroups
    {
        var superBlocks = w.Columns / 256;
        var q = x.GroupQuants(0);
        var s = x.GroupScales(0);
        var m = x.GroupSums(0);
        var offsets = stackalloc nint[LaneRows];
        var tile = stackalloc float[2 * 4 * 8];
        var acc = (Vector256<float>*)tile;
        var low = Vector256.Create((byte)0x0F);
        var three = Vector256.Create((byte)3);
        for (var r0 = start; r0 < end; r0 += LaneRows)
        {
            RowOffsets(w, r0, end, offsets);
            var gather = GatherOffsets(offsets);
            var row = w.Row(r0);
            var (nextTile, step) = NextTile(w, r0, end, superBlocks);
            var next = (byte*)nextTile;
            var fetched = next;
            for (var i = 0; i < 8; i++)
            {
                acc[i] = Vector256<float>.Zero;
            }

            for (var sb = 0; sb < superBlocks; sb++)
            {
                var block0 = row + (210 * sb);
                fetched = PrefetchTo(fetched, next + ((sb + 1) * step));

                // d is the last 2 bytes of the 210-byte block: gather the 4 bytes ending there (never past the row).
                var d8 = Halves(Avx2.GatherVector256((int*)(block0 + 206), gather, 1), high: true);
                var sx0 = Avx.BroadcastVector128ToVector256(s + (Activations.Group * sb));
                var sx1 = Avx.BroadcastVector128ToVector256(s + (Activations.Group * sb) + 4);
                var xq = q + (2048 * sb);
                for (var pair = 0; pair < 4; pair++)
                {
                    var blockA = block0 + offsets[2 * pair];
                    var blockB = block0 + offsets[(2 * pair) + 1];
                    var sc = Vector256.Create(Vector128.Load(blockA + 192), Vector128.Load(blockB + 192));
                    Vector256<int> sum0 = default, sum1 = default;
                    for (var half = 0; half < 2; half++)
                    {
                        var ql0A = Vector256.Load(blockA + (64 * half));
                        var ql1A = Vector256.Load(blockA + (64 * half) + 32);
                        var qhA = Vector256.Load(blockA + 128 + (32 * half));
                        var ql0B = Vector256.Load(blockB + (64 * half));
                        var ql1B = Vector256.Load(blockB + (64 * half) + 32);
                        var qhB = Vector256.Load(blockB + 128 + (32 * half));
                        for (var k = 0; k < 4; k++)
                        {
                            // Values 128·half + 32k…+31: low or high nibbles of ql0/ql1, bits 2k, 2k+1 of qh.
                            var qlA = (k & 1) == 0 ? ql0A : ql1A;
                            var qlB = (k & 1) == 0 ? ql0B : ql1B;
                            var va = ((k < 2 ? qlA : ShiftRight(qlA, 4)) & low) | ShiftLeft4(ShiftRightBits(qhA, 2 * k) & three);
                            var vb = ((k < 2 ? qlB : ShiftRight(qlB, 4)) & low) | ShiftLeft4(ShiftRightBits(qhB, 2 * k) & three);
                            var sub = (8 * half) + (2 * k);
                            sum0 = SubBlocks16<TD>(sum0, va, vb, sc, xq, m, (16 * sb) + sub, sub, 0);
                            if (TQ.Two)
                            {
                                sum1 = SubBlocks16<TD>(sum1, va, vb, sc, xq, m, (16 * sb) + sub, sub, 1);
                            }
                        }
                    }

                    var d = Avx2.PermuteVar8x32(d8, Vector256.Load(PairPick + (8 * pair)));
                    acc[pair] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), d * sx0, acc[pair]);
                    if (TQ.Two)
                    {
                        acc[4 + pair] = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), d * sx1, acc[4 + pair]);
                    }
                }
            }

            StoreTile(tile, x.Rows, y, ldy, r0, Math.Min(LaneRows, end - r0), rowsPerVector: 2, vectorStride: 8, quadStride: 32);
        }
    }

    /// <summary>
    /// Q6_K: sum + the scaled dots of sub-blocks <paramref name="sub"/> and <paramref name="sub"/>+1 (32 values of rows A
    /// and B, <paramref name="va"/> and <paramref name="vb"/>) with quad <paramref name="quad"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlocks16<TD>(Vector256<int> sum, Vector256<byte> va, Vector256<byte> vb, Vector256<byte> sc, sbyte* xq, int* m, int sumBlock, int sub, int quad)
        where TD : IDot
    {
        var lo = Avx2.Permute2x128(va, vb, 0x20).AsInt32();
        var hi = Avx2.Permute2x128(va, vb, 0x31).AsInt32();

        // Sub-block j of 16 starts at value 16j: in the token-group layout, 256 bytes per 32 values, 128 per 16.
        var x0 = xq + (256 * (sub / 2)) + (16 * quad);
        var t = Dot16<TD>(Vector256<int>.Zero - (QuadSums(m, sumBlock, quad) << 5), lo, x0);
        sum += Avx2.MultiplyLow(t, Avx2.ShiftRightArithmetic(Avx2.Shuffle(sc, Vector256.Load(PickK6 + (32 * sub))).AsInt32(), 24));
        t = Dot16<TD>(Vector256<int>.Zero - (QuadSums(m, sumBlock + 1, quad) << 5), hi, x0 + 128);
        return sum + Avx2.MultiplyLow(t, Avx2.ShiftRightArithmetic(Avx2.Shuffle(sc, Vector256.Load(PickK6 + (32 * (sub + 1)))).AsInt32(), 24));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ShiftRightBits(Vector256<byte> v, int bits) =>
        Avx2.ShiftRightLogical(v.AsUInt16(), Vector128.CreateScalar((ushort)bits)).AsByte();

    /// <summary>
    /// <c>pshufb</c> controls for Q4_K's pair vector: j = 0–7 puts scale j, zero-extended, in every dword of each half
    /// (the halves hold rows A and B at the same byte positions).
    /// </summary>
    private static readonly byte* PickK4 = BuildControls(8, 32, (j, b) => b % 4 == 0 ? (byte)j : (byte)0x80);

    /// <summary>
    /// <c>pshufb</c> controls, p = 0–3: mins 2p and 2p+1 of every 128-bit lane's row zero-extended into the two 16-bit
    /// halves of each dword (for <c>vpmaddwd</c> against <see cref="QuadPairSums"/>). 64 bytes per p, so both the 256-bit
    /// and the 512-bit kernels load their width from the same entry.
    /// </summary>
    private static readonly byte* PickK4MinPairs = BuildControls(4, 64, (p, b) => (b % 4) switch
    {
        0 => (byte)(8 + (2 * p)),
        2 => (byte)(8 + (2 * p) + 1),
        _ => 0x80,
    });

    /// <summary><c>pshufb</c> controls for Q6_K: scale j in each dword's top byte (an arithmetic shift by 24 sign-extends it).</summary>
    private static readonly byte* PickK6 = BuildControls(16, 32, (j, b) => b % 4 == 3 ? (byte)j : (byte)0x80);

    /// <summary><paramref name="count"/> shuffle controls of <paramref name="bytes"/> bytes each, byte b of control j being <c>pick(j, b)</c>.</summary>
    private static byte* BuildControls(int count, int bytes, Func<int, int, byte> pick)
    {
        var p = (byte*)NativeMemory.AlignedAlloc((nuint)(bytes * count), 64);
        for (var j = 0; j < count; j++)
        {
            for (var b = 0; b < bytes; b++)
            {
                p[(bytes * j) + b] = pick(j, b);
            }
        }

        return p;
    }

    /// <summary>
    /// Writes a quad kernel's float tile for the real tokens and rows: lane <c>4·(row % rowsPerVector) + token % 4</c> of
    /// vector <c>row / rowsPerVector</c>, vectors <paramref name="vectorStride"/> floats apart and quads
    /// <paramref name="quadStride"/> (256-bit pairs: 2, 8, 32; 512-bit groups of 4 rows: 4, 32, 16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTile(float* tile, int tokens, float* y, int ldy, int r0, int rows, int rowsPerVector, int vectorStride, int quadStride)
    {
        for (var t = 0; t < tokens; t++)
        {
            var yt = y + ((long)t * ldy) + r0;
            var lane = tile + (quadStride * (t / 4)) + (t % 4);
            for (var i = 0; i < rows; i++)
            {
                yt[i] = lane[(vectorStride * (i / rowsPerVector)) + (4 * (i % rowsPerVector))];
            }
        }
    }

    /// <summary>
    /// <c>vpermd</c>/<c>vpermps</c> indices spreading the 8 rows' values over vectors of <paramref name="rowsPerVector"/>
    /// rows × 4 tokens: vector g's lanes 4i–4i+3 take row <c>rowsPerVector·g + i</c>.
    /// </summary>
    private static int* BuildSpread(int rowsPerVector)
    {
        var lanes = 4 * rowsPerVector;
        var p = (int*)NativeMemory.AlignedAlloc((nuint)(LaneRows * 4 * sizeof(int)), 64);
        for (var g = 0; g < LaneRows / rowsPerVector; g++)
        {
            for (var lane = 0; lane < lanes; lane++)
            {
                p[(lanes * g) + lane] = (rowsPerVector * g) + (lane / 4);
            }
        }

        return p;
    }
}
