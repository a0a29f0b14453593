using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>
/// The Q4_K quad product in 512-bit vectors: 16 lanes are 4 weight rows × 4 tokens, so every shuffle, broadcast and
/// multiply serves twice the rows of the 256-bit kernel. .NET has no 512-bit <c>vpdpbusd</c>, so the 4-value dots are
/// <c>vpmaddubsw</c> pairs summed in 16 bits over a sub-block (≤ 8 · 2 · 15 · 128 = 30,720: exact) and scaled by
/// <c>vpmaddwd</c> against the sub-block's scale, as ggml's AVX2 kernel does per row. Integer sums are exact and the float
/// step per (row, token) lane is the definition's, so results equal <see cref="VecDot"/> and the 256-bit kernel bit for bit.
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
    /// Hot loop, per 8-row tile and super-block: (1) the 8 rows' d and dmin gathered once; per group of 4 rows, (2) their
    /// scales and mins into one vector (a 128-bit lane per row), the mins against the quads' pair sums by 4 <c>vpmaddwd</c>;
    /// (3) per 64 values the 4 rows' nibbles expanded into two vectors <c>[A | B | C | D]</c> (values 0–15, 16–31 of a
    /// sub-block), per 4-value step one <c>pshufd</c> and one <c>vpmaddubsw</c> per quad against its 16 bytes (broadcast),
    /// and per sub-block one <c>vpmaddwd</c> by the scale; (4) two fused adds per group and quad.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuadsQ4KWide<TQ>(
        WeightMatrix w, sbyte* q, float* s, int* pairSums, nint* offsets, int superBlocks, int tokens, float* y, int ldy, int start, int end)
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
                var sx0 = Avx512F.BroadcastVector128ToVector512(s + (Activations.Group * sb));
                var sx1 = Avx512F.BroadcastVector128ToVector512(s + (Activations.Group * sb) + 4);
                var xq = q + (2048 * sb);
                var sums = pairSums + (sb * 2 * 4 * 16);
                for (var g = 0; g < 2; g++)
                {
                    var bA = block0 + offsets[4 * g];
                    var bB = block0 + offsets[(4 * g) + 1];
                    var bC = block0 + offsets[(4 * g) + 2];
                    var bD = block0 + offsets[(4 * g) + 3];
                    var sm = Join(
                        Vector256.Create(VecDot.ScalesMinsK4Vector(bA + 4), VecDot.ScalesMinsK4Vector(bB + 4)),
                        Vector256.Create(VecDot.ScalesMinsK4Vector(bC + 4), VecDot.ScalesMinsK4Vector(bD + 4)));
                    Vector512<int> sum0 = default, mins0 = default, sum1 = default, mins1 = default;
                    for (var p = 0; p < 4; p++)
                    {
                        var minPair = Avx512BW.Shuffle(sm, Vector512.Load(PickK4MinPairs + (64 * p))).AsInt16();
                        mins0 += Avx512BW.MultiplyAddAdjacent(minPair, Vector512.Load(sums + (16 * p)).AsInt16());
                        if (TQ.Two)
                        {
                            mins1 += Avx512BW.MultiplyAddAdjacent(minPair, Vector512.Load(sums + 64 + (16 * p)).AsInt16());
                        }
                    }

                    for (var jj = 0; jj < 4; jj++)
                    {
                        var r01 = Join(Vector256.Load(bA + 16 + (32 * jj)), Vector256.Load(bB + 16 + (32 * jj)));
                        var r23 = Join(Vector256.Load(bC + 16 + (32 * jj)), Vector256.Load(bD + 16 + (32 * jj)));
                        for (var h = 0; h < 2; h++)
                        {
                            // Low nibbles are sub-block 2jj, high nibbles 2jj+1; 128-bit lanes 0, 2 of each pair of rows
                            // hold values 0–15, lanes 1, 3 values 16–31.
                            var j = (2 * jj) + h;
                            var v01 = (h == 0 ? r01 : Avx512BW.ShiftRightLogical(r01.AsUInt16(), 4).AsByte()) & low;
                            var v23 = (h == 0 ? r23 : Avx512BW.ShiftRightLogical(r23.AsUInt16(), 4).AsByte()) & low;
                            var lo = Avx512F.Shuffle4x128(v01.AsInt64(), v23.AsInt64(), 0b10_00_10_00).AsInt32();
                            var hi = Avx512F.Shuffle4x128(v01.AsInt64(), v23.AsInt64(), 0b11_01_11_01).AsInt32();
                            var scale = Avx512BW.Shuffle(sm, Vector512.Load(PickK4Scale16 + (64 * j))).AsInt16();
                            var xs = xq + (256 * j);
                            sum0 += Avx512BW.MultiplyAddAdjacent(Steps16(lo, xs) + Steps16(hi, xs + 128), scale);
                            if (TQ.Two)
                            {
                                sum1 += Avx512BW.MultiplyAddAdjacent(Steps16(lo, xs + 16) + Steps16(hi, xs + 144), scale);
                            }
                        }
                    }

                    var spread = Vector512.Load(QuadPick + (16 * g));
                    var d = Avx512F.PermuteVar16x32(d8, spread);
                    var dmin = Avx512F.PermuteVar16x32(dmin8, spread);
                    var f = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sum0), d * sx0, acc[2 * g]);
                    acc[2 * g] = Avx512F.FusedMultiplyAddNegated(dmin * sx0, Avx512F.ConvertToVector512Single(mins0), f);
                    if (TQ.Two)
                    {
                        f = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sum1), d * sx1, acc[(2 * g) + 1]);
                        acc[(2 * g) + 1] = Avx512F.FusedMultiplyAddNegated(dmin * sx1, Avx512F.ConvertToVector512Single(mins1), f);
                    }
                }
            }

            StoreTile(tile, tokens, y, ldy, r0, Math.Min(LaneRows, end - r0), rowsPerVector: 4, vectorStride: 32, quadStride: 16);
        }
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

    /// <summary>
    /// The 16-bit pair sums of 16 values of 4 rows (one 128-bit lane each) against a quad's 4 tokens: per 4-value step
    /// the step's 4 bytes of each row spread over its lane, times the quad's 16 bytes of that step (32 apart).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Steps16(Vector512<int> rows, sbyte* x) =>
        Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(rows, 0x00).AsByte(), Avx512F.BroadcastVector128ToVector512((int*)x).AsSByte()) +
        Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(rows, 0x55).AsByte(), Avx512F.BroadcastVector128ToVector512((int*)(x + 32)).AsSByte()) +
        Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(rows, 0xAA).AsByte(), Avx512F.BroadcastVector128ToVector512((int*)(x + 64)).AsSByte()) +
        Avx512BW.MultiplyAddAdjacent(Avx512F.Shuffle(rows, 0xFF).AsByte(), Avx512F.BroadcastVector128ToVector512((int*)(x + 96)).AsSByte());

    // These tables (and PickK4MinPairs, shared with the 256-bit kernel) are full 64-byte vectors rather than 32-byte ones broadcast with vbroadcasti64x4: .NET 10's JIT
    // scaled that instruction's compressed displacement as if it read 16 bytes (sums + 8·p read the sums of 2·p), which
    // the exactness tests caught; plain 512-bit loads have no such case.

    /// <summary><c>pshufb</c> controls, j = 0–7: scale j zero-extended into both 16-bit halves of every dword.</summary>
    private static readonly byte* PickK4Scale16 = BuildControls(8, 64, (j, b) => b % 2 == 0 ? (byte)j : (byte)0x80);

    /// <summary><c>vpermps</c> indices spreading 8 rows' values over group g: lanes 4i–4i+3 row 4g+i.</summary>
    private static readonly int* QuadPick = BuildSpread(rowsPerVector: 4);
}
