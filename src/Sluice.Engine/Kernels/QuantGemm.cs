using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Products of quantized weights (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K) with 8-bit activations, token-lane style: the 8 lanes
/// of a 256-bit integer vector are 8 tokens (<see cref="Activations"/> interleaves them), so one <c>vpdpbusd</c> with
/// 4 weight bytes broadcast to every lane does 4 multiply-adds for each of 8 tokens, and the per-block float work
/// (convert, scale, fused add) is shared by the 8 tokens too. Each lane's sum over a block is the exact integer dot
/// product and lane arithmetic is per token, so a token's result is the same whatever else is in its group, tile or
/// thread — and equals the scalar definition in <see cref="VecDot"/> bit for bit.
/// <para>
/// A tile of 4 weight rows is first unpacked into plain bytes (u = w + offset, unsigned for <c>vpdpbusd</c>; the offset
/// comes back off through the activation block sums) and its scales into floats, once for all tokens; then the tile
/// runs over the token groups. Without AVX-VNNI the same runs on AVX2 <c>vpmaddubsw</c>/<c>vpmaddwd</c> (exact: no pair
/// sum saturates; Q8_0 then keeps signed weights), and without AVX2 every product falls back to the definition.
/// </para>
/// </summary>
internal static unsafe partial class QuantGemm
{
    private const int RowTile = 4;

    private static readonly bool UseVnni = AvxVnni.IsSupported;

    [ThreadStatic]
    private static byte[]? _packBytes;

    [ThreadStatic]
    private static float[]? _packFloats;

    [ThreadStatic]
    private static int[]? _packInts;

    /// <summary>True when the vector kernels run (AVX2 and FMA); otherwise products use the scalar definition.</summary>
    public static bool IsAccelerated { get; } = Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) of <c>y[t·ldy + r] = W[r] · x[t]</c>.</summary>
    public static void MultiplyRows(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
    {
        if (!IsAccelerated)
        {
            for (var t = 0; t < x.Rows; t++)
            {
                for (var r = start; r < end; r++)
                {
                    y[((long)t * ldy) + r] = VecDot.Reference(w, r, x, t);
                }
            }

            return;
        }

        switch (w.Type)
        {
            case GgmlType.Q8_0 when UseVnni:
                Blocks32<Q8_0Unsigned, VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q8_0:
                Blocks32<Q8_0Signed, SignedMaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_0 when UseVnni:
                Blocks32<Q4_0Values, VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_0:
                Blocks32<Q4_0Values, MaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q5_0 when UseVnni:
                Blocks32<Q5_0Values, VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q5_0:
                Blocks32<Q5_0Values, MaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K when UseVnni:
                Q4K<VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q4_K:
                Q4K<MaddDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K when UseVnni:
                Q6K<VnniDot>(w, x, y, ldy, start, end);
                break;
            case GgmlType.Q6_K:
                Q6K<MaddDot>(w, x, y, ldy, start, end);
                break;
            default:
                throw new NotSupportedException(w.Type.ToString());
        }
    }

    // ----- integer dot strategies: acc + Σ of 4 byte products per 32-bit lane, exact -----

    private interface IDot
    {
        static abstract Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> x);
    }

    private readonly struct VnniDot : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> x) => AvxVnni.MultiplyWideningAndAdd(acc, u, x);
    }

    /// <summary>AVX2 for u ≤ 127 (pair sums stay within 16 bits).</summary>
    private readonly struct MaddDot : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> x) =>
            acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, x), Vector256.Create((short)1));
    }

    /// <summary>AVX2 for signed weights (Q8_0): |w| × (x with w's sign); pairs stay within 16 bits.</summary>
    private readonly struct SignedMaddDot : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> x)
        {
            var w = u.AsSByte();
            return acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(x, w)), Vector256.Create((short)1));
        }
    }

    private interface IGroups
    {
        static abstract bool Two { get; }
    }

    private readonly struct OneGroup : IGroups
    {
        public static bool Two => false;
    }

    private readonly struct TwoGroups : IGroups
    {
        public static bool Two => true;
    }

    // ----- blocks of 32 with one f16 scale: Q8_0, Q4_0, Q5_0 -----

    private interface IBlock32
    {
        static abstract int BlockBytes { get; }

        /// <summary>u = w + Offset per value; the activation sums take Offset·Σx back off.</summary>
        static abstract int Offset { get; }

        /// <summary>Writes the block's 32 values (+ Offset) as bytes in order and returns its scale.</summary>
        static abstract float Unpack(byte* block, byte* destination);

        /// <summary>The block's 32 values (+ Offset) as bytes in order, in a register.</summary>
        static abstract Vector256<byte> Values(byte* block);
    }

    private readonly struct Q8_0Unsigned : IBlock32
    {
        public static int BlockBytes => 34;

        public static int Offset => 128;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Unpack(byte* block, byte* destination)
        {
            Values(block).Store(destination);
            return VecDot.HalfAt(block);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Values(byte* block) => Vector256.Load(block + 2) ^ Vector256.Create((byte)0x80);
    }

    private readonly struct Q8_0Signed : IBlock32
    {
        public static int BlockBytes => 34;

        public static int Offset => 0;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Unpack(byte* block, byte* destination)
        {
            Values(block).Store(destination);
            return VecDot.HalfAt(block);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Values(byte* block) => Vector256.Load(block + 2);
    }

    private readonly struct Q4_0Values : IBlock32
    {
        public static int BlockBytes => 18;

        public static int Offset => 8;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Unpack(byte* block, byte* destination)
        {
            Values(block).Store(destination);
            return VecDot.HalfAt(block);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Values(byte* block) => Nibbles(block + 2);
    }

    private readonly struct Q5_0Values : IBlock32
    {
        public static int BlockBytes => 22;

        public static int Offset => 16;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Unpack(byte* block, byte* destination)
        {
            Values(block).Store(destination);
            return VecDot.HalfAt(block);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Values(byte* block)
        {
            // Byte i gets bit i of qh: broadcast qh, move byte i/8 to position i, keep bit i%8, widen to 0x10.
            var qh = Vector256.Create(*(uint*)(block + 2)).AsByte();
            var spread = Avx2.Shuffle(qh, Vector256.Create(
                (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
            var bit = Vector256.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128,
                1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
            var high = Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10);
            return Nibbles(block + 6) | high;
        }
    }

    /// <summary>32 nibbles (16 bytes: low nibbles are values 0–15, high nibbles 16–31) as bytes 0..15.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Nibbles(byte* qs)
    {
        var raw = Vector128.Load(qs);
        return Vector256.Create(raw, Sse2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Blocks32<TB, TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TB : IBlock32
        where TD : IDot
    {
        var k = w.Columns;
        var blocks = k / 32;
        var u = PackBytes(RowTile * k);
        var d = PackFloats(RowTile * blocks);
        var tile = stackalloc float[RowTile * 16];
        var groups = x.Groups;
        for (var r0 = start; r0 < end; r0 += RowTile)
        {
            var rows = Math.Min(RowTile, end - r0);
            for (var i = 0; i < RowTile; i++)
            {
                var ui = u + (i * k);
                var di = d + (i * blocks);
                if (i < rows)
                {
                    var row = w.Row(r0 + i);
                    for (var b = 0; b < blocks; b++)
                    {
                        di[b] = TB.Unpack(row + (b * TB.BlockBytes), ui + (32 * b));
                    }
                }
                else
                {
                    new Span<byte>(ui, k).Clear();
                    new Span<float>(di, blocks).Clear();
                }
            }

            for (var g = 0; g < groups; g += 2)
            {
                if (g + 1 < groups)
                {
                    Tile32<TD, TwoGroups>(u, d, k, blocks, x, g, TB.Offset, tile);
                }
                else
                {
                    Tile32<TD, OneGroup>(u, d, k, blocks, x, g, TB.Offset, tile);
                }

                Store(tile, x, g, Math.Min(2, groups - g), y, ldy, r0, rows);
            }
        }
    }

    /// <summary>4 unpacked rows × 1 or 2 token groups; <c>output[16·row + 8·group + lane]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile32<TD, TG>(byte* u, float* d, int k, int blocks, Activations x, int g, int offset, float* output)
        where TD : IDot
        where TG : IGroups
    {
        var q0 = x.GroupQuants(g);
        var q1 = TG.Two ? x.GroupQuants(g + 1) : q0;
        var s0 = x.GroupScales(g);
        var s1 = TG.Two ? x.GroupScales(g + 1) : s0;
        var m0 = x.GroupSums(g);
        var m1 = TG.Two ? x.GroupSums(g + 1) : m0;
        var negOffset = Vector256.Create(-offset);
        byte* u0 = u, u1 = u + k, u2 = u + (2 * k), u3 = u + (3 * k);
        float* d0 = d, d1 = d + blocks, d2 = d + (2 * blocks), d3 = d + (3 * blocks);
        Vector256<float> f00 = default, f10 = default, f20 = default, f30 = default;
        Vector256<float> f01 = default, f11 = default, f21 = default, f31 = default;
        for (var b = 0; b < blocks; b++)
        {
            var c0 = Avx2.MultiplyLow(Vector256.Load(m0 + (8 * b)), negOffset);
            Vector256<int> i00 = c0, i10 = c0, i20 = c0, i30 = c0;
            Vector256<int> i01 = default, i11 = default, i21 = default, i31 = default;
            if (TG.Two)
            {
                var c1 = Avx2.MultiplyLow(Vector256.Load(m1 + (8 * b)), negOffset);
                i01 = c1;
                i11 = c1;
                i21 = c1;
                i31 = c1;
            }

            var xb0 = q0 + (256 * b);
            var xb1 = q1 + (256 * b);
            var o = 32 * b;
            for (var j = 0; j < 32; j += 4)
            {
                var w0 = Vector256.Create(*(int*)(u0 + o + j)).AsByte();
                var w1 = Vector256.Create(*(int*)(u1 + o + j)).AsByte();
                var w2 = Vector256.Create(*(int*)(u2 + o + j)).AsByte();
                var w3 = Vector256.Create(*(int*)(u3 + o + j)).AsByte();
                var xv = Vector256.Load(xb0 + (8 * j));
                i00 = TD.Dot(i00, w0, xv);
                i10 = TD.Dot(i10, w1, xv);
                i20 = TD.Dot(i20, w2, xv);
                i30 = TD.Dot(i30, w3, xv);
                if (TG.Two)
                {
                    xv = Vector256.Load(xb1 + (8 * j));
                    i01 = TD.Dot(i01, w0, xv);
                    i11 = TD.Dot(i11, w1, xv);
                    i21 = TD.Dot(i21, w2, xv);
                    i31 = TD.Dot(i31, w3, xv);
                }
            }

            var sx = Vector256.Load(s0 + (8 * b));
            f00 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i00), Vector256.Create(d0[b]) * sx, f00);
            f10 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i10), Vector256.Create(d1[b]) * sx, f10);
            f20 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i20), Vector256.Create(d2[b]) * sx, f20);
            f30 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i30), Vector256.Create(d3[b]) * sx, f30);
            if (TG.Two)
            {
                sx = Vector256.Load(s1 + (8 * b));
                f01 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i01), Vector256.Create(d0[b]) * sx, f01);
                f11 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i11), Vector256.Create(d1[b]) * sx, f11);
                f21 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i21), Vector256.Create(d2[b]) * sx, f21);
                f31 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i31), Vector256.Create(d3[b]) * sx, f31);
            }
        }

        f00.Store(output);
        f10.Store(output + 16);
        f20.Store(output + 32);
        f30.Store(output + 48);
        if (TG.Two)
        {
            f01.Store(output + 8);
            f11.Store(output + 24);
            f21.Store(output + 40);
            f31.Store(output + 56);
        }
    }

    // ----- Q4_K: super-blocks of 256, 8 sub-blocks of 32 with 6-bit scales and mins -----

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4K<TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TD : IDot
    {
        var k = w.Columns;
        var superBlocks = k / 256;
        var u = PackBytes(RowTile * k);
        var f = PackFloats(RowTile * superBlocks * 2);
        var sm = PackInts(RowTile * superBlocks * 16);
        var tile = stackalloc float[RowTile * 16];
        var groups = x.Groups;
        for (var r0 = start; r0 < end; r0 += RowTile)
        {
            var rows = Math.Min(RowTile, end - r0);
            for (var i = 0; i < RowTile; i++)
            {
                var ui = u + (i * k);
                var fi = f + (i * superBlocks * 2);
                var si = sm + (i * superBlocks * 16);
                if (i >= rows)
                {
                    new Span<byte>(ui, k).Clear();
                    new Span<float>(fi, superBlocks * 2).Clear();
                    new Span<int>(si, superBlocks * 16).Clear();
                    continue;
                }

                var row = w.Row(r0 + i);
                for (var sb = 0; sb < superBlocks; sb++)
                {
                    var block = row + (144 * sb);
                    fi[2 * sb] = VecDot.HalfAt(block);
                    fi[(2 * sb) + 1] = VecDot.HalfAt(block + 2);
                    var (scales, mins) = VecDot.ScalesMinsK4(block + 4);
                    for (var j = 0; j < 8; j++)
                    {
                        si[(16 * sb) + j] = (byte)(scales >> (8 * j));
                        si[(16 * sb) + 8 + j] = (byte)(mins >> (8 * j));
                    }

                    var qs = block + 16;
                    var dst = ui + (256 * sb);
                    for (var jj = 0; jj < 4; jj++)
                    {
                        var raw = Vector256.Load(qs + (32 * jj));
                        (raw & Vector256.Create((byte)0x0F)).Store(dst + (64 * jj));
                        (Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & Vector256.Create((byte)0x0F)).Store(dst + (64 * jj) + 32);
                    }
                }
            }

            for (var g = 0; g < groups; g++)
            {
                TileQ4K<TD>(u, f, sm, k, superBlocks, x, g, tile);
                Store(tile, x, g, 1, y, ldy, r0, rows);
            }
        }
    }

    /// <summary>4 unpacked Q4_K rows × 1 token group; <c>output[16·row + lane]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileQ4K<TD>(byte* u, float* f, int* sm, int k, int superBlocks, Activations x, int g, float* output)
        where TD : IDot
    {
        var q = x.GroupQuants(g);
        var scales = x.GroupScales(g);
        var sums = x.GroupSums(g);
        byte* u0 = u, u1 = u + k, u2 = u + (2 * k), u3 = u + (3 * k);
        var fs = 2 * superBlocks;
        var ss = 16 * superBlocks;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (var sb = 0; sb < superBlocks; sb++)
        {
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            Vector256<int> n0 = default, n1 = default, n2 = default, n3 = default;
            var p = sm + (16 * sb);
            for (var j = 0; j < 8; j++)
            {
                Vector256<int> t0 = default, t1 = default, t2 = default, t3 = default;
                var o = (256 * sb) + (32 * j);
                var xb = q + (8 * o);
                for (var l = 0; l < 32; l += 4)
                {
                    var xv = Vector256.Load(xb + (8 * l));
                    t0 = TD.Dot(t0, Vector256.Create(*(int*)(u0 + o + l)).AsByte(), xv);
                    t1 = TD.Dot(t1, Vector256.Create(*(int*)(u1 + o + l)).AsByte(), xv);
                    t2 = TD.Dot(t2, Vector256.Create(*(int*)(u2 + o + l)).AsByte(), xv);
                    t3 = TD.Dot(t3, Vector256.Create(*(int*)(u3 + o + l)).AsByte(), xv);
                }

                i0 += Avx2.MultiplyLow(t0, Vector256.Create(p[j]));
                i1 += Avx2.MultiplyLow(t1, Vector256.Create(p[ss + j]));
                i2 += Avx2.MultiplyLow(t2, Vector256.Create(p[(2 * ss) + j]));
                i3 += Avx2.MultiplyLow(t3, Vector256.Create(p[(3 * ss) + j]));

                // Σx over the sub-block (two 16-value sums), times each row's min.
                var s = Vector256.Load(sums + (8 * ((16 * sb) + (2 * j)))) + Vector256.Load(sums + (8 * ((16 * sb) + (2 * j) + 1)));
                n0 += Avx2.MultiplyLow(s, Vector256.Create(p[8 + j]));
                n1 += Avx2.MultiplyLow(s, Vector256.Create(p[ss + 8 + j]));
                n2 += Avx2.MultiplyLow(s, Vector256.Create(p[(2 * ss) + 8 + j]));
                n3 += Avx2.MultiplyLow(s, Vector256.Create(p[(3 * ss) + 8 + j]));
            }

            var sx = Vector256.Load(scales + (8 * sb));
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), Vector256.Create(f[2 * sb]) * sx, f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), Vector256.Create(f[fs + (2 * sb)]) * sx, f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), Vector256.Create(f[(2 * fs) + (2 * sb)]) * sx, f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), Vector256.Create(f[(3 * fs) + (2 * sb)]) * sx, f3);
            f0 = Fma.MultiplyAddNegated(Vector256.Create(f[(2 * sb) + 1]) * sx, Avx.ConvertToVector256Single(n0), f0);
            f1 = Fma.MultiplyAddNegated(Vector256.Create(f[fs + (2 * sb) + 1]) * sx, Avx.ConvertToVector256Single(n1), f1);
            f2 = Fma.MultiplyAddNegated(Vector256.Create(f[(2 * fs) + (2 * sb) + 1]) * sx, Avx.ConvertToVector256Single(n2), f2);
            f3 = Fma.MultiplyAddNegated(Vector256.Create(f[(3 * fs) + (2 * sb) + 1]) * sx, Avx.ConvertToVector256Single(n3), f3);
        }

        f0.Store(output);
        f1.Store(output + 16);
        f2.Store(output + 32);
        f3.Store(output + 48);
    }

    // ----- Q6_K: super-blocks of 256, 16 sub-blocks of 16 with int8 scales, values q − 32 -----

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6K<TD>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TD : IDot
    {
        var k = w.Columns;
        var superBlocks = k / 256;
        var u = PackBytes(RowTile * k);
        var f = PackFloats(RowTile * superBlocks);
        var sc = PackInts(RowTile * superBlocks * 16);
        var tile = stackalloc float[RowTile * 16];
        var groups = x.Groups;
        var low = Vector256.Create((byte)0x0F);
        var three = Vector256.Create((byte)3);
        for (var r0 = start; r0 < end; r0 += RowTile)
        {
            var rows = Math.Min(RowTile, end - r0);
            for (var i = 0; i < RowTile; i++)
            {
                var ui = u + (i * k);
                var fi = f + (i * superBlocks);
                var si = sc + (i * superBlocks * 16);
                if (i >= rows)
                {
                    new Span<byte>(ui, k).Clear();
                    new Span<float>(fi, superBlocks).Clear();
                    new Span<int>(si, superBlocks * 16).Clear();
                    continue;
                }

                var row = w.Row(r0 + i);
                for (var sb = 0; sb < superBlocks; sb++)
                {
                    var block = row + (210 * sb);
                    fi[sb] = VecDot.HalfAt(block + 208);
                    for (var j = 0; j < 16; j++)
                    {
                        si[(16 * sb) + j] = ((sbyte*)(block + 192))[j];
                    }

                    var dst = ui + (256 * sb);
                    for (var half = 0; half < 2; half++)
                    {
                        var ql0 = Vector256.Load(block + (64 * half));
                        var ql1 = Vector256.Load(block + (64 * half) + 32);
                        var qh = Vector256.Load(block + 128 + (32 * half));
                        var d = dst + (128 * half);
                        ((ql0 & low) | ShiftLeft4(qh & three)).Store(d);
                        ((ql1 & low) | ShiftLeft4(ShiftRight(qh, 2) & three)).Store(d + 32);
                        ((ShiftRight(ql0, 4) & low) | ShiftLeft4(ShiftRight(qh, 4) & three)).Store(d + 64);
                        ((ShiftRight(ql1, 4) & low) | ShiftLeft4(ShiftRight(qh, 6) & three)).Store(d + 96);
                    }
                }
            }

            for (var g = 0; g < groups; g++)
            {
                TileQ6K<TD>(u, f, sc, k, superBlocks, x, g, tile);
                Store(tile, x, g, 1, y, ldy, r0, rows);
            }
        }
    }

    /// <summary>4 unpacked Q6_K rows × 1 token group; <c>output[16·row + lane]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileQ6K<TD>(byte* u, float* f, int* sc, int k, int superBlocks, Activations x, int g, float* output)
        where TD : IDot
    {
        var q = x.GroupQuants(g);
        var scales = x.GroupScales(g);
        var sums = x.GroupSums(g);
        byte* u0 = u, u1 = u + k, u2 = u + (2 * k), u3 = u + (3 * k);
        var ss = 16 * superBlocks;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (var sb = 0; sb < superBlocks; sb++)
        {
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            var p = sc + (16 * sb);
            for (var j = 0; j < 16; j++)
            {
                // Start from −32·Σx: the unsigned values q carry +32.
                var c = Vector256<int>.Zero - (Vector256.Load(sums + (8 * ((16 * sb) + j))) << 5);
                Vector256<int> t0 = c, t1 = c, t2 = c, t3 = c;
                var o = (256 * sb) + (16 * j);
                var xb = q + ((256 * sb) + (32 * (j / 2))) * 8 + (j % 2 == 0 ? 0 : 128);
                for (var l = 0; l < 16; l += 4)
                {
                    var xv = Vector256.Load(xb + (8 * l));
                    t0 = TD.Dot(t0, Vector256.Create(*(int*)(u0 + o + l)).AsByte(), xv);
                    t1 = TD.Dot(t1, Vector256.Create(*(int*)(u1 + o + l)).AsByte(), xv);
                    t2 = TD.Dot(t2, Vector256.Create(*(int*)(u2 + o + l)).AsByte(), xv);
                    t3 = TD.Dot(t3, Vector256.Create(*(int*)(u3 + o + l)).AsByte(), xv);
                }

                i0 += Avx2.MultiplyLow(t0, Vector256.Create(p[j]));
                i1 += Avx2.MultiplyLow(t1, Vector256.Create(p[ss + j]));
                i2 += Avx2.MultiplyLow(t2, Vector256.Create(p[(2 * ss) + j]));
                i3 += Avx2.MultiplyLow(t3, Vector256.Create(p[(3 * ss) + j]));
            }

            var sx = Vector256.Load(scales + (8 * sb));
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), Vector256.Create(f[sb]) * sx, f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), Vector256.Create(f[superBlocks + sb]) * sx, f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), Vector256.Create(f[(2 * superBlocks) + sb]) * sx, f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), Vector256.Create(f[(3 * superBlocks) + sb]) * sx, f3);
        }

        f0.Store(output);
        f1.Store(output + 16);
        f2.Store(output + 32);
        f3.Store(output + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ShiftRight(Vector256<byte> v, [System.Diagnostics.CodeAnalysis.ConstantExpected] byte bits) =>
        Avx2.ShiftRightLogical(v.AsUInt16(), bits).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ShiftLeft4(Vector256<byte> v) => Avx2.ShiftLeftLogical(v.AsUInt16(), 4).AsByte();

    /// <summary>Writes a tile's lanes (<c>tile[16·row + 8·group + lane]</c>, <paramref name="groups"/> groups from g) for the real tokens and rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* tile, Activations x, int g, int groups, float* y, int ldy, int r0, int rows)
    {
        var tokens = Math.Min(Activations.Group * groups, x.Rows - (g * Activations.Group));
        for (var lane = 0; lane < tokens; lane++)
        {
            var yt = y + ((long)((g * Activations.Group) + lane) * ldy) + r0;
            for (var i = 0; i < rows; i++)
            {
                yt[i] = tile[(16 * i) + lane];
            }
        }
    }

    private static byte* PackBytes(int length) => Pinned(ref _packBytes, length);

    private static float* PackFloats(int length) => Pinned(ref _packFloats, length);

    private static int* PackInts(int length) => Pinned(ref _packInts, length);

    private static T* Pinned<T>(ref T[]? buffer, int length)
        where T : unmanaged
    {
        if (buffer is null || buffer.Length < length)
        {
            buffer = GC.AllocateUninitializedArray<T>(Math.Max(length, 4096), pinned: true);
        }

        return (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
    }
}
