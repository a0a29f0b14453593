using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// The definition of every weight · activation product, as plain scalar code: one weight row (ggml block layout, read
/// in place) with one activation row in the format llama.cpp pairs with the weight type (f32, f16- or bf16-rounded
/// f32, Q8_0 or Q8_K blocks). The fast kernels (<see cref="FloatGemm"/>, <see cref="QuantGemm"/>) compute exactly these
/// operations in exactly this order for every (row, token), whatever the batch, tile or thread, so their results equal
/// these bit for bit (tested) and a token's logits never depend on what else is in its batch:
/// <list type="bullet">
/// <item>Float weights: 16 running sums, sum j taking elements k ≡ j (mod 16) by fused multiply-add (the tail padded with
/// zeros), then folded halves-first: j + (j+8), then + (j+4), then (0+2) + (1+3).</item>
/// <item>Q8_0, Q4_0, Q5_0: per block of 32 the exact integer dot, then acc = fma(dot, d_w·d_x, acc).</item>
/// <item>Q4_K: per super-block the exact Σ scale·dot and Σ min·bsum, then acc = fma(Σ, d·d_x, acc) and
/// acc = fma(−Σmin, dmin·d_x, acc). Q6_K: the exact Σ scale·dot of (q − 32), then acc = fma(Σ, d·d_x, acc).</item>
/// </list>
/// </summary>
internal static unsafe class VecDot
{
    /// <summary>Running sums of the float kernels.</summary>
    public const int FloatLanes = 16;

    /// <summary>Reference product of any supported weight type with token <paramref name="t"/> of <paramref name="x"/>.</summary>
    public static float Reference(WeightMatrix w, int row, Activations x, int t)
    {
        var p = w.Row(row);
        var n = w.Columns;
        switch (w.Type)
        {
            case GgmlType.F32:
                return ReferenceFloat(p, x.Values(t), n, static (w, i) => ((float*)w)[i]);
            case GgmlType.F16:
                return ReferenceFloat(p, x.Values(t), n, static (w, i) => FloatConversions.HalfBitsToSingle(((ushort*)w)[i]));
            case GgmlType.BF16:
                return ReferenceFloat(p, x.Values(t), n, static (w, i) => FloatConversions.BFloat16BitsToSingle(((ushort*)w)[i]));
        }

        var (q, d, sums) = x.ExportRow(t);
        fixed (sbyte* qp = q)
        fixed (float* dp = d)
        fixed (short* sp = sums)
        {
            return w.Type switch
            {
                GgmlType.Q8_0 => ReferenceQ8_0(p, qp, dp, n),
                GgmlType.Q4_0 => ReferenceQ4_0(p, qp, dp, n),
                GgmlType.Q5_0 => ReferenceQ5_0(p, qp, dp, n),
                GgmlType.Q4_K => ReferenceQ4_K(p, qp, dp, sp, n),
                GgmlType.Q6_K => ReferenceQ6_K(p, qp, dp, n),
                _ => throw new NotSupportedException(w.Type.ToString()),
            };
        }
    }

    /// <summary>The float-weight definition: 16 fused running sums, then the fixed fold.</summary>
    public static float ReferenceFloat(byte* w, float* x, int n, Func<nint, int, float> weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var acc = new float[FloatLanes];
        for (var k0 = 0; k0 < n; k0 += FloatLanes)
        {
            for (var j = 0; j < FloatLanes; j++)
            {
                var k = k0 + j;
                var (wk, xk) = k < n ? (weight((nint)w, k), x[k]) : (0f, 0f);
                acc[j] = MathF.FusedMultiplyAdd(wk, xk, acc[j]);
            }
        }

        return Fold16(acc);
    }

    /// <summary>The fixed fold of 16 running sums (what <see cref="Fold(Vector512{float})"/> computes).</summary>
    public static float Fold16(ReadOnlySpan<float> acc)
    {
        Span<float> a8 = stackalloc float[8];
        for (var j = 0; j < 8; j++)
        {
            a8[j] = acc[j] + acc[j + 8];
        }

        Span<float> a4 = stackalloc float[4];
        for (var j = 0; j < 4; j++)
        {
            a4[j] = a8[j] + a8[j + 4];
        }

        return (a4[0] + a4[2]) + (a4[1] + a4[3]);
    }

    /// <summary>The fixed fold of 16 lanes: halves first, then (0 + 2) + (1 + 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fold(Vector512<float> acc)
    {
        var a8 = acc.GetLower() + acc.GetUpper();
        var a4 = a8.GetLower() + a8.GetUpper();
        return (a4.GetElement(0) + a4.GetElement(2)) + (a4.GetElement(1) + a4.GetElement(3));
    }

    public static float ReferenceQ8_0(byte* w, sbyte* xq, float* xd, int n)
    {
        var acc = 0f;
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

            acc = MathF.FusedMultiplyAdd(sumi, HalfAt(block) * xd[b], acc);
        }

        return acc;
    }

    public static float ReferenceQ4_0(byte* w, sbyte* xq, float* xd, int n)
    {
        var acc = 0f;
        for (var b = 0; b < n / 32; b++)
        {
            var block = w + (18 * b);
            var y = xq + (32 * b);
            var sumi = 0;
            for (var j = 0; j < 16; j++)
            {
                sumi += (((block[2 + j] & 0x0F) - 8) * y[j]) + (((block[2 + j] >> 4) - 8) * y[j + 16]);
            }

            acc = MathF.FusedMultiplyAdd(sumi, HalfAt(block) * xd[b], acc);
        }

        return acc;
    }

    /// <summary>Q5_0: f16 d, 32 high bits, 16 bytes of nibbles; value (nibble | high bit « 4) − 16.</summary>
    public static float ReferenceQ5_0(byte* w, sbyte* xq, float* xd, int n)
    {
        var acc = 0f;
        for (var b = 0; b < n / 32; b++)
        {
            var block = w + (22 * b);
            var qh = *(uint*)(block + 2);
            var qs = block + 6;
            var y = xq + (32 * b);
            var sumi = 0;
            for (var j = 0; j < 16; j++)
            {
                var x0 = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
                var x1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
                sumi += ((x0 - 16) * y[j]) + ((x1 - 16) * y[j + 16]);
            }

            acc = MathF.FusedMultiplyAdd(sumi, HalfAt(block) * xd[b], acc);
        }

        return acc;
    }

    /// <summary>Q4_K weights with Q8_K activations: per super-block d·Σ scale·(q4·q8) − dmin·Σ min·bsum, integers exact.</summary>
    public static float ReferenceQ4_K(byte* w, sbyte* xq, float* xd, short* xsums, int n)
    {
        var acc = 0f;
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

            acc = MathF.FusedMultiplyAdd(sumScaled, HalfAt(block) * xd[b], acc);
            acc = MathF.FusedMultiplyAdd(-(float)sumMins, HalfAt(block + 2) * xd[b], acc);
        }

        return acc;
    }

    /// <summary>Q6_K weights with Q8_K activations: per super-block d·Σ scale·((q6 − 32)·q8), integers exact.</summary>
    public static float ReferenceQ6_K(byte* w, sbyte* xq, float* xd, int n)
    {
        var acc = 0f;
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

            acc = MathF.FusedMultiplyAdd(total, HalfAt(block + 208) * xd[b], acc);
        }

        return acc;
    }

    /// <summary>f32 dot product (attention scores): two 8-lane running sums; not part of the weight-product definition.</summary>
    /// <remarks>Inlined: attention calls it once per (position, head), for 64–128 values.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F32(float* w, float* x, int n)
    {
        var i = 0;
        var sum = 0f;
        if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            Vector256<float> a0 = default, a1 = default;
            for (; i + 16 <= n; i += 16)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), a1);
            }

            for (; i + 8 <= n; i += 8)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), a0);
            }

            sum = Vector256.Sum(a0 + a1);
        }

        for (; i < n; i++)
        {
            sum += w[i] * x[i];
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

    /// <summary>
    /// <see cref="ScalesMinsK4"/> in one vector: the scales in bytes 0–7, the mins in bytes 8–15. Reads 16 bytes from
    /// <paramref name="q"/> (the 12 packed bytes and the first 4 of the quants that follow them in a block).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<byte> ScalesMinsK4Vector(byte* q)
    {
        // Lanes (u0, u2, u1, u2) give each result dword its low 6 or 4 bits; (u0, u0, u1, u1) its top 2 bits of scales
        // 4–7 and mins 4–7 (bits 6–7 of bytes 0–3 and 4–7): ((u >> 6) & 0x03..) << 4 is (u >> 2) & 0x30...
        var v = Vector128.Load((uint*)q);
        var a = Sse2.Shuffle(v, 0b_10_01_10_00);
        var b = Sse2.Shuffle(v, 0b_01_01_00_00);
        var low = Avx2.ShiftRightLogicalVariable(a, Vector128.Create(0u, 0u, 0u, 4u)) & Vector128.Create(0x3f3f3f3fu, 0x0f0f0f0fu, 0x3f3f3f3fu, 0x0f0f0f0fu);
        var high = Sse2.ShiftRightLogical(b, 2) & Vector128.Create(0u, 0x30303030u, 0u, 0x30303030u);
        return (low | high).AsByte();
    }

    /// <summary>
    /// The f16 at <paramref name="p"/> as f32, from a 256 KiB table: .NET exposes no F16C conversion, and block
    /// scales cluster in a few cache lines of the table, so one load beats a bit-manipulation sequence per block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HalfAt(byte* p) => HalfTable[*(ushort*)p];

    /// <summary>f32 value of every f16 bit pattern (gathered by the matrix-vector kernels).</summary>
    internal static readonly float* HalfTable = BuildHalfTable();

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
