using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>
/// One weight row against four activation rows at once: each weight block is loaded and decoded once and used four
/// times, which is what makes batched prompt processing faster than one product per token. Every kernel performs,
/// per token, exactly the float operations of its single-row counterpart in <see cref="VecDot"/>, so batched and
/// one-at-a-time results are bit-identical (a tested property).
/// </summary>
internal static unsafe class VecDotTile
{
    public const int Width = 4;

    private static readonly bool UseAvx2 = Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Writes <c>W[row] · x[t0 + j]</c> to <c>output[j]</c> for j &lt; 4.</summary>
    public static void Dot4(WeightMatrix w, int row, Activations x, int t0, float* output)
    {
        var p = w.Row(row);
        var n = w.Columns;
        switch (w.Type)
        {
            case Gguf.GgmlType.F32 when Vector256.IsHardwareAccelerated && n >= 16:
                Float4<F32Loader>(p, x.Values(t0), x.Values(t0 + 1), x.Values(t0 + 2), x.Values(t0 + 3), n, output);
                return;
            case Gguf.GgmlType.F16 when Vector256.IsHardwareAccelerated && n >= 16:
                Float4<F16Loader>(p, x.Values(t0), x.Values(t0 + 1), x.Values(t0 + 2), x.Values(t0 + 3), n, output);
                return;
            case Gguf.GgmlType.BF16 when Vector256.IsHardwareAccelerated && n >= 16:
                Float4<BF16Loader>(p, x.Values(t0), x.Values(t0 + 1), x.Values(t0 + 2), x.Values(t0 + 3), n, output);
                return;
            case Gguf.GgmlType.Q8_0 when UseAvx2:
                Q8_0x4(p, x, t0, n, output);
                return;
            case Gguf.GgmlType.Q4_0 when UseAvx2:
                Q4_0x4(p, x, t0, n, output);
                return;
            case Gguf.GgmlType.Q4_K when UseAvx2:
                Q4_Kx4(p, x, t0, n, output);
                return;
            case Gguf.GgmlType.Q6_K when UseAvx2:
                Q6_Kx4(p, x, t0, n, output);
                return;
            default:
                for (var j = 0; j < Width; j++)
                {
                    output[j] = w.Dot(row, x, t0 + j);
                }

                return;
        }
    }

    private interface IWeightLoader
    {
        static abstract Vector256<float> Load8(byte* w, int i);

        static abstract float Load1(byte* w, int i);
    }

    private readonly struct F32Loader : IWeightLoader
    {
        public static Vector256<float> Load8(byte* w, int i) => Vector256.Load((float*)w + i);

        public static float Load1(byte* w, int i) => ((float*)w)[i];
    }

    private readonly struct F16Loader : IWeightLoader
    {
        public static Vector256<float> Load8(byte* w, int i) => FloatConversions.HalfToSingle8((ushort*)w + i);

        public static float Load1(byte* w, int i) => FloatConversions.HalfBitsToSingle(((ushort*)w)[i]);
    }

    private readonly struct BF16Loader : IWeightLoader
    {
        public static Vector256<float> Load8(byte* w, int i) => FloatConversions.BFloat16ToSingle8((ushort*)w + i);

        public static float Load1(byte* w, int i) => FloatConversions.BFloat16BitsToSingle(((ushort*)w)[i]);
    }

    /// <summary>The F32/F16/BF16 kernels of <see cref="VecDot"/> (two 8-lane accumulators) for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Float4<TLoader>(byte* w, float* x0, float* x1, float* x2, float* x3, int n, float* output)
        where TLoader : IWeightLoader
    {
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var w0 = TLoader.Load8(w, i);
            var w1 = TLoader.Load8(w, i + 8);
            a00 = FusedMultiplyAdd(w0, Vector256.Load(x0 + i), a00);
            a01 = FusedMultiplyAdd(w1, Vector256.Load(x0 + i + 8), a01);
            a10 = FusedMultiplyAdd(w0, Vector256.Load(x1 + i), a10);
            a11 = FusedMultiplyAdd(w1, Vector256.Load(x1 + i + 8), a11);
            a20 = FusedMultiplyAdd(w0, Vector256.Load(x2 + i), a20);
            a21 = FusedMultiplyAdd(w1, Vector256.Load(x2 + i + 8), a21);
            a30 = FusedMultiplyAdd(w0, Vector256.Load(x3 + i), a30);
            a31 = FusedMultiplyAdd(w1, Vector256.Load(x3 + i + 8), a31);
        }

        for (; i + 8 <= n; i += 8)
        {
            var w0 = TLoader.Load8(w, i);
            a00 = FusedMultiplyAdd(w0, Vector256.Load(x0 + i), a00);
            a10 = FusedMultiplyAdd(w0, Vector256.Load(x1 + i), a10);
            a20 = FusedMultiplyAdd(w0, Vector256.Load(x2 + i), a20);
            a30 = FusedMultiplyAdd(w0, Vector256.Load(x3 + i), a30);
        }

        var s0 = Vector256.Sum(a00 + a01);
        var s1 = Vector256.Sum(a10 + a11);
        var s2 = Vector256.Sum(a20 + a21);
        var s3 = Vector256.Sum(a30 + a31);
        for (; i < n; i++)
        {
            var wi = TLoader.Load1(w, i);
            s0 += wi * x0[i];
            s1 += wi * x1[i];
            s2 += wi * x2[i];
            s3 += wi * x3[i];
        }

        output[0] = s0;
        output[1] = s1;
        output[2] = s2;
        output[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q8_0x4(byte* w, Activations x, int t0, int n, float* output) => Int8x4<Q8_0Blocks>(w, x, t0, n, output);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_0x4(byte* w, Activations x, int t0, int n, float* output) => Int8x4<Q4_0Blocks>(w, x, t0, n, output);

    private interface IInt8Blocks
    {
        static abstract int BlockBytes { get; }

        static abstract Vector256<sbyte> Values(byte* block);
    }

    private readonly struct Q8_0Blocks : IInt8Blocks
    {
        public static int BlockBytes => 34;

        public static Vector256<sbyte> Values(byte* block) => Vector256.Load((sbyte*)(block + 2));
    }

    private readonly struct Q4_0Blocks : IInt8Blocks
    {
        public static int BlockBytes => 18;

        public static Vector256<sbyte> Values(byte* block) => VecDot.Nibbles(block + 2);
    }

    /// <summary>Q8_0/Q4_0 weights against four Q8_0 rows: per token, even and odd blocks in two accumulators, as in <see cref="VecDot.Q8_0"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Int8x4<TBlocks>(byte* w, Activations x, int t0, int n, float* output)
        where TBlocks : IInt8Blocks
    {
        sbyte* q0 = x.Quants(t0), q1 = x.Quants(t0 + 1), q2 = x.Quants(t0 + 2), q3 = x.Quants(t0 + 3);
        float* d0 = x.Scales(t0), d1 = x.Scales(t0 + 1), d2 = x.Scales(t0 + 2), d3 = x.Scales(t0 + 3);
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
        var blocks = n / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var block = w + (TBlocks.BlockBytes * b);
            var q = TBlocks.Values(block);
            var absQ = Avx2.Sign(q, q).AsByte();
            var dw = VecDot.HalfAt(block);
            var o = 32 * b;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q0 + o))), Vector256.Create(dw * d0[b]), e0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q1 + o))), Vector256.Create(dw * d1[b]), e1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q2 + o))), Vector256.Create(dw * d2[b]), e2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q3 + o))), Vector256.Create(dw * d3[b]), e3);

            block += TBlocks.BlockBytes;
            q = TBlocks.Values(block);
            absQ = Avx2.Sign(q, q).AsByte();
            dw = VecDot.HalfAt(block);
            o += 32;
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q0 + o))), Vector256.Create(dw * d0[b + 1]), o0);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q1 + o))), Vector256.Create(dw * d1[b + 1]), o1);
            o2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q2 + o))), Vector256.Create(dw * d2[b + 1]), o2);
            o3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q3 + o))), Vector256.Create(dw * d3[b + 1]), o3);
        }

        if (b < blocks)
        {
            var block = w + (TBlocks.BlockBytes * b);
            var q = TBlocks.Values(block);
            var absQ = Avx2.Sign(q, q).AsByte();
            var dw = VecDot.HalfAt(block);
            var o = 32 * b;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q0 + o))), Vector256.Create(dw * d0[b]), e0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q1 + o))), Vector256.Create(dw * d1[b]), e1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q2 + o))), Vector256.Create(dw * d2[b]), e2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(VecDot.DotUnsigned(absQ, q, Vector256.Load(q3 + o))), Vector256.Create(dw * d3[b]), e3);
        }

        output[0] = Vector256.Sum(e0 + o0);
        output[1] = Vector256.Sum(e1 + o1);
        output[2] = Vector256.Sum(e2 + o2);
        output[3] = Vector256.Sum(e3 + o3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4_Kx4(byte* w, Activations x, int t0, int n, float* output)
    {
        var low = Vector256.Create((byte)0x0F);
        sbyte* y0 = x.Quants(t0), y1 = x.Quants(t0 + 1), y2 = x.Quants(t0 + 2), y3 = x.Quants(t0 + 3);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (144 * b);
            var (scales, mins) = VecDot.ScalesMinsK4(block + 4);
            var qs = block + 16;
            var o = 256 * b;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (var j = 0; j < 4; j++)
            {
                var raw = Vector256.Load(qs + (32 * j));
                var lo = raw & low;
                var hi = Avx2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte() & low;
                var sl = Vector256.Create((short)(byte)(scales >> (16 * j)));
                var sh = Vector256.Create((short)(byte)(scales >> ((16 * j) + 8)));
                var k = o + (64 * j);
                a0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y0 + k)), sl);
                a0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y0 + k + 32)), sh);
                a1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y1 + k)), sl);
                a1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y1 + k + 32)), sh);
                a2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y2 + k)), sl);
                a2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y2 + k + 32)), sh);
                a3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y3 + k)), sl);
                a3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y3 + k + 32)), sh);
            }

            var d = VecDot.HalfAt(block);
            var dmin = VecDot.HalfAt(block + 2);
            s0 += KTerm(d, dmin, x.Scales(t0)[b], Vector256.Sum(a0), VecDot.MinsDot(mins, x.Sums(t0) + (16 * b)));
            s1 += KTerm(d, dmin, x.Scales(t0 + 1)[b], Vector256.Sum(a1), VecDot.MinsDot(mins, x.Sums(t0 + 1) + (16 * b)));
            s2 += KTerm(d, dmin, x.Scales(t0 + 2)[b], Vector256.Sum(a2), VecDot.MinsDot(mins, x.Sums(t0 + 2) + (16 * b)));
            s3 += KTerm(d, dmin, x.Scales(t0 + 3)[b], Vector256.Sum(a3), VecDot.MinsDot(mins, x.Sums(t0 + 3) + (16 * b)));
        }

        output[0] = s0;
        output[1] = s1;
        output[2] = s2;
        output[3] = s3;
    }

    /// <summary>The per-super-block float step of <see cref="VecDot.Q4_K"/>, in the same order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float KTerm(float d, float dmin, float xd, int sumScaled, int sumMins) => (d * xd * sumScaled) - (dmin * xd * sumMins);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6_Kx4(byte* w, Activations x, int t0, int n, float* output)
    {
        var low = Vector256.Create((byte)0x0F);
        var three = Vector256.Create((byte)3);
        sbyte* y0 = x.Quants(t0), y1 = x.Quants(t0 + 1), y2 = x.Quants(t0 + 2), y3 = x.Quants(t0 + 3);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (210 * b);
            var sc = (sbyte*)(block + 192);
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (var half = 0; half < 2; half++)
            {
                var ql0 = Vector256.Load(block + (64 * half));
                var ql1 = Vector256.Load(block + (64 * half) + 32);
                var qh = Vector256.Load(block + 128 + (32 * half)).AsUInt16();
                var q1 = (ql0 & low) | Avx2.ShiftLeftLogical((qh.AsByte() & three).AsUInt16(), 4).AsByte();
                var q2 = (ql1 & low) | Avx2.ShiftLeftLogical((Avx2.ShiftRightLogical(qh, 2).AsByte() & three).AsUInt16(), 4).AsByte();
                var q3 = (Avx2.ShiftRightLogical(ql0.AsUInt16(), 4).AsByte() & low) | Avx2.ShiftLeftLogical((Avx2.ShiftRightLogical(qh, 4).AsByte() & three).AsUInt16(), 4).AsByte();
                var q4 = (Avx2.ShiftRightLogical(ql1.AsUInt16(), 4).AsByte() & low) | Avx2.ShiftLeftLogical((Avx2.ShiftRightLogical(qh, 6).AsByte() & three).AsUInt16(), 4).AsByte();
                var s = sc + (8 * half);
                var sc01 = VecDot.ScalePair(s[0], s[1]);
                var sc23 = VecDot.ScalePair(s[2], s[3]);
                var sc45 = VecDot.ScalePair(s[4], s[5]);
                var sc67 = VecDot.ScalePair(s[6], s[7]);
                var k = (256 * b) + (128 * half);
                a0 = Q6Group(a0, q1, q2, q3, q4, y0 + k, sc01, sc23, sc45, sc67);
                a1 = Q6Group(a1, q1, q2, q3, q4, y1 + k, sc01, sc23, sc45, sc67);
                a2 = Q6Group(a2, q1, q2, q3, q4, y2 + k, sc01, sc23, sc45, sc67);
                a3 = Q6Group(a3, q1, q2, q3, q4, y3 + k, sc01, sc23, sc45, sc67);
            }

            var d = VecDot.HalfAt(block + 208);
            s0 += d * x.Scales(t0)[b] * (Vector256.Sum(a0) - (32 * VecDot.ScalesDotSums(sc, x.Sums(t0) + (16 * b))));
            s1 += d * x.Scales(t0 + 1)[b] * (Vector256.Sum(a1) - (32 * VecDot.ScalesDotSums(sc, x.Sums(t0 + 1) + (16 * b))));
            s2 += d * x.Scales(t0 + 2)[b] * (Vector256.Sum(a2) - (32 * VecDot.ScalesDotSums(sc, x.Sums(t0 + 2) + (16 * b))));
            s3 += d * x.Scales(t0 + 3)[b] * (Vector256.Sum(a3) - (32 * VecDot.ScalesDotSums(sc, x.Sums(t0 + 3) + (16 * b))));
        }

        output[0] = s0;
        output[1] = s1;
        output[2] = s2;
        output[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Group(Vector256<int> a, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4, sbyte* ys,
        Vector256<short> sc01, Vector256<short> sc23, Vector256<short> sc45, Vector256<short> sc67)
    {
        a += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.Load(ys)), sc01);
        a += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.Load(ys + 32)), sc23);
        a += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.Load(ys + 64)), sc45);
        a += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4, Vector256.Load(ys + 96)), sc67);
        return a;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> FusedMultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        System.Runtime.Intrinsics.X86.Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : (a * b) + c;
}
