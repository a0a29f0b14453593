using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Matrix-vector products for decode (at most <see cref="Activations.MaxPlainRows"/> tokens): no unpacking into a
/// buffer and no token lanes. Here the 8 lanes of a vector are 8 weight rows: each row's block is loaded and expanded
/// in registers, dotted against the token's plain quantized row (<see cref="Activations.PlainQuants"/>), and the 8
/// rows' partial dots are summed across lanes into one vector of 8 exact block sums. The float step then runs once per
/// block for 8 rows at once, and each lane's chain of fused adds is exactly the scalar definition's for that row:
/// same integer sums, same d_w·d_x product, same order over blocks. So results equal <see cref="VecDot"/> (and the
/// token-lane GEMM) bit for bit, whatever the batch or split.
/// </summary>
internal static unsafe partial class QuantGemm
{
    /// <summary>Weight rows per matrix-vector tile (one per lane of a 256-bit float vector).</summary>
    public const int LaneRows = 8;

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) of <c>y[t·ldy + r] = W[r] · x[t]</c> for a batch with plain rows.</summary>
    public static void MultiplyFewRows(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
    {
        if (!IsAccelerated || !x.HasPlainRows)
        {
            MultiplyRows(w, x, y, ldy, start, end);
            return;
        }

        switch (w.Type)
        {
            case GgmlType.Q8_0 when UseVnni:
                Rows32<Q8_0Unsigned, VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q8_0:
                Rows32<Q8_0Signed, SignedMaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_0 when UseVnni:
                Rows32<Q4_0Values, VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_0:
                Rows32<Q4_0Values, MaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q5_0 when UseVnni:
                Rows32<Q5_0Values, VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q5_0:
                Rows32<Q5_0Values, MaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K when UseVnni:
                RowsQ4K<VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K:
                RowsQ4K<MaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K when UseVnni:
                RowsQ6K<VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K:
                RowsQ6K<MaddDot>(w, x, y, ldy, start, end);
                break;
            default:
                throw new NotSupportedException(w.Type.ToString());
        }
    }

    /// <summary>A token's plain quants and its lane of the block scales and sums (stride <see cref="Activations.Group"/>).</summary>
    private readonly struct TokenRow(sbyte* quants, float* scales, int* sums)
    {
        public sbyte* Quants { get; } = quants;

        public float* Scales { get; } = scales;

        public int* Sums { get; } = sums;
    }

    /// <summary>The tokens' pointers, once per call rather than per tile (the accessors divide).</summary>
    private static void TokenRows(Activations x, TokenRow* tokens)
    {
        for (var t = 0; t < x.Rows; t++)
        {
            var lane = t % Activations.Group;
            tokens[t] = new TokenRow(x.PlainQuants(t), x.GroupScales(t / Activations.Group) + lane, x.GroupSums(t / Activations.Group) + lane);
        }
    }

    /// <summary>
    /// Byte offsets of rows r0..r0+7 from row r0; rows past <paramref name="end"/> repeat the last real row (computed,
    /// never stored), so a tile never reads outside the matrix.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowOffsets(WeightMatrix w, int r0, int end, nint* offsets)
    {
        for (var i = 0; i < LaneRows; i++)
        {
            offsets[i] = (nint)(Math.Min(r0 + i, end - 1) - r0) * (nint)w.RowBytes;
        }
    }

    /// <summary>
    /// Where prefetching of the tile after r0's starts, and how far it should have got after each of
    /// <paramref name="steps"/> steps. The 8 rows of a tile are read as 8 interleaved streams, each only as long as a row:
    /// for short rows (896 values: under 1 KiB) the hardware prefetcher never ramps up and the loop waits on DRAM; the
    /// next tile is contiguous, so it is fetched ahead line by line, spread over the current tile's loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (nint Start, nint Step) NextTile(WeightMatrix w, int r0, int end, int steps)
    {
        var rows = Math.Max(0, Math.Min(LaneRows, end - (r0 + LaneRows)));
        return ((nint)(w.Data + ((long)(r0 + LaneRows) * w.RowBytes)), (nint)(((rows * w.RowBytes) + steps - 1) / steps));
    }

    /// <summary>Prefetches the cache lines from <paramref name="from"/> up to <paramref name="to"/>; returns where it stopped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* PrefetchTo(byte* from, byte* to)
    {
        for (; from < to; from += 64)
        {
            Sse.Prefetch0(from);
        }

        return from;
    }

    /// <summary>Gather indices (int32 byte offsets) of the 8 rows; a tile spans far less than 2 GiB.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GatherOffsets(nint* offsets) =>
        Vector256.Create((int)offsets[0], (int)offsets[1], (int)offsets[2], (int)offsets[3], (int)offsets[4], (int)offsets[5], (int)offsets[6], (int)offsets[7]);

    /// <summary>The f32 values of the f16 in the low (<paramref name="high"/> false) or high half of each lane's 32 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves(Vector256<int> raw, bool high)
    {
        var index = high ? Avx2.ShiftRightLogical(raw, 16) : raw & Vector256.Create(0xFFFF);
        return Avx2.GatherVector256(VecDot.HalfTable, index, 4);
    }

    /// <summary>Lane i = Σ of the 8 lanes of vi (integer adds: exact in any order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Sum8(
        Vector256<int> v0, Vector256<int> v1, Vector256<int> v2, Vector256<int> v3,
        Vector256<int> v4, Vector256<int> v5, Vector256<int> v6, Vector256<int> v7)
    {
        // Two rounds of pairwise adds leave, per 128-bit half, the 4-lane partial sums of v0..v3 (a) and v4..v7 (b);
        // adding the halves finishes them.
        var a = Avx2.HorizontalAdd(Avx2.HorizontalAdd(v0, v1), Avx2.HorizontalAdd(v2, v3));
        var b = Avx2.HorizontalAdd(Avx2.HorizontalAdd(v4, v5), Avx2.HorizontalAdd(v6, v7));
        return Avx2.Permute2x128(a, b, 0x20) + Avx2.Permute2x128(a, b, 0x31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Sum8(int* v) => Sum8(
        Vector256.Load(v), Vector256.Load(v + 8), Vector256.Load(v + 16), Vector256.Load(v + 24),
        Vector256.Load(v + 32), Vector256.Load(v + 40), Vector256.Load(v + 48), Vector256.Load(v + 56));

    /// <summary>Writes the tile's lanes for the real rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector256<float> acc, float* yt, int rows)
    {
        if (rows == LaneRows)
        {
            acc.Store(yt);
            return;
        }

        for (var i = 0; i < rows; i++)
        {
            yt[i] = acc.GetElement(i);
        }
    }

    // ----- blocks of 32: Q8_0, Q4_0, Q5_0 -----

    /// <summary>
    /// Hot loop: per block, 8 row loads (expanded in registers) and 8 integer dots against one 32-byte activation
    /// vector, a cross-lane sum, one gather pair for the 8 row scales, and one fused add per row (lane).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows32<TB, TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TB : IBlock32
        where TD : IDot
    {
        var blocks = w.Columns / 32;
        var bb = TB.BlockBytes;
        var offsets = stackalloc nint[LaneRows];
        var count = x.Rows;
        var tokens = stackalloc TokenRow[Activations.MaxPlainRows];
        TokenRows(x, tokens);
        for (var r0 = start; r0 < end; r0 += LaneRows)
        {
            RowOffsets(w, r0, end, offsets);
            var gather = GatherOffsets(offsets);
            var row = w.Row(r0);
            nint o0 = offsets[0], o1 = offsets[1], o2 = offsets[2], o3 = offsets[3];
            nint o4 = offsets[4], o5 = offsets[5], o6 = offsets[6], o7 = offsets[7];
            var (nextTile, step) = NextTile(w, r0, end, blocks);
            var next = (byte*)nextTile;
            var fetched = next;
            for (var t = 0; t < count; t++)
            {
                var xq = tokens[t].Quants;
                var xs = tokens[t].Scales;
                var xm = tokens[t].Sums;
                var acc = Vector256<float>.Zero;
                for (var b = 0; b < blocks; b++)
                {
                    var p = row + (b * bb);
                    fetched = PrefetchTo(fetched, next + ((b + 1) * step));
                    var xv = Vector256.Load(xq + (32 * b));
                    var zero = Vector256<int>.Zero;
                    var sum = Sum8(
                        TD.Dot(zero, TB.Values(p + o0), xv), TD.Dot(zero, TB.Values(p + o1), xv),
                        TD.Dot(zero, TB.Values(p + o2), xv), TD.Dot(zero, TB.Values(p + o3), xv),
                        TD.Dot(zero, TB.Values(p + o4), xv), TD.Dot(zero, TB.Values(p + o5), xv),
                        TD.Dot(zero, TB.Values(p + o6), xv), TD.Dot(zero, TB.Values(p + o7), xv));

                    // The values carry +Offset: take Offset·Σx back off (exact).
                    sum -= Vector256.Create(TB.Offset * xm[Activations.Group * b]);
                    var dw = Halves(Avx2.GatherVector256((int*)p, gather, 1), high: false);
                    acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), dw * Vector256.Create(xs[Activations.Group * b]), acc);
                }

                StoreRows(acc, y + ((long)t * ldy) + r0, Math.Min(LaneRows, end - r0));
            }
        }
    }

    // ----- K-quants: the activation's 16-value sums, contiguous per token and super-block -----

    // Gathered once per call: read from the token-group layout (stride Activations.Group) they cost a dozen scalar
    // instructions per super-block of every 8-row tile. A call's columns are a model's hidden sizes (a few thousand), so
    // count · columns / 8 bytes sit well within a stack frame.

    /// <summary>Per token and super-block, the 8 sums of 32 values (pairs of 16-value sums; Q4_K's sub-blocks).</summary>
    private static void PairSums(TokenRow* tokens, int count, int superBlocks, int* into)
    {
        for (var t = 0; t < count; t++)
        {
            var m = tokens[t].Sums;
            for (var j = 0; j < superBlocks * 8; j++)
            {
                *into++ = m[Activations.Group * 2 * j] + m[Activations.Group * ((2 * j) + 1)];
            }
        }
    }

    /// <summary>Per token and super-block, the 16 sums of 16 values (Q6_K's sub-blocks).</summary>
    private static void BlockSums(TokenRow* tokens, int count, int superBlocks, int* into)
    {
        for (var t = 0; t < count; t++)
        {
            var m = tokens[t].Sums;
            for (var j = 0; j < superBlocks * 16; j++)
            {
                *into++ = m[Activations.Group * j];
            }
        }
    }

    // ----- Q4_K -----

    /// <summary>
    /// Hot loop: per super-block and row, 4 loads of 64 nibbles, 8 integer dots each scaled by its 6-bit scale, and
    /// the mins against the activation's 32-value sums; then cross-lane sums and two fused adds per row (lane).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsQ4K<TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TD : IDot
    {
        var superBlocks = w.Columns / 256;
        var offsets = stackalloc nint[LaneRows];
        var count = x.Rows;
        var tokens = stackalloc TokenRow[Activations.MaxPlainRows];
        TokenRows(x, tokens);
        var partial = stackalloc int[2 * 8 * LaneRows];
        var pairSums = stackalloc int[count * superBlocks * 8];
        PairSums(tokens, count, superBlocks, pairSums);
        if (UseWideKernels)
        {
            RowsQ4KWide(w, y, ldy, start, end, tokens, count, pairSums, offsets, partial);
            return;
        }

        var low = Vector256.Create((byte)0x0F);
        for (var r0 = start; r0 < end; r0 += LaneRows)
        {
            RowOffsets(w, r0, end, offsets);
            var gather = GatherOffsets(offsets);
            var row = w.Row(r0);
            var (nextTile, step) = NextTile(w, r0, end, superBlocks);
            var next = (byte*)nextTile;
            var fetched = next;
            for (var t = 0; t < count; t++)
            {
                var xq = tokens[t].Quants;
                var xs = tokens[t].Scales;
                var acc = Vector256<float>.Zero;
                for (var sb = 0; sb < superBlocks; sb++)
                {
                    var y0 = xq + (256 * sb);
                    var bsums = Vector256.Load(pairSums + (((t * superBlocks) + sb) * 8));
                    var block0 = row + (144 * sb);
                    fetched = PrefetchTo(fetched, next + ((sb + 1) * step));
                    for (var i = 0; i < LaneRows; i++)
                    {
                        var block = block0 + offsets[i];
                        var scalesMins = VecDot.ScalesMinsK4Vector(block + 4);
                        var qs = block + 16;
                        var s = Vector256<int>.Zero;
                        var sc = Avx2.BroadcastScalarToVector256(scalesMins.AsUInt64()).AsByte();
                        for (var jj = 0; jj < 4; jj++)
                        {
                            var raw = Vector256.Load(qs + (32 * jj));
                            var lo = TD.Dot(Vector256<int>.Zero, raw & low, Vector256.Load(y0 + (64 * jj)));
                            var hi = TD.Dot(Vector256<int>.Zero, ShiftRight(raw, 4) & low, Vector256.Load(y0 + (64 * jj) + 32));

                            // Each lane's dot is within ±4·15·128, so 16 bits hold it: pack the two sub-blocks' lanes and
                            // let one vpmaddwd scale and pair them (the lanes are summed across later, so pairing is free).
                            var pairScales = Avx2.Shuffle(sc, Vector256.Load(PickQ4KScales + (32 * jj))).AsInt16();
                            s += Avx2.MultiplyAddAdjacent(Avx2.PackSignedSaturate(lo, hi), pairScales);
                        }

                        s.Store(partial + (8 * i));
                        var minsWide = Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(scalesMins, 8));
                        Avx2.MultiplyLow(minsWide, bsums).Store(partial + 64 + (8 * i));
                    }

                    var sumScaled = Sum8(partial);
                    var sumMins = Sum8(partial + 64);
                    var dd = Avx2.GatherVector256((int*)block0, gather, 1);
                    var sx = Vector256.Create(xs[Activations.Group * sb]);
                    acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumScaled), Halves(dd, high: false) * sx, acc);
                    acc = Fma.MultiplyAddNegated(Halves(dd, high: true) * sx, Avx.ConvertToVector256Single(sumMins), acc);
                }

                StoreRows(acc, y + ((long)t * ldy) + r0, Math.Min(LaneRows, end - r0));
            }
        }
    }

    /// <summary>
    /// <c>pshufb</c> controls, per 64-value chunk jj, turning the 8 scale bytes (repeated in every qword) into 16-bit lanes
    /// that match <c>vpackssdw(lo, hi)</c>: in each 128-bit half, 4 lanes of scale 2jj then 4 of scale 2jj+1.
    /// </summary>
    private static readonly byte* PickQ4KScales = BuildPickQ4KScales();

    private static byte* BuildPickQ4KScales()
    {
        var p = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(4 * 32, 32);
        for (var jj = 0; jj < 4; jj++)
        {
            for (var b = 0; b < 32; b++)
            {
                var lane = (b % 16) / 2;
                p[(32 * jj) + b] = b % 2 == 1 ? (byte)0x80 : (byte)((2 * jj) + (lane < 4 ? 0 : 1));
            }
        }

        return p;
    }

    // ----- Q6_K -----

    /// <summary>
    /// Hot loop: per super-block and row, 3×2 loads expanded to 8 vectors of 6-bit values, 8 integer dots each scaled
    /// by its pair of int8 scales, minus 32·Σ scale·Σx; then a cross-lane sum and one fused add per row (lane).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsQ6K<TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TD : IDot
    {
        var superBlocks = w.Columns / 256;
        var offsets = stackalloc nint[LaneRows];
        var count = x.Rows;
        var tokens = stackalloc TokenRow[Activations.MaxPlainRows];
        TokenRows(x, tokens);
        var partial = stackalloc int[8 * LaneRows];
        var blockSums = stackalloc int[count * superBlocks * 16];
        BlockSums(tokens, count, superBlocks, blockSums);
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
            for (var t = 0; t < count; t++)
            {
                var xq = tokens[t].Quants;
                var xs = tokens[t].Scales;
                var acc = Vector256<float>.Zero;
                for (var sb = 0; sb < superBlocks; sb++)
                {
                    var y0 = xq + (256 * sb);
                    var sums = blockSums + (((t * superBlocks) + sb) * 16);
                    var bs0 = Vector256.Load(sums);
                    var bs1 = Vector256.Load(sums + 8);
                    var block0 = row + (210 * sb);
                    fetched = PrefetchTo(fetched, next + ((sb + 1) * step));
                    for (var i = 0; i < LaneRows; i++)
                    {
                        var block = block0 + offsets[i];
                        var sc = Vector128.Load((sbyte*)(block + 192));

                        // The values carry +32: start from −32·Σ scale·Σx over the 16 sub-blocks (exact).
                        var s = Vector256<int>.Zero - ((
                            Avx2.MultiplyLow(Avx2.ConvertToVector256Int32(sc), bs0) +
                            Avx2.MultiplyLow(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(sc, 8)), bs1)) << 5);
                        for (var half = 0; half < 2; half++)
                        {
                            var ql0 = Vector256.Load(block + (64 * half));
                            var ql1 = Vector256.Load(block + (64 * half) + 32);
                            var qh = Vector256.Load(block + 128 + (32 * half));
                            var yh = y0 + (128 * half);
                            var sh = half == 0 ? sc : Sse2.ShiftRightLogical128BitLane(sc, 8);
                            s += Avx2.MultiplyLow(TD.Dot(Vector256<int>.Zero, (ql0 & low) | ShiftLeft4(qh & three), Vector256.Load(yh)), PairScales(sh, 0));
                            s += Avx2.MultiplyLow(TD.Dot(Vector256<int>.Zero, (ql1 & low) | ShiftLeft4(ShiftRight(qh, 2) & three), Vector256.Load(yh + 32)), PairScales(sh, 2));
                            s += Avx2.MultiplyLow(TD.Dot(Vector256<int>.Zero, (ShiftRight(ql0, 4) & low) | ShiftLeft4(ShiftRight(qh, 4) & three), Vector256.Load(yh + 64)), PairScales(sh, 4));
                            s += Avx2.MultiplyLow(TD.Dot(Vector256<int>.Zero, (ShiftRight(ql1, 4) & low) | ShiftLeft4(ShiftRight(qh, 6) & three), Vector256.Load(yh + 96)), PairScales(sh, 6));
                        }

                        s.Store(partial + (8 * i));
                    }

                    var total = Sum8(partial);

                    // d is the last 2 bytes of the 210-byte block: gather the 4 bytes ending there (never past the row).
                    var d = Halves(Avx2.GatherVector256((int*)(block0 + 206), gather, 1), high: true);
                    acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(total), d * Vector256.Create(xs[Activations.Group * sb]), acc);
                }

                StoreRows(acc, y + ((long)t * ldy) + r0, Math.Min(LaneRows, end - r0));
            }
        }
    }

    /// <summary>
    /// Scales <paramref name="first"/> and <paramref name="first"/>+1 of <paramref name="sc"/> widened to lanes 0–3 and
    /// 4–7: one 32-value dot covers two 16-value sub-blocks, 4 lanes each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PairScales(Vector128<sbyte> sc, [System.Diagnostics.CodeAnalysis.ConstantExpected] byte first)
    {
        var a = (byte)first;
        var b = (byte)(first + 1);
        var pick = Vector128.Create(a, a, a, a, b, b, b, b, a, a, a, a, b, b, b, b).AsSByte();
        return Avx2.ConvertToVector256Int32(Ssse3.Shuffle(sc, pick));
    }
}
