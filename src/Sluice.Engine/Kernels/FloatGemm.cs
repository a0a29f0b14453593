using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Products of F32, F16 and BF16 weights with f32 activation rows (rounded to the weight format): register tiles of
/// 4 weight rows × 4 tokens, 16 running sums per (row, token) in one 512-bit vector (<see cref="VecDot.ReferenceFloat"/>
/// is the definition). A tile converts each 16 weights once and uses them for 4 tokens; decode (one token) runs 4 rows ×
/// 1 token. Without AVX-512 the 512-bit operations run as two 256-bit halves, with the same results.
/// </summary>
internal static unsafe partial class FloatGemm
{
    private const int Lanes = VecDot.FloatLanes;

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) of <c>y[t·ldy + r] = W[r] · x[t]</c>.</summary>
    public static void MultiplyRows(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
    {
        if (w.Type == GgmlType.F16 && w.HasNonFiniteValues)
        {
            // Infinities/NaN in f16 weights need the exact conversion: the definition, row by row.
            for (var r = start; r < end; r++)
            {
                for (var t = 0; t < x.Rows; t++)
                {
                    y[((long)t * ldy) + r] = VecDot.Reference(w, r, x, t);
                }
            }

            return;
        }

        switch (w.Type)
        {
            case GgmlType.F32:
                Rows<F32Weights>(w, x, y, ldy, start, end);
                break;
            case GgmlType.F16:
                Rows<F16Weights>(w, x, y, ldy, start, end);
                break;
            case GgmlType.BF16:
                Rows<BF16Weights>(w, x, y, ldy, start, end);
                break;
            default:
                throw new NotSupportedException(w.Type.ToString());
        }
    }

    private interface IFloatWeights
    {
        /// <summary>16 weights from element <paramref name="k"/> as f32.</summary>
        static abstract Vector512<float> Load16(byte* row, int k);

        /// <summary>One weight as f32 (tails).</summary>
        static abstract float Load1(byte* row, int k);
    }

    private readonly struct F32Weights : IFloatWeights
    {
        public static Vector512<float> Load16(byte* row, int k) => Vector512.Load((float*)row + k);

        public static float Load1(byte* row, int k) => ((float*)row)[k];
    }

    private readonly struct F16Weights : IFloatWeights
    {
        public static Vector512<float> Load16(byte* row, int k) => FloatConversions.FiniteHalfToSingle16((ushort*)row + k);

        public static float Load1(byte* row, int k) => FloatConversions.HalfBitsToSingle(((ushort*)row)[k]);
    }

    private readonly struct BF16Weights : IFloatWeights
    {
        public static Vector512<float> Load16(byte* row, int k) => FloatConversions.BFloat16ToSingle16((ushort*)row + k);

        public static float Load1(byte* row, int k) => FloatConversions.BFloat16BitsToSingle(((ushort*)row)[k]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TW>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TW : IFloatWeights
    {
        var n = x.Rows;
        var k = w.Columns;
        var tile = stackalloc float[16];
        for (var r0 = start; r0 < end; r0 += 4)
        {
            // Rows past the end repeat the last one; their results are not stored.
            var w0 = w.Row(r0);
            var w1 = w.Row(Math.Min(r0 + 1, end - 1));
            var w2 = w.Row(Math.Min(r0 + 2, end - 1));
            var w3 = w.Row(Math.Min(r0 + 3, end - 1));
            var rows = Math.Min(4, end - r0);
            var t = 0;
            for (; t + 4 <= n; t += 4)
            {
                Tile4x4<TW>(w0, w1, w2, w3, x.Values(t), x.Values(t + 1), x.Values(t + 2), x.Values(t + 3), k, tile);
                for (var j = 0; j < 4; j++)
                {
                    var yt = y + ((long)(t + j) * ldy) + r0;
                    for (var i = 0; i < rows; i++)
                    {
                        yt[i] = tile[(4 * i) + j];
                    }
                }
            }

            for (; t < n; t++)
            {
                Tile4x1<TW>(w0, w1, w2, w3, x.Values(t), k, tile);
                var yt = y + ((long)t * ldy) + r0;
                for (var i = 0; i < rows; i++)
                {
                    yt[i] = tile[i];
                }
            }
        }
    }

    /// <summary>4 rows × 4 tokens; <c>output[4·row + token]</c>.</summary>
    /// <remarks>
    /// The zero-padded tail is gathered into a stack buffer before the accumulators exist: with the gathering calls after
    /// the loop, the JIT kept all 16 accumulators in stack slots and stored and reloaded them on every iteration (the
    /// accumulators live across a call are caller-saved registers on x64 SysV). Same operations in the same order.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x4<TW>(byte* w0, byte* w1, byte* w2, byte* w3, float* x0, float* x1, float* x2, float* x3, int n, float* output)
        where TW : IFloatWeights
    {
        var full = n - (n % Lanes);
        var tails = stackalloc float[8 * Lanes];
        if (full < n)
        {
            GatherTail<TW>(w0, full, n, tails);
            GatherTail<TW>(w1, full, n, tails + Lanes);
            GatherTail<TW>(w2, full, n, tails + (2 * Lanes));
            GatherTail<TW>(w3, full, n, tails + (3 * Lanes));
            GatherTailX(x0, full, n, tails + (4 * Lanes));
            GatherTailX(x1, full, n, tails + (5 * Lanes));
            GatherTailX(x2, full, n, tails + (6 * Lanes));
            GatherTailX(x3, full, n, tails + (7 * Lanes));
        }

        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        for (var k = 0; k < full; k += Lanes)
        {
            var a0 = TW.Load16(w0, k);
            var a1 = TW.Load16(w1, k);
            var a2 = TW.Load16(w2, k);
            var a3 = TW.Load16(w3, k);
            var b = Vector512.Load(x0 + k);
            c00 = Fma(a0, b, c00);
            c10 = Fma(a1, b, c10);
            c20 = Fma(a2, b, c20);
            c30 = Fma(a3, b, c30);
            b = Vector512.Load(x1 + k);
            c01 = Fma(a0, b, c01);
            c11 = Fma(a1, b, c11);
            c21 = Fma(a2, b, c21);
            c31 = Fma(a3, b, c31);
            b = Vector512.Load(x2 + k);
            c02 = Fma(a0, b, c02);
            c12 = Fma(a1, b, c12);
            c22 = Fma(a2, b, c22);
            c32 = Fma(a3, b, c32);
            b = Vector512.Load(x3 + k);
            c03 = Fma(a0, b, c03);
            c13 = Fma(a1, b, c13);
            c23 = Fma(a2, b, c23);
            c33 = Fma(a3, b, c33);
        }

        if (full < n)
        {
            var a0 = Vector512.Load(tails);
            var a1 = Vector512.Load(tails + Lanes);
            var a2 = Vector512.Load(tails + (2 * Lanes));
            var a3 = Vector512.Load(tails + (3 * Lanes));
            var b = Vector512.Load(tails + (4 * Lanes));
            c00 = Fma(a0, b, c00);
            c10 = Fma(a1, b, c10);
            c20 = Fma(a2, b, c20);
            c30 = Fma(a3, b, c30);
            b = Vector512.Load(tails + (5 * Lanes));
            c01 = Fma(a0, b, c01);
            c11 = Fma(a1, b, c11);
            c21 = Fma(a2, b, c21);
            c31 = Fma(a3, b, c31);
            b = Vector512.Load(tails + (6 * Lanes));
            c02 = Fma(a0, b, c02);
            c12 = Fma(a1, b, c12);
            c22 = Fma(a2, b, c22);
            c32 = Fma(a3, b, c32);
            b = Vector512.Load(tails + (7 * Lanes));
            c03 = Fma(a0, b, c03);
            c13 = Fma(a1, b, c13);
            c23 = Fma(a2, b, c23);
            c33 = Fma(a3, b, c33);
        }

        output[0] = VecDot.Fold(c00);
        output[1] = VecDot.Fold(c01);
        output[2] = VecDot.Fold(c02);
        output[3] = VecDot.Fold(c03);
        output[4] = VecDot.Fold(c10);
        output[5] = VecDot.Fold(c11);
        output[6] = VecDot.Fold(c12);
        output[7] = VecDot.Fold(c13);
        output[8] = VecDot.Fold(c20);
        output[9] = VecDot.Fold(c21);
        output[10] = VecDot.Fold(c22);
        output[11] = VecDot.Fold(c23);
        output[12] = VecDot.Fold(c30);
        output[13] = VecDot.Fold(c31);
        output[14] = VecDot.Fold(c32);
        output[15] = VecDot.Fold(c33);
    }

    /// <summary>4 rows × 1 token (decode); <c>output[row]</c>. The tail is gathered first, as in <see cref="Tile4x4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x1<TW>(byte* w0, byte* w1, byte* w2, byte* w3, float* x0, int n, float* output)
        where TW : IFloatWeights
    {
        var full = n - (n % Lanes);
        var tails = stackalloc float[5 * Lanes];
        if (full < n)
        {
            GatherTail<TW>(w0, full, n, tails);
            GatherTail<TW>(w1, full, n, tails + Lanes);
            GatherTail<TW>(w2, full, n, tails + (2 * Lanes));
            GatherTail<TW>(w3, full, n, tails + (3 * Lanes));
            GatherTailX(x0, full, n, tails + (4 * Lanes));
        }

        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        for (var k = 0; k < full; k += Lanes)
        {
            var b = Vector512.Load(x0 + k);
            c0 = Fma(TW.Load16(w0, k), b, c0);
            c1 = Fma(TW.Load16(w1, k), b, c1);
            c2 = Fma(TW.Load16(w2, k), b, c2);
            c3 = Fma(TW.Load16(w3, k), b, c3);
        }

        if (full < n)
        {
            var b = Vector512.Load(tails + (4 * Lanes));
            c0 = Fma(Vector512.Load(tails), b, c0);
            c1 = Fma(Vector512.Load(tails + Lanes), b, c1);
            c2 = Fma(Vector512.Load(tails + (2 * Lanes)), b, c2);
            c3 = Fma(Vector512.Load(tails + (3 * Lanes)), b, c3);
        }

        output[0] = VecDot.Fold(c0);
        output[1] = VecDot.Fold(c1);
        output[2] = VecDot.Fold(c2);
        output[3] = VecDot.Fold(c3);
    }

    /// <summary>Weights [k, n) as f32 into <paramref name="buffer"/>, zero-padded to <see cref="Lanes"/>.</summary>
    private static void GatherTail<TW>(byte* row, int k, int n, float* buffer)
        where TW : IFloatWeights
    {
        for (var j = 0; j < Lanes; j++)
        {
            buffer[j] = k + j < n ? TW.Load1(row, k + j) : 0f;
        }
    }

    /// <summary>Activations [k, n) into <paramref name="buffer"/>, zero-padded to <see cref="Lanes"/>.</summary>
    private static void GatherTailX(float* x, int k, int n, float* buffer)
    {
        for (var j = 0; j < Lanes; j++)
        {
            buffer[j] = k + j < n ? x[k + j] : 0f;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) =>
        Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a, b, c) : Vector512.FusedMultiplyAdd(a, b, c);
}
