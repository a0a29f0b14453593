using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Matrix-vector products of float weights for decode (at most <see cref="MaxFewRows"/> tokens). The float
/// definition already keeps one 16-lane vector of running sums per (row, token), so no lane transposition is needed: a
/// tile of 4 weight rows is streamed once, each 16 weights converted once in registers and fused into the sums of every
/// token, and each (row, token) sees exactly the definition's operations in its order (16 lanes, the zero-padded tail,
/// the fixed fold), so results equal <see cref="VecDot"/> and the prompt GEMM bit for bit. What makes it faster than the
/// GEMM's one-token tile: the next tile is prefetched (4 rows of 896 f16 are 4 streams of 1.8 KiB, too short for the
/// hardware prefetcher — the same finding as <see cref="QuantGemm.MultiplyFewRows"/>), 2–4 tokens share one pass over
/// the weights, and f16 weights skip the conversion's final multiply (see <see cref="F16ScaledWeights"/>). The
/// activations are copied once per call into rows zero-padded to 16 values, so only the weights need a gathered tail.
/// </summary>
internal static unsafe partial class FloatGemm
{
    /// <summary>
    /// Most tokens the matrix-vector path takes: 2–4 tokens share its pass over the weights (4 rows × 4 tokens are 16
    /// accumulators, within AVX-512's 32 registers); larger batches go to the GEMM's tiles.
    /// </summary>
    public const int MaxFewRows = 4;

    /// <summary>Rows per tile of the matrix-vector path (as in the GEMM: <see cref="MatMul"/> splits float products on 4 rows).</summary>
    public const int FewRowsTile = 4;

    /// <summary>Per-thread activation copy: tokens × columns padded to <see cref="Lanes"/>, zeros after each row.</summary>
    [ThreadStatic]
    private static float[]? _fewRowsX;

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) of <c>y[t·ldy + r] = W[r] · x[t]</c> for batches of at
    /// most <see cref="MaxFewRows"/> tokens; larger batches and f16 weights with infinities or NaN go to
    /// <see cref="MultiplyRows"/>.
    /// </summary>
    public static void MultiplyFewRows(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
    {
        if (x.Rows == 0 || start >= end)
        {
            return;
        }

        if (x.Rows > MaxFewRows || (w.Type == GgmlType.F16 && w.HasNonFiniteValues))
        {
            MultiplyRows(w, x, y, ldy, start, end);
            return;
        }

        switch (w.Type)
        {
            case GgmlType.F32:
                FewRows<F32Weights>(w, x, y, ldy, start, end);
                break;
            case GgmlType.F16:
                FewRows<F16ScaledWeights>(w, x, y, ldy, start, end);
                break;
            case GgmlType.BF16:
                FewRows<BF16Weights>(w, x, y, ldy, start, end);
                break;
            default:
                throw new NotSupportedException(w.Type.ToString());
        }
    }

    /// <summary>
    /// f16 weights as value·2^-112 (<see cref="FloatConversions.FiniteHalfToScaledSingle16"/>: the exponent rebias
    /// multiply dropped), paired with activations multiplied by 2^112. Both scalings are exact (powers of two; an
    /// f16-rounded activation is at most 65504, so ·2^112 stays below the f32 maximum; a scaled weight below 2^-126 is a
    /// subnormal, which fused multiply-adds take exactly), so every fused multiply-add sees the same exact product
    /// w·x and rounds to the same result as the definition's: one vector operation fewer per 16 weights.
    /// </summary>
    private readonly struct F16ScaledWeights : IFloatWeights
    {
        public static Vector512<float> Load16(byte* row, int k) => FloatConversions.FiniteHalfToScaledSingle16((ushort*)row + k);

        public static float Load1(byte* row, int k) => FloatConversions.HalfBitsToSingle(((ushort*)row)[k]) * (1f / FloatConversions.HalfRescale);
    }

    /// <summary>The factor activations are multiplied by for weights <typeparamref name="TW"/> (exact; see <see cref="F16ScaledWeights"/>).</summary>
    private static float ActivationScale<TW>()
        where TW : IFloatWeights => typeof(TW) == typeof(F16ScaledWeights) ? FloatConversions.HalfRescale : 1f;

    private static void FewRows<TW>(WeightMatrix w, Activations x, float* y, int ldy, int start, int end)
        where TW : IFloatWeights
    {
        var n = w.Columns;
        var scale = ActivationScale<TW>();
        var count = x.Rows;
        float* xs;
        int stride;
        if (scale == 1f && n % Lanes == 0)
        {
            // Rows already padded (no tail) and unscaled: read them in place.
            xs = x.Values(0);
            stride = x.Length;
        }
        else
        {
            stride = (n + Lanes - 1) / Lanes * Lanes;
            var buffer = _fewRowsX;
            if (buffer is null || buffer.Length < count * stride)
            {
                buffer = _fewRowsX = GC.AllocateUninitializedArray<float>(Math.Max(count * stride, 1024), pinned: true);
            }

            xs = (float*)Unsafe.AsPointer(ref buffer[0]);
            for (var t = 0; t < count; t++)
            {
                ScaleRow(x.Values(t), xs + ((long)t * stride), n, stride, scale);
            }
        }

        switch (count)
        {
            case 1:
                Tiles<TW, One>(w, xs, stride, y, ldy, start, end);
                break;
            case 2:
                Tiles<TW, Two>(w, xs, stride, y, ldy, start, end);
                break;
            case 3:
                Tiles<TW, Three>(w, xs, stride, y, ldy, start, end);
                break;
            default:
                Tiles<TW, Four>(w, xs, stride, y, ldy, start, end);
                break;
        }
    }

    /// <summary><paramref name="n"/> values times <paramref name="scale"/> (exact: a power of two), then zeros up to <paramref name="padded"/>.</summary>
    private static void ScaleRow(float* source, float* destination, int n, int padded, float scale)
    {
        var i = 0;
        var factor = Vector256.Create(scale);
        for (; i + 8 <= n; i += 8)
        {
            (Vector256.Load(source + i) * factor).Store(destination + i);
        }

        for (; i < n; i++)
        {
            destination[i] = source[i] * scale;
        }

        for (; i < padded; i++)
        {
            destination[i] = 0f;
        }
    }

    /// <summary>How many tokens a tile loop serves (a type argument, so unused accumulators compile away).</summary>
    private interface ITokenCount
    {
        static abstract int Count { get; }
    }

    private readonly struct One : ITokenCount
    {
        public static int Count => 1;
    }

    private readonly struct Two : ITokenCount
    {
        public static int Count => 2;
    }

    private readonly struct Three : ITokenCount
    {
        public static int Count => 3;
    }

    private readonly struct Four : ITokenCount
    {
        public static int Count => 4;
    }

    /// <summary>
    /// Hot loop: per 16 columns, 4 row loads converted to f32, then per token one activation load and 4 fused adds. The
    /// weight tail (fewer than 16 values per row) is gathered zero-padded before the accumulators exist (see
    /// <see cref="Tile4x4{TW}"/> on why), the activation tail is already zero in the padded rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles<TW, TN>(WeightMatrix w, float* xs, int stride, float* y, int ldy, int start, int end)
        where TW : IFloatWeights
        where TN : ITokenCount
    {
        var n = w.Columns;
        var full = n - (n % Lanes);
        var rowBytes = (nint)w.RowBytes;
        var elementBytes = (int)(rowBytes / n);
        var tails = stackalloc byte[FewRowsTile * Lanes * sizeof(float)];
        var x0 = xs;
        var x1 = xs + stride;
        var x2 = xs + (2 * stride);
        var x3 = xs + (3 * stride);
        var steps = Math.Max(1, full / Lanes);
        for (var r0 = start; r0 < end; r0 += FewRowsTile)
        {
            // Rows past the end repeat the last one; their results are not stored.
            var w0 = w.Row(r0);
            var w1 = w.Row(Math.Min(r0 + 1, end - 1));
            var w2 = w.Row(Math.Min(r0 + 2, end - 1));
            var w3 = w.Row(Math.Min(r0 + 3, end - 1));
            var rows = Math.Min(FewRowsTile, end - r0);

            // The next tile (contiguous), fetched ahead line by line over this tile's loop.
            var nextRows = Math.Max(0, Math.Min(FewRowsTile, end - (r0 + FewRowsTile)));
            var next = w0 + (FewRowsTile * rowBytes);
            var step = ((nextRows * rowBytes) + steps - 1) / steps;
            var fetched = next;

            if (full < n)
            {
                GatherTailBits(w0, full, n, elementBytes, tails);
                GatherTailBits(w1, full, n, elementBytes, tails + (Lanes * elementBytes));
                GatherTailBits(w2, full, n, elementBytes, tails + (2 * Lanes * elementBytes));
                GatherTailBits(w3, full, n, elementBytes, tails + (3 * Lanes * elementBytes));
            }

            Vector512<float> c00 = default, c10 = default, c20 = default, c30 = default;
            Vector512<float> c01 = default, c11 = default, c21 = default, c31 = default;
            Vector512<float> c02 = default, c12 = default, c22 = default, c32 = default;
            Vector512<float> c03 = default, c13 = default, c23 = default, c33 = default;
            var ahead = next;
            for (var k = 0; k < full; k += Lanes)
            {
                ahead += step;
                for (; fetched < ahead; fetched += 64)
                {
                    Sse.Prefetch0(fetched);
                }

                var a0 = TW.Load16(w0, k);
                var a1 = TW.Load16(w1, k);
                var a2 = TW.Load16(w2, k);
                var a3 = TW.Load16(w3, k);
                var b = Vector512.Load(x0 + k);
                c00 = Fma(a0, b, c00);
                c10 = Fma(a1, b, c10);
                c20 = Fma(a2, b, c20);
                c30 = Fma(a3, b, c30);
                if (TN.Count >= 2)
                {
                    b = Vector512.Load(x1 + k);
                    c01 = Fma(a0, b, c01);
                    c11 = Fma(a1, b, c11);
                    c21 = Fma(a2, b, c21);
                    c31 = Fma(a3, b, c31);
                }

                if (TN.Count >= 3)
                {
                    b = Vector512.Load(x2 + k);
                    c02 = Fma(a0, b, c02);
                    c12 = Fma(a1, b, c12);
                    c22 = Fma(a2, b, c22);
                    c32 = Fma(a3, b, c32);
                }

                if (TN.Count >= 4)
                {
                    b = Vector512.Load(x3 + k);
                    c03 = Fma(a0, b, c03);
                    c13 = Fma(a1, b, c13);
                    c23 = Fma(a2, b, c23);
                    c33 = Fma(a3, b, c33);
                }
            }

            if (full < n)
            {
                var a0 = TW.Load16(tails, 0);
                var a1 = TW.Load16(tails + (Lanes * elementBytes), 0);
                var a2 = TW.Load16(tails + (2 * Lanes * elementBytes), 0);
                var a3 = TW.Load16(tails + (3 * Lanes * elementBytes), 0);
                var b = Vector512.Load(x0 + full);
                c00 = Fma(a0, b, c00);
                c10 = Fma(a1, b, c10);
                c20 = Fma(a2, b, c20);
                c30 = Fma(a3, b, c30);
                if (TN.Count >= 2)
                {
                    b = Vector512.Load(x1 + full);
                    c01 = Fma(a0, b, c01);
                    c11 = Fma(a1, b, c11);
                    c21 = Fma(a2, b, c21);
                    c31 = Fma(a3, b, c31);
                }

                if (TN.Count >= 3)
                {
                    b = Vector512.Load(x2 + full);
                    c02 = Fma(a0, b, c02);
                    c12 = Fma(a1, b, c12);
                    c22 = Fma(a2, b, c22);
                    c32 = Fma(a3, b, c32);
                }

                if (TN.Count >= 4)
                {
                    b = Vector512.Load(x3 + full);
                    c03 = Fma(a0, b, c03);
                    c13 = Fma(a1, b, c13);
                    c23 = Fma(a2, b, c23);
                    c33 = Fma(a3, b, c33);
                }
            }

            Store(y + r0, rows, c00, c10, c20, c30);
            if (TN.Count >= 2)
            {
                Store(y + ldy + r0, rows, c01, c11, c21, c31);
            }

            if (TN.Count >= 3)
            {
                Store(y + (2L * ldy) + r0, rows, c02, c12, c22, c32);
            }

            if (TN.Count >= 4)
            {
                Store(y + (3L * ldy) + r0, rows, c03, c13, c23, c33);
            }
        }
    }

    /// <summary>The folded sums of the tile's real rows for one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* yt, int rows, Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3)
    {
        yt[0] = VecDot.Fold(c0);
        if (rows > 1)
        {
            yt[1] = VecDot.Fold(c1);
        }

        if (rows > 2)
        {
            yt[2] = VecDot.Fold(c2);
        }

        if (rows > 3)
        {
            yt[3] = VecDot.Fold(c3);
        }
    }

    /// <summary>The raw weights [k, n) of a row into <paramref name="buffer"/>, zero bits up to <see cref="Lanes"/> values (zero in every float format).</summary>
    private static void GatherTailBits(byte* row, int k, int n, int elementBytes, byte* buffer)
    {
        var used = (n - k) * elementBytes;
        new ReadOnlySpan<byte>(row + (k * elementBytes), used).CopyTo(new Span<byte>(buffer, used));
        new Span<byte>(buffer + used, (Lanes * elementBytes) - used).Clear();
    }
}
