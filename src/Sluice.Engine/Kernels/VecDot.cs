using System.Diagnostics.CodeAnalysis;
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F32(float* w, float* x, int n)
    {
        if (!Vector256.IsHardwareAccelerated || n < 16)
        {
            return ReferenceF32(w, x, n);
        }

        Vector256<float> a0 = default, a1 = default;
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            a0 = Fma256(Vector256.Load(w + i), Vector256.Load(x + i), a0);
            a1 = Fma256(Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), a1);
        }

        for (; i + 8 <= n; i += 8)
        {
            a0 = Fma256(Vector256.Load(w + i), Vector256.Load(x + i), a0);
        }

        var sum = Vector256.Sum(a0 + a1);
        for (; i < n; i++)
        {
            sum += w[i] * x[i];
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q8_0(byte* w, sbyte* xq, float* xd, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ8_0(w, xq, xd, n);
        }

        // Two accumulators (even and odd blocks) halve the FMA dependency chain.
        Vector256<float> acc0 = default, acc1 = default;
        var blocks = n / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var block0 = w + (34 * b);
            var block1 = block0 + 34;
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotInt8(Vector256.Load((sbyte*)(block0 + 2)), Vector256.Load(xq + (32 * b)))), Vector256.Create(HalfAt(block0) * xd[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotInt8(Vector256.Load((sbyte*)(block1 + 2)), Vector256.Load(xq + (32 * b) + 32))), Vector256.Create(HalfAt(block1) * xd[b + 1]), acc1);
        }

        if (b < blocks)
        {
            var block = w + (34 * b);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotInt8(Vector256.Load((sbyte*)(block + 2)), Vector256.Load(xq + (32 * b)))), Vector256.Create(HalfAt(block) * xd[b]), acc0);
        }

        return Vector256.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_0(byte* w, sbyte* xq, float* xd, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ4_0(w, xq, xd, n);
        }

        Vector256<float> acc0 = default, acc1 = default;
        var blocks = n / 32;
        var b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var block0 = w + (18 * b);
            var block1 = block0 + 18;
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotInt8(Nibbles(block0 + 2), Vector256.Load(xq + (32 * b)))), Vector256.Create(HalfAt(block0) * xd[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotInt8(Nibbles(block1 + 2), Vector256.Load(xq + (32 * b) + 32))), Vector256.Create(HalfAt(block1) * xd[b + 1]), acc1);
        }

        if (b < blocks)
        {
            var block = w + (18 * b);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotInt8(Nibbles(block + 2), Vector256.Load(xq + (32 * b)))), Vector256.Create(HalfAt(block) * xd[b]), acc0);
        }

        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>The 32 values of a Q4_0 block (16 bytes of nibbles: low nibbles first) as signed bytes −8..7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> Nibbles(byte* qs)
    {
        var raw = Vector128.Load(qs);
        var both = Vector256.Create(raw, Sse2.ShiftRightLogical(raw.AsUInt16(), 4).AsByte());
        return (both & Vector256.Create((byte)0x0F)).AsSByte() - Vector256.Create((sbyte)8);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_K(byte* w, sbyte* xq, float* xd, short* xsums, int n)
    {
        if (!UseAvx2)
        {
            return ReferenceQ4_K(w, xq, xd, xsums, n);
        }

        var sum = 0f;
        var low = Vector256.Create((byte)0x0F);
        for (var b = 0; b < n / 256; b++)
        {
            var block = w + (144 * b);
            var (scales, mins) = ScalesMinsK4(block + 4);
            var qs = block + 16;
            var y = xq + (256 * b);
            var acc = Vector256<int>.Zero;
            for (var j = 0; j < 4; j++)
            {
                var raw = Vector256.Load(qs + (32 * j));
                var lo = raw & low;
                var hi = ShiftRight(raw, 4) & low;
                var p0 = Avx2.MultiplyAddAdjacent(lo, Vector256.Load(y + (64 * j)));
                var p1 = Avx2.MultiplyAddAdjacent(hi, Vector256.Load(y + (64 * j) + 32));
                acc += Avx2.MultiplyAddAdjacent(p0, Vector256.Create((short)(byte)(scales >> (16 * j))));
                acc += Avx2.MultiplyAddAdjacent(p1, Vector256.Create((short)(byte)(scales >> ((16 * j) + 8))));
            }

            var sumScaled = Vector256.Sum(acc);
            var sumMins = MinsDot(mins, xsums + (16 * b));
            sum += (HalfAt(block) * xd[b] * sumScaled) - (HalfAt(block + 2) * xd[b] * sumMins);
        }

        return sum;
    }

    /// <summary>
    /// The eight 6-bit scales and eight 6-bit mins of a Q4_K block, one per byte of each result (ggml packs them in 12
    /// bytes: the low 6 bits of bytes 0–7 hold scales/mins 0–3, bytes 8–11 and the top bits the rest).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Scales, ulong Mins) ScalesMinsK4(byte* q)
    {
        const uint six = 0x3f3f3f3f, four = 0x0f0f0f0f, two = 0x03030303;
        var u0 = *(uint*)q;
        var u1 = *(uint*)(q + 4);
        var u2 = *(uint*)(q + 8);
        var scalesHigh = (u2 & four) | (((u0 >> 6) & two) << 4);
        var minsHigh = ((u2 >> 4) & four) | (((u1 >> 6) & two) << 4);
        return ((u0 & six) | ((ulong)scalesHigh << 32), (u1 & six) | ((ulong)minsHigh << 32));
    }

    /// <summary>Σ_j mins[j] · (bsums[2j] + bsums[2j+1]) over the 16 partial sums of a Q8_K block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int MinsDot(ulong mins, short* bsums)
    {
        // Widen the 8 mins to 16 shorts, each repeated for its two partial sums, and multiply-add.
        var m = Vector128.CreateScalar(mins).AsByte();
        var widened = Sse41.ConvertToVector128Int16(m);
        var repeated = Vector256.Create(Sse2.UnpackLow(widened, widened), Sse2.UnpackHigh(widened, widened));
        return Vector256.Sum(Avx2.MultiplyAddAdjacent(Vector256.Load(bsums), repeated));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
            var offset = ScalesDotSums(sc, bsums);

            var acc = Vector256<int>.Zero;
            for (var half = 0; half < 2; half++)
            {
                var ql0 = Vector256.Load(block + (64 * half));
                var ql1 = Vector256.Load(block + (64 * half) + 32);
                var qh = Vector256.Load(block + 128 + (32 * half));
                // Byte shifts through 16-bit lanes (x86 has no 8-bit shifts); the masks drop the bits that cross lanes.
                var q1 = (ql0 & low) | ShiftLeft(qh & three, 4);
                var q2 = (ql1 & low) | ShiftLeft(ShiftRight(qh, 2) & three, 4);
                var q3 = (ShiftRight(ql0, 4) & low) | ShiftLeft(ShiftRight(qh, 4) & three, 4);
                var q4 = (ShiftRight(ql1, 4) & low) | ShiftLeft(ShiftRight(qh, 6) & three, 4);
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

    /// <summary>Σ_k scales[k] · bsums[k] over the 16 sub-blocks of a Q6_K block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int ScalesDotSums(sbyte* scales, short* bsums) =>
        Vector256.Sum(Avx2.MultiplyAddAdjacent(Vector256.Load(bsums), Avx2.ConvertToVector256Int16(Vector128.Load(scales))));

    /// <summary>Eight 32-bit lane sums of the signed byte products of <paramref name="a"/> and <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotInt8(Vector256<sbyte> a, Vector256<sbyte> b) => DotUnsigned(Avx2.Sign(a, a).AsByte(), a, b);

    /// <summary>
    /// Lane sums of a·b given |a| (<paramref name="absA"/>): vpmaddubsw wants one unsigned operand, so a's sign moves
    /// onto b. Exact for a ≠ −128 or b ≠ −128 (activations never hold −128).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> DotUnsigned(Vector256<byte> absA, Vector256<sbyte> a, Vector256<sbyte> b)
    {
        var signedB = Avx2.Sign(b, a);
        if (UseVnni)
        {
            return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, absA, signedB);
        }

        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absA, signedB), Vector256.Create((short)1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ShiftRight(Vector256<byte> v, [ConstantExpected] byte bits) => Avx2.ShiftRightLogical(v.AsUInt16(), bits).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ShiftLeft(Vector256<byte> v, [ConstantExpected] byte bits) => Avx2.ShiftLeftLogical(v.AsUInt16(), bits).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> ShiftRight4(Vector128<byte> v) => Sse2.ShiftRightLogical(v.AsUInt16(), 4).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<short> ScalePair(sbyte first, sbyte second) =>
        Vector256.Create(Vector128.Create((short)first), Vector128.Create((short)second));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma256(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : (a * b) + c;

    /// <summary>
    /// The f16 at <paramref name="p"/> as f32, from a 256 KiB table: .NET exposes no F16C conversion, and block
    /// scales cluster in a few cache lines of the table, so one load beats a bit-manipulation sequence per block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HalfAt(byte* p) => HalfTable[*(ushort*)p];

    private static readonly float* HalfTable = BuildHalfTable();

    private static float* BuildHalfTable()
    {
        var table = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (var i = 0; i < 65536; i++)
        {
            table[i] = FloatConversions.HalfBitsToSingle((ushort)i);
        }

        return table;
    }

}
