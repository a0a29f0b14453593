using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>
/// The Q4_K quad product in 512-bit vectors: a 128-bit lane per weight row, its sub-block values in their natural order,
/// multiplied by each token's values broadcast to every lane (the token's plain row), so no weight byte is shuffled per
/// token; the 4 partial sums per (row, token) are transposed into 16 lanes of 4 rows × 4 tokens once per super-block.
/// .NET has no 512-bit <c>vpdpbusd</c>, so the dots are <c>vpmaddubsw</c> pair sums (two added: ≤ 2 · 2 · 15 · 128 =
/// 7,680, exact in 16 bits) scaled by <c>vpmaddwd</c> against the sub-block's scale, as ggml's AVX2 kernel does per row.
/// Integer sums are exact and the float step per (row, token) lane is the definition's, so results equal
/// <see cref="VecDot"/> and the 256-bit kernel bit for bit.
/// </summary>
internal static unsafe partial class QuantGemm
{
    /// <summary>
    /// Whether Q4_K products (1 token and quads) take the 512-bit kernels (AVX-512 F/BW). Internal and settable so tests
    /// run both widths on one machine; both give the same bits, so a test switching it does not disturb others running at
    /// the time.
    /// </summary>
    internal static bool UseWideKernels { get; set; } = Avx512F.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>
    /// Hot loop, per 8-row tile and super-block: (1) the 8 rows' d and dmin gathered once, their scales and mins into two
    /// vectors (4 rows each, a 128-bit lane per row); per quad of tokens, (2) the mins against the quad's pair sums by 4
    /// <c>vpmaddwd</c> per group of 4 rows; (3) per sub-block, each group's 32 nibbles per row as two vectors of 16 values
    /// (values 0–15, then 16–31), and per token its two 16-value halves broadcast once and taken against both groups: two
    /// <c>vpmaddubsw</c>, their sum and one <c>vpmaddwd</c> by the sub-block's scales into the (group, token) accumulator
    /// (4 partial sums per row); (4) per group the 4 tokens' accumulators transposed and added into one vector of
    /// (row, token) sums, then two fused adds. Sharing the broadcasts between the two groups is what made this form
    /// faster than spreading the weights per token (BENCHMARKS.md, tenth session).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuadsQ4KWide<TQ>(
        WeightMatrix w, sbyte** plain, float* s, int* pairSums, nint* offsets, int superBlocks, int tokens, float* y, int ldy, int start, int end)
        where TQ : IGroups
    {
        var low = Vector512.Create((byte)0x0F);
        var tile = stackalloc float[2 * 2 * 16];
        var acc = (Vector512<float>*)tile;
        for (var r0 = start; r0 < end; r0 += LaneRows)
        {
            RowOffsets(w, r0, end, offsets);
            var gather = GatherOffsets(offsets);
            var row = w.Row(r0);
            var (nextTile, step) = NextTile(w, r0, end, superBlocks);
            var next = (byte*)nextTile;
            var fetched = next;
            acc[0] = Vector512<float>.Zero;
            acc[1] = Vector512<float>.Zero;
            acc[2] = Vector512<float>.Zero;
            acc[3] = Vector512<float>.Zero;
            for (var sb = 0; sb < superBlocks; sb++)
            {
                var block0 = row + (144 * sb);
                fetched = PrefetchTo(fetched, next + ((sb + 1) * step));
                var dd = Avx2.GatherVector256((int*)block0, gather, 1);
                var d8 = Halves(dd, high: false).ToVector512Unsafe();
                var dmin8 = Halves(dd, high: true).ToVector512Unsafe();
                var sums = pairSums + (sb * 2 * 4 * 16);
                var b0 = block0 + offsets[0];
                var b1 = block0 + offsets[1];
                var b2 = block0 + offsets[2];
                var b3 = block0 + offsets[3];
                var b4 = block0 + offsets[4];
                var b5 = block0 + offsets[5];
                var b6 = block0 + offsets[6];
                var b7 = block0 + offsets[7];
                var sm0 = Join(
                    Vector256.Create(VecDot.ScalesMinsK4Vector(b0 + 4), VecDot.ScalesMinsK4Vector(b1 + 4)),
                    Vector256.Create(VecDot.ScalesMinsK4Vector(b2 + 4), VecDot.ScalesMinsK4Vector(b3 + 4)));
                var sm1 = Join(
                    Vector256.Create(VecDot.ScalesMinsK4Vector(b4 + 4), VecDot.ScalesMinsK4Vector(b5 + 4)),
                    Vector256.Create(VecDot.ScalesMinsK4Vector(b6 + 4), VecDot.ScalesMinsK4Vector(b7 + 4)));
                var spread0 = Vector512.Load(QuadPick);
                var spread1 = Vector512.Load(QuadPick + 16);
                for (var quad = 0; quad < (TQ.Two ? 2 : 1); quad++)
                {
                    Vector512<int> mins0 = default, mins1 = default;
                    for (var p = 0; p < 4; p++)
                    {
                        var pairSum = Vector512.Load(sums + (64 * quad) + (16 * p)).AsInt16();
                        var pick = Vector512.Load(PickK4MinPairs + (64 * p));
                        mins0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.Shuffle(sm0, pick).AsInt16(), pairSum);
                        mins1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.Shuffle(sm1, pick).AsInt16(), pairSum);
                    }

                    // Per (row group, token): 4 partial sums per row (a 128-bit lane each), added up after the super-block.
                    var x0 = plain[(4 * quad) + 0] + (256 * sb);
                    var x1 = plain[(4 * quad) + 1] + (256 * sb);
                    var x2 = plain[(4 * quad) + 2] + (256 * sb);
                    var x3 = plain[(4 * quad) + 3] + (256 * sb);
                    Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
                    Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default;
                    for (var jj = 0; jj < 4; jj++)
                    {
                        var r01 = Join(Vector256.Load(b0 + 16 + (32 * jj)), Vector256.Load(b1 + 16 + (32 * jj)));
                        var r23 = Join(Vector256.Load(b2 + 16 + (32 * jj)), Vector256.Load(b3 + 16 + (32 * jj)));
                        var r45 = Join(Vector256.Load(b4 + 16 + (32 * jj)), Vector256.Load(b5 + 16 + (32 * jj)));
                        var r67 = Join(Vector256.Load(b6 + 16 + (32 * jj)), Vector256.Load(b7 + 16 + (32 * jj)));
                        for (var h = 0; h < 2; h++)
                        {
                            // Low nibbles are sub-block 2jj, high nibbles 2jj+1; 128-bit lanes 0, 2 of each pair of rows
                            // hold values 0–15, lanes 1, 3 values 16–31.
                            var j = (2 * jj) + h;
                            var v01 = (h == 0 ? r01 : Avx512BW.ShiftRightLogical(r01.AsUInt16(), 4).AsByte()) & low;
                            var v23 = (h == 0 ? r23 : Avx512BW.ShiftRightLogical(r23.AsUInt16(), 4).AsByte()) & low;
                            var v45 = (h == 0 ? r45 : Avx512BW.ShiftRightLogical(r45.AsUInt16(), 4).AsByte()) & low;
                            var v67 = (h == 0 ? r67 : Avx512BW.ShiftRightLogical(r67.AsUInt16(), 4).AsByte()) & low;
                            var lo0 = Avx512F.Shuffle4x128(v01.AsInt64(), v23.AsInt64(), 0b10_00_10_00).AsByte();
                            var hi0 = Avx512F.Shuffle4x128(v01.AsInt64(), v23.AsInt64(), 0b11_01_11_01).AsByte();
                            var lo1 = Avx512F.Shuffle4x128(v45.AsInt64(), v67.AsInt64(), 0b10_00_10_00).AsByte();
                            var hi1 = Avx512F.Shuffle4x128(v45.AsInt64(), v67.AsInt64(), 0b11_01_11_01).AsByte();
                            var pickScale = Vector512.Load(PickK4Scale16 + (64 * j));
                            var scale0 = Avx512BW.Shuffle(sm0, pickScale).AsInt16();
                            var scale1 = Avx512BW.Shuffle(sm1, pickScale).AsInt16();
                            var o = 32 * j;
                            SubBlocks(lo0, hi0, lo1, hi1, x0 + o, scale0, scale1, ref a0, ref c0);
                            SubBlocks(lo0, hi0, lo1, hi1, x1 + o, scale0, scale1, ref a1, ref c1);
                            SubBlocks(lo0, hi0, lo1, hi1, x2 + o, scale0, scale1, ref a2, ref c2);
                            SubBlocks(lo0, hi0, lo1, hi1, x3 + o, scale0, scale1, ref a3, ref c3);
                        }
                    }

                    var sx = Avx512F.BroadcastVector128ToVector512(s + (Activations.Group * sb) + (4 * quad));
                    var d = Avx512F.PermuteVar16x32(d8, spread0);
                    var dmin = Avx512F.PermuteVar16x32(dmin8, spread0);
                    var f = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Transpose4(a0, a1, a2, a3)), d * sx, acc[quad]);
                    acc[quad] = Avx512F.FusedMultiplyAddNegated(dmin * sx, Avx512F.ConvertToVector512Single(mins0), f);
                    d = Avx512F.PermuteVar16x32(d8, spread1);
                    dmin = Avx512F.PermuteVar16x32(dmin8, spread1);
                    f = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Transpose4(c0, c1, c2, c3)), d * sx, acc[2 + quad]);
                    acc[2 + quad] = Avx512F.FusedMultiplyAddNegated(dmin * sx, Avx512F.ConvertToVector512Single(mins1), f);
                }
            }

            StoreTile(tile, tokens, y, ldy, r0, Math.Min(LaneRows, end - r0), rowsPerVector: 4, vectorStride: 32, quadStride: 16);
        }
    }

    /// <summary>
    /// One sub-block of 4 rows (a 128-bit lane each; <paramref name="lo"/> values 0–15, <paramref name="hi"/> 16–31)
    /// against one token's 32 values (broadcast to every lane), times the rows' scales: per row 4 dword partial sums.
    /// Pair sums ≤ 2 · 15 · 128, two of them ≤ 7,680: exact in 16 bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> SubBlock(Vector512<byte> lo, Vector512<byte> hi, sbyte* x, Vector512<short> scale) =>
        Avx512BW.MultiplyAddAdjacent(
            Avx512BW.MultiplyAddAdjacent(lo, Avx512F.BroadcastVector128ToVector512((int*)x).AsSByte()) +
            Avx512BW.MultiplyAddAdjacent(hi, Avx512F.BroadcastVector128ToVector512((int*)(x + 16)).AsSByte()),
            scale);

    /// <summary>Both row groups' sub-block against one token (its two 16-value halves loaded once).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlocks(
        Vector512<byte> lo0, Vector512<byte> hi0, Vector512<byte> lo1, Vector512<byte> hi1, sbyte* x, Vector512<short> scale0, Vector512<short> scale1,
        ref Vector512<int> group0, ref Vector512<int> group1)
    {
        var xl = Avx512F.BroadcastVector128ToVector512((int*)x).AsSByte();
        var xh = Avx512F.BroadcastVector128ToVector512((int*)(x + 16)).AsSByte();
        group0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo0, xl) + Avx512BW.MultiplyAddAdjacent(hi0, xh), scale0);
        group1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo1, xl) + Avx512BW.MultiplyAddAdjacent(hi1, xh), scale1);
    }

    /// <summary>
    /// Four tokens' accumulators (per 128-bit lane, one row's 4 partial sums) as one vector of (row, token) sums: lane
    /// 4i + t holds row i's total for token t, the quad kernels' layout. Integer adds: any order is exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Transpose4(Vector512<int> a, Vector512<int> b, Vector512<int> c, Vector512<int> d)
    {
        var ab = Avx512F.UnpackLow(a, b) + Avx512F.UnpackHigh(a, b);   // a0+a2 b0+b2 a1+a3 b1+b3
        var cd = Avx512F.UnpackLow(c, d) + Avx512F.UnpackHigh(c, d);
        return Avx512F.UnpackLow(ab.AsInt64(), cd.AsInt64()).AsInt32() + Avx512F.UnpackHigh(ab.AsInt64(), cd.AsInt64()).AsInt32();
    }

    /// <summary>
    /// Q4_K for one token in 512-bit vectors: <see cref="RowsQ4K{TD}"/> with two rows per vector (a 256-bit half each).
    /// Hot loop, per 8-row tile and super-block: (1) the token's 8 activation vectors, each duplicated into both halves;
    /// per pair of rows, (2) their scales and mins unpacked, per 64 values one load of both rows' nibbles, two
    /// <c>vpmaddubsw</c> (a sub-block each, pair sums ≤ 2 · 15 · 128: exact) and two <c>vpmaddwd</c> by the sub-blocks'
    /// scales (picked per half by <c>pshufb</c>); (3) the mins against the 32-value sums per row; then, as the 256-bit
    /// kernel, cross-lane sums and two fused adds per row (lane).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsQ4KWide(WeightMatrix w, float* y, int ldy, int start, int end, TokenRow* tokens, int count, int* pairSums, nint* offsets, int* partial)
    {
        var superBlocks = w.Columns / 256;
        var low = Vector512.Create((byte)0x0F);
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
                    var x0 = Twice(Vector256.Load(y0));
                    var x1 = Twice(Vector256.Load(y0 + 32));
                    var x2 = Twice(Vector256.Load(y0 + 64));
                    var x3 = Twice(Vector256.Load(y0 + 96));
                    var x4 = Twice(Vector256.Load(y0 + 128));
                    var x5 = Twice(Vector256.Load(y0 + 160));
                    var x6 = Twice(Vector256.Load(y0 + 192));
                    var x7 = Twice(Vector256.Load(y0 + 224));
                    var bsums = Vector256.Load(pairSums + (((t * superBlocks) + sb) * 8));
                    var block0 = row + (144 * sb);
                    fetched = PrefetchTo(fetched, next + ((sb + 1) * step));
                    for (var i = 0; i < LaneRows; i += 2)
                    {
                        var blockA = block0 + offsets[i];
                        var blockB = block0 + offsets[i + 1];
                        var smA = VecDot.ScalesMinsK4Vector(blockA + 4);
                        var smB = VecDot.ScalesMinsK4Vector(blockB + 4);
                        var sc = Join(Avx2.BroadcastScalarToVector256(smA.AsUInt64()), Avx2.BroadcastScalarToVector256(smB.AsUInt64())).AsByte();
                        var s = Avx512BW.MultiplyAddAdjacent(Nibbles64(blockA, blockB, 0, low, x0, x1, out var hi), Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 0))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(hi, Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 1))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(Nibbles64(blockA, blockB, 1, low, x2, x3, out hi), Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 2))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(hi, Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 3))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(Nibbles64(blockA, blockB, 2, low, x4, x5, out hi), Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 4))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(hi, Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 5))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(Nibbles64(blockA, blockB, 3, low, x6, x7, out hi), Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 6))).AsInt16());
                        s += Avx512BW.MultiplyAddAdjacent(hi, Avx512BW.Shuffle(sc, Vector512.Load(PickK4Scale16 + (64 * 7))).AsInt16());
                        s.Store(partial + (8 * i));
                        Avx2.MultiplyLow(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(smA, 8)), bsums).Store(partial + 64 + (8 * i));
                        Avx2.MultiplyLow(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(smB, 8)), bsums).Store(partial + 64 + (8 * (i + 1)));
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

    /// <summary>A 256-bit vector in both halves of a 512-bit one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Twice(Vector256<sbyte> v) => Join(v, v);

    /// <summary>
    /// <paramref name="lower"/> and <paramref name="upper"/> as one vector, in registers (one <c>vinserti64x4</c>):
    /// <c>Vector512.Create(lower, upper)</c> went through a stack slot in .NET 10, reloaded whole after two narrower
    /// stores — a store-forwarding stall on every use in these loops.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Join<T>(Vector256<T> lower, Vector256<T> upper) =>
        Avx512F.InsertVector256(lower.AsInt64().ToVector512Unsafe(), upper.AsInt64(), 1).As<long, T>();

    /// <summary>
    /// Chunk <paramref name="jj"/> (64 values) of two rows' nibbles against the token: the low nibbles' pair sums (sub-block
    /// 2jj; row A in the low half, B in the high half), and in <paramref name="hi"/> the high nibbles' (sub-block 2jj+1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Nibbles64(byte* blockA, byte* blockB, int jj, Vector512<byte> low, Vector512<sbyte> xLow, Vector512<sbyte> xHigh, out Vector512<short> hi)
    {
        var raw = Join(Vector256.Load(blockA + 16 + (32 * jj)), Vector256.Load(blockB + 16 + (32 * jj)));
        hi = Avx512BW.MultiplyAddAdjacent(Avx512BW.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & low, xHigh);
        return Avx512BW.MultiplyAddAdjacent(raw & low, xLow);
    }

    // These tables (and PickK4MinPairs, shared with the 256-bit kernel) are full 64-byte vectors rather than 32-byte ones broadcast with vbroadcasti64x4: .NET 10's JIT
    // scaled that instruction's compressed displacement as if it read 16 bytes (sums + 8·p read the sums of 2·p), which
    // the exactness tests caught; plain 512-bit loads have no such case.

    /// <summary><c>pshufb</c> controls, j = 0–7: scale j zero-extended into both 16-bit halves of every dword.</summary>
    private static readonly byte* PickK4Scale16 = BuildControls(8, 64, (j, b) => b % 2 == 0 ? (byte)j : (byte)0x80);

    /// <summary><c>vpermps</c> indices spreading 8 rows' values over group g: lanes 4i–4i+3 row 4g+i.</summary>
    private static readonly int* QuadPick = BuildSpread(rowsPerVector: 4);
}
