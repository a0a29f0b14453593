using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>
/// e^x for f32, one value or 8 at a time, with the same bits either way and on every platform — the softmax of attention
/// and SwiGLU's sigmoid take it instead of <see cref="MathF.Exp"/>, whose bits are the C library's and which is one call
/// per value. The method is the one glibc's <c>expf</c> uses (ARM's optimized routines; error ≤ 0.502 ulp): in f64,
/// x·32/ln 2 = k + r with k an integer (rounded by adding 1.5·2⁵², as glibc does on x86), 2^(k/32) from a table of 32
/// values of 2^(i/32) with k's high bits added to the exponent, and a cubic in r; each step is the operation glibc's
/// x86-64 build executes (fused where its compiler fuses), so the results equal glibc's <c>expf</c> bit for bit — checked
/// for every f32 input against <see cref="MathF.Exp"/> on glibc when written; tests compare a sample and the edges.
/// </summary>
internal static unsafe class Exponential
{
    private const double Shift = 6755399441055744.0; // 1.5 · 2^52

    /// <summary>32 / ln 2.</summary>
    private static readonly double InvLn2Scaled = BitConverter.Int64BitsToDouble(0x3FF71547652B82FE) * 32;

    // The cubic's coefficients for 2^(r/32), r in [-1/2, 1/2] (powers of 32 divided out: exact).
    private static readonly double C0 = BitConverter.Int64BitsToDouble(0x3FAC6AF84B912394) / (32.0 * 32 * 32);
    private static readonly double C1 = BitConverter.Int64BitsToDouble(0x3FCEBFCE50FAC4F3) / (32.0 * 32);
    private static readonly double C2 = BitConverter.Int64BitsToDouble(0x3FE62E42FF0C52D6) / 32;

    /// <summary>Bits of 2^(i/32) less i·2⁴⁷, so adding k·2⁴⁷ (k's whole part lands in the exponent) gives 2^(k/32).</summary>
    private static readonly long* Table = BuildTable();

    /// <summary>The top 12 bits of 88f: from here on (|x| ≥ 88, infinities, NaN) the special cases decide.</summary>
    private const uint Top88 = 0x42B;

    /// <summary>e^<paramref name="x"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float x) =>
        ((BitConverter.SingleToUInt32Bits(x) >> 20) & 0x7FF) >= Top88 ? Special(x) : Ordinary(x);

    /// <summary>The steps for finite x whose e^x neither overflows nor rounds to zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Ordinary(float x)
    {
        var xd = (double)x;
        var kd = Math.FusedMultiplyAdd(InvLn2Scaled, xd, Shift);
        var ki = BitConverter.DoubleToInt64Bits(kd);
        kd -= Shift;
        var r = Math.FusedMultiplyAdd(InvLn2Scaled, xd, -kd);
        var s = BitConverter.Int64BitsToDouble(Table[ki & 31] + (ki << 47));
        var z = Math.FusedMultiplyAdd(C0, r, C1);
        var y = Math.FusedMultiplyAdd(C2, r, 1);
        y = Math.FusedMultiplyAdd(z, r * r, y);
        return (float)(y * s);
    }

    /// <summary>e^x for 8 values: the same bits as <see cref="Exp(float)"/> for each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        if (!Fma.IsSupported || !Avx2.IsSupported)
        {
            return Scalar(x);
        }

        var result = Vector256.Create(
            Avx.ConvertToVector128Single(Core(Avx.ConvertToVector256Double(x.GetLower()))),
            Avx.ConvertToVector128Single(Core(Avx.ConvertToVector256Double(x.GetUpper()))));
        var top = (x.AsUInt32() >> 20) & Vector256.Create(0x7FFu);
        return Vector256.GreaterThanOrEqualAny(top, Vector256.Create(Top88)) ? Scalar(x) : result;
    }

    /// <summary>Steps of <see cref="Exp(float)"/> for 4 values of ordinary size (|x| &lt; 88).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> Core(Vector256<double> xd)
    {
        var scale = Vector256.Create(InvLn2Scaled);
        var shift = Vector256.Create(Shift);
        var kd = Fma.MultiplyAdd(scale, xd, shift);
        var ki = kd.AsInt64();
        kd -= shift;
        var r = Fma.MultiplySubtract(scale, xd, kd);
        var t = Avx2.GatherVector256(Table, ki & Vector256.Create(31L), 8) + (ki << 47);
        var z = Fma.MultiplyAdd(Vector256.Create(C0), r, Vector256.Create(C1));
        var y = Fma.MultiplyAdd(Vector256.Create(C2), r, Vector256<double>.One);
        y = Fma.MultiplyAdd(z, r * r, y);
        return y * t.AsDouble();
    }

    private static Vector256<float> Scalar(Vector256<float> x)
    {
        var result = Vector256<float>.Zero;
        for (var i = 0; i < 8; i++)
        {
            result = result.WithElement(i, Exp(x.GetElement(i)));
        }

        return result;
    }

    /// <summary>|x| ≥ 88, infinities and NaN, as glibc: e^−∞ = 0, NaN stays NaN, overflow to +∞ and underflow to 0 at its thresholds.</summary>
    private static float Special(float x)
    {
        if (float.IsNegativeInfinity(x))
        {
            return 0f;
        }

        if (!float.IsFinite(x))
        {
            return x + x;
        }

        if (x > BitConverter.UInt32BitsToSingle(0x42B17217))
        {
            // Above ln(2^128) ≈ 88.72.
            return float.PositiveInfinity;
        }

        if (x < BitConverter.UInt32BitsToSingle(0xC2CFF1B4))
        {
            // Below ln(2^-150) ≈ -103.97: rounds to zero.
            return 0f;
        }

        // 88 ≤ |x| within the range: the ordinary steps (results near the top of f32, or subnormal).
        return Ordinary(x);
    }

    private static long* BuildTable()
    {
        var table = (long*)NativeMemory.AlignedAlloc(32 * sizeof(long), 64);
        for (var i = 0; i < 32; i++)
        {
            // 2^(i/32) correctly rounded, in integers (no platform's pow in it): the 53-bit significand m with
            // m^32 ≤ 2^(52·32 + i) < (m+1)^32, then m + 1 when (m + 1/2)^32 is still below (never equal: irrational).
            var target = BigInteger.One << ((52 * 32) + i);
            long low = 1L << 52, high = (1L << 53) - 1;
            while (low < high)
            {
                var middle = low + ((high - low + 1) / 2);
                if (BigInteger.Pow(middle, 32) <= target)
                {
                    low = middle;
                }
                else
                {
                    high = middle - 1;
                }
            }

            if (BigInteger.Pow((2 * (BigInteger)low) + 1, 32) <= target << 32)
            {
                low++;
            }

            table[i] = (0x3FFL << 52) + (low - (1L << 52)) - ((long)i << 47);
        }

        return table;
    }
}
