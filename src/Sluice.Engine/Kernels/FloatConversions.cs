using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>f16 and bf16 conversions with ggml's rounding (round to nearest even; NaN kept quiet).</summary>
internal static class FloatConversions
{
    // 2^112 (f32 bits (127 + 112) << 23, exact): rescales a half's exponent/mantissa shifted into f32 position to the
    // right value, subnormals included. A constant, not a static readonly: kernels compiled with
    // AggressiveOptimization before this class is initialized would otherwise keep an initialization check whose helper
    // call made the JIT keep their accumulators in stack slots for the whole loop.
    internal const float HalfRescale = 5.192296858534828e33f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfBitsToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToHalfBits(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>The f32 value nearest to <paramref name="value"/> that an f16 can hold (what ggml feeds F16 dot products).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToHalf(float value) => (float)(Half)value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BFloat16BitsToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>ggml's <c>ggml_compute_fp32_to_bf16</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToBFloat16Bits(float value)
    {
        var u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7fffffff) > 0x7f800000)
        {
            return (ushort)((u >> 16) | 64);
        }

        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToBFloat16(float value) => BFloat16BitsToSingle(SingleToBFloat16Bits(value));

    /// <summary>Eight f16 values at <paramref name="source"/> widened to f32 (exact, subnormals, infinities and NaN included).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> HalfToSingle8(ushort* source) =>
        HalfToSingle8(Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32(source).AsUInt32()
            : Vector256.WidenLower(Vector256.Create(Vector128.Load(source), Vector128<ushort>.Zero)));

    /// <summary>The f16 in the low 16 bits of each lane of <paramref name="h"/> (upper bits zero) widened to f32, exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle8(Vector256<uint> h)
    {
        var sign = (h & Vector256.Create(0x8000u)) << 16;
        var magnitude = h & Vector256.Create(0x7FFFu);
        var shifted = magnitude << 13;
        var finite = shifted.AsSingle() * Vector256.Create(HalfRescale);
        var special = (shifted | Vector256.Create(0x7F800000u)).AsSingle();
        var isSpecial = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)).AsSingle();
        return (Vector256.ConditionalSelect(isSpecial, special, finite).AsUInt32() | sign).AsSingle();
    }

    /// <summary>
    /// Sixteen f16 values at <paramref name="source"/> widened to f32, exact for every finite value (subnormals
    /// included); infinities and NaN come out as finite values of magnitude 65536 or more, so callers check for them
    /// first (<see cref="HasNonFiniteHalves"/>). Sign-extending the 16 bits lands the sign on bit 31; the mask keeps
    /// it and the 15 exponent/mantissa bits shifted into f32 position; the multiply by 2^112 rebiases the exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> FiniteHalfToSingle16(ushort* source)
    {
        if (Avx512F.IsSupported)
        {
            var h = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)source));
            var bits = Avx512F.ShiftLeftLogical(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000));
            return bits.AsSingle() * Vector512.Create(HalfRescale);
        }

        return Vector512.Create(FiniteHalfToSingle8(source), FiniteHalfToSingle8(source + 8));
    }

    /// <summary>
    /// <see cref="FiniteHalfToSingle16"/> without the final multiply: each value times 2^-112, exactly (an f16 below
    /// 2^-14 becomes an f32 subnormal). For kernels that put the 2^112 on the other factor instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> FiniteHalfToScaledSingle16(ushort* source)
    {
        if (Avx512F.IsSupported)
        {
            var h = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)source));
            return (Avx512F.ShiftLeftLogical(h, 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle();
        }

        return Vector512.Create(FiniteHalfToScaledSingle8(source), FiniteHalfToScaledSingle8(source + 8));
    }

    /// <summary>The eight-value form of <see cref="FiniteHalfToScaledSingle16"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> FiniteHalfToScaledSingle8(ushort* source)
    {
        var h = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32((short*)source)
            : Vector256.WidenLower(Vector256.Create(Vector128.Load((short*)source), Vector128<short>.Zero));
        return ((h << 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();
    }

    /// <summary>The eight-value form of <see cref="FiniteHalfToSingle16"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> FiniteHalfToSingle8(ushort* source)
    {
        var h = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32((short*)source)
            : Vector256.WidenLower(Vector256.Create(Vector128.Load((short*)source), Vector128<short>.Zero));
        var bits = (h << 13) & Vector256.Create(unchecked((int)0x8FFFE000));
        return bits.AsSingle() * Vector256.Create(HalfRescale);
    }

    /// <summary>Sixteen bf16 values widened to f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> BFloat16ToSingle16(ushort* source)
    {
        if (Avx512F.IsSupported)
        {
            return Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(source)), 16).AsSingle();
        }

        return Vector512.Create(BFloat16ToSingle8(source), BFloat16ToSingle8(source + 8));
    }

    /// <summary>True when any of the <paramref name="count"/> f16 values is an infinity or NaN (exponent bits all set).</summary>
    public static unsafe bool HasNonFiniteHalves(ushort* source, long count)
    {
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var exponent = Vector256.Create((ushort)0x7C00);
            var any = Vector256<ushort>.Zero;
            for (; i + 16 <= count; i += 16)
            {
                var e = Vector256.Load(source + i) & exponent;
                any |= Vector256.Equals(e, exponent);
            }

            if (any != Vector256<ushort>.Zero)
            {
                return true;
            }
        }

        for (; i < count; i++)
        {
            if ((source[i] & 0x7C00) == 0x7C00)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary><see cref="RoundToHalf(float)"/> over <paramref name="count"/> values (vectorized, same results bit for bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void RoundToHalf(float* source, float* destination, int count)
    {
        var i = 0;
        if (Avx2.IsSupported)
        {
            for (; i + 8 <= count; i += 8)
            {
                RoundToHalf8(Vector256.Load(source + i)).Store(destination + i);
            }
        }

        for (; i < count; i++)
        {
            destination[i] = RoundToHalf(source[i]);
        }
    }

    /// <summary>
    /// f32 → nearest f16 (round half to even) → f32 for eight values. Normal f16 range: round the f32 mantissa to 10 bits
    /// in place (the carry moves into the exponent as it should); below 2^-14 the f16 step is 2^-24, so round x·2^24 to an
    /// integer; above 65504 the result overflows to infinity; NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RoundToHalf8(Vector256<float> x)
    {
        var bits = x.AsUInt32();
        var magnitude = bits & Vector256.Create(0x7FFFFFFFu);
        var normal = (bits + Vector256.Create(0xFFFu) + ((bits >> 13) & Vector256.Create(1u))) & Vector256.Create(0xFFFFE000u);
        var subnormal = Avx.RoundToNearestInteger(x * Vector256.Create(16777216f)) * Vector256.Create(1f / 16777216f);
        var isSubnormal = Vector256.LessThan(magnitude.AsInt32(), Vector256.Create(0x38800000)).AsUInt32();
        var rounded = Vector256.ConditionalSelect(isSubnormal, subnormal.AsUInt32(), normal);
        var overflow = Vector256.GreaterThan((rounded & Vector256.Create(0x7FFFFFFFu)).AsInt32(), Vector256.Create(0x477FE000)).AsUInt32();
        rounded = Vector256.ConditionalSelect(overflow, (bits & Vector256.Create(0x80000000u)) | Vector256.Create(0x7F800000u), rounded);
        var isNaN = Vector256.GreaterThan(magnitude.AsInt32(), Vector256.Create(0x7F800000)).AsUInt32();
        return Vector256.ConditionalSelect(isNaN, bits, rounded).AsSingle();
    }

    /// <summary><see cref="RoundToBFloat16(float)"/> over <paramref name="count"/> values (vectorized, same results bit for bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void RoundToBFloat16(float* source, float* destination, int count)
    {
        var i = 0;
        if (Avx2.IsSupported)
        {
            for (; i + 8 <= count; i += 8)
            {
                var bits = Vector256.Load(source + i).AsUInt32();
                var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256.Create(1u))) & Vector256.Create(0xFFFF0000u);
                var quiet = (bits | Vector256.Create(0x400000u)) & Vector256.Create(0xFFFF0000u);
                var isNaN = Vector256.GreaterThan((bits & Vector256.Create(0x7FFFFFFFu)).AsInt32(), Vector256.Create(0x7F800000)).AsUInt32();
                Vector256.ConditionalSelect(isNaN, quiet, rounded).AsSingle().Store(destination + i);
            }
        }

        for (; i < count; i++)
        {
            destination[i] = RoundToBFloat16(source[i]);
        }
    }

    /// <summary>Eight bf16 values widened to f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> BFloat16ToSingle8(ushort* source)
    {
        var h = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32(source).AsUInt32()
            : Vector256.WidenLower(Vector256.Create(Vector128.Load(source), Vector128<ushort>.Zero));
        return (h << 16).AsSingle();
    }

    /// <summary>f32 to f16 bits, rounded to nearest even; beyond ±65,504 (and infinities) saturated there, so the cache holds only finite values.</summary>
    public static unsafe void ToSaturatedHalves(float* source, ushort* destination, int count)
    {
        for (var i = 0; i < count; i++)
        {
            destination[i] = BitConverter.HalfToUInt16Bits((Half)Math.Clamp(source[i], -65504f, 65504f));
        }
    }

    /// <summary>f16 bits (finite: <see cref="ToSaturatedHalves"/> stores no infinity) to f32, exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void FiniteHalvesToSingles(ushort* source, float* destination, int count)
    {
        var i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= count; i += 16)
            {
                FiniteHalfToSingle16(source + i).Store(destination + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= count; i += 8)
            {
                FiniteHalfToSingle8(source + i).Store(destination + i);
            }
        }

        for (; i < count; i++)
        {
            destination[i] = HalfBitsToSingle(source[i]);
        }
    }
}
