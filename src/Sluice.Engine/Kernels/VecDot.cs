using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Dot products of one weight row (in its ggml block layout, read in place from the mapping) with one activation
/// row prepared by <see cref="Activations"/> in the matching format: F32 with f32, F16 with f16-rounded f32,
/// BF16 with bf16-rounded f32, Q8_0/Q4_0 with Q8_0 blocks, Q4_K/Q6_K with Q8_K blocks — the pairs llama.cpp's CPU
/// backend uses. The <c>Reference*</c> methods are plain scalar code following ggml's generic kernels and are the
/// tested definition; the others use AVX2 when present and fall back to the reference otherwise.
/// </summary>
internal static unsafe class VecDot
{
    private static readonly bool UseAvx2 = Avx2.IsSupported && Fma.IsSupported;
    private static readonly bool UseVnni = AvxVnni.IsSupported;

    // ----- scalar reference -----

    public static float ReferenceF32(float* w, float* x, int n)
    {
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            sum += w[i] * x[i];
        }

        return sum;
    }

    /// <summary>F16 weights with activations already rounded to f16 (products of two halves are exact in f32).</summary>
    public static float ReferenceF16(ushort* w, float* x, int n)
    {
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            sum += FloatConversions.HalfBitsToSingle(w[i]) * x[i];
        }

        return sum;
    }

    /// <summary>BF16 weights with activations already rounded to bf16.</summary>
    public static float ReferenceBF16(ushort* w, float* x, int n)
    {
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            sum += FloatConversions.BFloat16BitsToSingle(w[i]) * x[i];
        }

        return sum;
    }

    public static float ReferenceQ8_0(byte* w, sbyte* xq, float* xd, int n)
    {
        var sum = 0f;
        for (var b = 0; b < n / 32; b++)
        {
            var block = w + (34 * b);
            var q = (sbyte*)(block + 2);
            var y = xq + (32 * b);
            var sumi = 0;
            for (var j = 0; j < 32; j++)
            {
                sumi += q[j] * y[j];
            }

            sum += sumi * (HalfAt(block) * xd[b]);
        }

        return sum;
    }

    public static float ReferenceQ4_0(byte* w, sbyte* xq, float* xd, int n)
    {
        var sum = 0f;
        for (var b = 0; b < n / 32; b++)
        {
            var block = w + (18 * b);
            var y = xq + (32 * b);
            var sumi = 0;
            for (var j = 0; j < 16; j++)
            {
                sumi += (((block[2 + j] & 0x0F) - 8) * y[j]) + (((block[2 + j] >> 4) - 8) * y[j + 16]);
            }

            sum += sumi * (HalfAt(block) * xd[b]);
        }

        return sum;
    }

    /// <summary>Q4_K weights with Q8_K activations: per super-block d·Σ scale·(q4·q8) − dmin·Σ min·bsum, integers exact.</summary>
    public static float ReferenceQ4_K(byte* w, sbyte* xq, float* xd, short* xsums, int n)
    {
        var sum = 0f;
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (144 * b);
            var scales = new ReadOnlySpan<byte>(block + 4, 12);
            var qs = block + 16;
            var y = xq + (256 * b);
            var bsums = xsums + (16 * b);
            int sumScaled = 0, sumMins = 0;
            for (var j = 0; j < 8; j++)
            {
                var (scale, min) = GgmlQuantization.ScaleMinK4(j, scales);
                var q = qs + (32 * (j / 2));
                var shift = (j & 1) * 4;
                var sumi = 0;
                for (var l = 0; l < 32; l++)
                {
                    sumi += ((q[l] >> shift) & 0xF) * y[(32 * j) + l];
                }

                sumScaled += scale * sumi;
                sumMins += min * (bsums[2 * j] + bsums[(2 * j) + 1]);
            }

            sum += (HalfAt(block) * xd[b] * sumScaled) - (HalfAt(block + 2) * xd[b] * sumMins);
        }

        return sum;
    }

    /// <summary>Q6_K weights with Q8_K activations: per super-block d·Σ scale·((q6 − 32)·q8), integers exact.</summary>
    public static float ReferenceQ6_K(byte* w, sbyte* xq, float* xd, int n)
    {
        var sum = 0f;
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (210 * b);
            var y = xq + (256 * b);
            var sc = (sbyte*)(block + 192);
            var total = 0;
            for (var half = 0; half < 2; half++)
            {
                var ql = block + (64 * half);
                var qh = block + 128 + (32 * half);
                for (var g = 0; g < 4; g++)
                {
                    var low = ql + (32 * (g & 1));
                    var lowShift = (g >> 1) * 4;
                    for (var sub = 0; sub < 2; sub++)
                    {
                        var sumi = 0;
                        for (var l = 16 * sub; l < (16 * sub) + 16; l++)
                        {
                            var q = ((low[l] >> lowShift) & 0xF) | (((qh[l] >> (2 * g)) & 3) << 4);
                            sumi += (q - 32) * y[(128 * half) + (32 * g) + l];
                        }

                        total += sc[(8 * half) + (2 * g) + sub] * sumi;
                    }
                }
            }

            sum += HalfAt(block + 208) * xd[b] * total;
        }

        return sum;
    }

    // ----- fast paths -----

    public static float F32(float* w, float* x, int n)
    {
        if (!Vector256.IsHardwareAccelerated || n < 32)
        {
            return ReferenceF32(w, x, n);
        }

        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var i = 0;
        for (; i + 32 <= n; i += 32)
        {
            a0 = Fma256(Vector256.Load(w + i), Vector256.Load(x + i), a0);
            a1 = Fma256(Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), a1);
            a2 = Fma256(Vector256.Load(w + i + 16), Vector256.Load(x + i + 16), a2);
            a3 = Fma256(Vector256.Load(w + i + 24), Vector256.Load(x + i + 24), a3);
        }

        for (; i + 8 <= n; i += 8)
        {
            a0 = Fma256(Vector256.Load(w + i), Vector256.Load(x + i), a0);
        }

        var sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        for (; i < n; i++)
        {
            sum += w[i] * x[i];
        }

        return sum;
    }

    public static float F16(ushort* w, float* x, int n)
    {
        if (!Vector256.IsHardwareAccelerated || n < 16)
        {
            return ReferenceF16(w, x, n);
        }

        Vector256<float> a0 = default, a1 = default;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            a0 = Fma256(FloatConversions.HalfToSingle8(w + i), Vector256.Load(x + i), a0);
            a1 = Fma256(FloatConversions.HalfToSingle8(w + i + 8), Vector256.Load(x + i + 8), a1);
        }

        for (; i + 8 <= n; i += 8)
        {
            a0 = Fma256(FloatConversions.HalfToSingle8(w + i), Vector256.Load(x + i), a0);
        }

        var sum = Vector256.Sum(a0 + a1);
        for (; i < n; i++)
        {
            sum += FloatConversions.HalfBitsToSingle(w[i]) * x[i];
        }

        return sum;
    }

    public static float BF16(ushort* w, float* x, int n)
    {
        if (!Vector256.IsHardwareAccelerated || n < 16)
        {
            return ReferenceBF16(w, x, n);
        }

        Vector256<float> a0 = default, a1 = default;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            a0 = Fma256(FloatConversions.BFloat16ToSingle8(w + i), Vector256.Load(x + i), a0);
            a1 = Fma256(FloatConversions.BFloat16ToSingle8(w + i + 8), Vector256.Load(x + i + 8), a1);
        }

        for (; i + 8 <= n; i += 8)
        {
            a0 = Fma256(FloatConversions.BFloat16ToSingle8(w + i), Vector256.Load(x + i), a0);
        }

        var sum = Vector256.Sum(a0 + a1);
        for (; i < n; i++)
        {
            sum += FloatConversions.BFloat16BitsToSingle(w[i]) * x[i];
        }

        return sum;
    }

    public static float Q8_0(byte* w, sbyte* xq, float* xd, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ8_0(w, xq, xd, n);
        }

        var acc = Vector256<float>.Zero;
        for (var b = 0; b < n / 32; b++)
        {
            var block = w + (34 * b);
            var q = Vector256.Load((sbyte*)(block + 2));
            var y = Vector256.Load(xq + (32 * b));
            var dot = DotInt8(q, y);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(dot), Vector256.Create(HalfAt(block) * xd[b]), acc);
        }

        return Vector256.Sum(acc);
    }

    public static float Q4_0(byte* w, sbyte* xq, float* xd, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ4_0(w, xq, xd, n);
        }

        var acc = Vector256<float>.Zero;
        var low = Vector128.Create((byte)0x0F);
        var eight = Vector256.Create((sbyte)8);
        for (var b = 0; b < n / 32; b++)
        {
            var block = w + (18 * b);
            var raw = Vector128.Load(block + 2);
            var q = Vector256.Create(raw & low, Vector128.ShiftRightLogical(raw, 4) & low).AsSByte() - eight;
            var y = Vector256.Load(xq + (32 * b));
            var dot = DotInt8(q, y);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(dot), Vector256.Create(HalfAt(block) * xd[b]), acc);
        }

        return Vector256.Sum(acc);
    }

    public static float Q4_K(byte* w, sbyte* xq, float* xd, short* xsums, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ4_K(w, xq, xd, xsums, n);
        }

        var sum = 0f;
        var low = Vector256.Create((byte)0x0F);
        var scales = stackalloc int[8];
        var mins = stackalloc int[8];
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (144 * b);
            DecodeScalesK4(block + 4, scales, mins);
            var qs = block + 16;
            var y = xq + (256 * b);
            var bsums = xsums + (16 * b);
            var sumMins = 0;
            for (var j = 0; j < 8; j++)
            {
                sumMins += mins[j] * (bsums[2 * j] + bsums[(2 * j) + 1]);
            }

            var acc = Vector256<int>.Zero;
            for (var j = 0; j < 4; j++)
            {
                var raw = Vector256.Load(qs + (32 * j));
                var lo = raw & low;
                var hi = Vector256.ShiftRightLogical(raw, 4) & low;
                var p0 = Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y + (64 * j)));
                var p1 = Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y + (64 * j) + 32));
                acc += Avx2.MultiplyAddAdjacent(p0, Vector256.Create((short)scales[2 * j]));
                acc += Avx2.MultiplyAddAdjacent(p1, Vector256.Create((short)scales[(2 * j) + 1]));
            }

            var sumScaled = Vector256.Sum(acc);
            sum += (HalfAt(block) * xd[b] * sumScaled) - (HalfAt(block + 2) * xd[b] * sumMins);
        }

        return sum;
    }

    public static float Q6_K(byte* w, sbyte* xq, float* xd, short* xsums, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ6_K(w, xq, xd, n);
        }

        var sum = 0f;
        var low = Vector256.Create((byte)0x0F);
        var three = Vector256.Create((byte)3);
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (210 * b);
            var y = xq + (256 * b);
            var sc = (sbyte*)(block + 192);
            var bsums = xsums + (16 * b);

            // The stored values are q + 32 (0..63, unsigned for vpmaddubsw); take 32·Σ scale·bsum off afterwards.
            var offset = 0;
            for (var k = 0; k < 16; k++)
            {
                offset += sc[k] * bsums[k];
            }

            var acc = Vector256<int>.Zero;
            for (var half = 0; half < 2; half++)
            {
                var ql0 = Vector256.Load(block + (64 * half));
                var ql1 = Vector256.Load(block + (64 * half) + 32);
                var qh = Vector256.Load(block + 128 + (32 * half));
                var q1 = (ql0 & low) | ((qh & three) << 4);
                var q2 = (ql1 & low) | ((Vector256.ShiftRightLogical(qh, 2) & three) << 4);
                var q3 = Vector256.ShiftRightLogical(ql0, 4) | ((Vector256.ShiftRightLogical(qh, 4) & three) << 4);
                var q4 = Vector256.ShiftRightLogical(ql1, 4) | ((Vector256.ShiftRightLogical(qh, 6) & three) << 4);
                var ys = y + (128 * half);
                var s = sc + (8 * half);
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.Load(ys)), ScalePair(s[0], s[1]));
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.Load(ys + 32)), ScalePair(s[2], s[3]));
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.Load(ys + 64)), ScalePair(s[4], s[5]));
                acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4, Vector256.Load(ys + 96)), ScalePair(s[6], s[7]));
            }

            var total = Vector256.Sum(acc) - (32 * offset);
            sum += HalfAt(block + 208) * xd[b] * total;
        }

        return sum;
    }

    /// <summary>Eight 32-bit lane sums of the signed byte products of <paramref name="a"/> and <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotInt8(Vector256<sbyte> a, Vector256<sbyte> b)
    {
        // vpmaddubsw wants one unsigned operand: move a's sign onto b.
        var absA = Avx2.Sign(a, a).AsByte();
        var signedB = Avx2.Sign(b, a);
        if (UseVnni)
        {
            return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, absA, signedB);
        }

        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absA, signedB), Vector256.Create((short)1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ScalePair(sbyte first, sbyte second) =>
        Vector256.Create(Vector128.Create((short)first), Vector128.Create((short)second));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma256(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : (a * b) + c;

    /// <summary>The f16 at <paramref name="p"/> as f32 (bit manipulation: far cheaper than the Half conversion).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HalfAt(byte* p)
    {
        uint h = *(ushort*)p;
        var magnitude = h & 0x7FFF;
        if (magnitude >= 0x7C00)
        {
            return FloatConversions.HalfBitsToSingle((ushort)h);
        }

        var value = BitConverter.UInt32BitsToSingle(magnitude << 13) * 5.192297E+33f; // × 2^112
        return (h & 0x8000) != 0 ? -value : value;
    }

    /// <summary>The eight 6-bit scales and mins of a Q4_K block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DecodeScalesK4(byte* q, int* scales, int* mins)
    {
        for (var j = 0; j < 4; j++)
        {
            scales[j] = q[j] & 63;
            mins[j] = q[j + 4] & 63;
        }

        for (var j = 4; j < 8; j++)
        {
            scales[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            mins[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
}
