using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Sluice.Engine.Kernels;

/// <summary>f16 and bf16 conversions with ggml's rounding (round to nearest even; NaN kept quiet).</summary>
internal static class FloatConversions
{
    // 2^112: rescales a half's exponent/mantissa shifted into f32 position to the right value, subnormals included.
    private static readonly float HalfRescale = BitConverter.Int32BitsToSingle((127 + 112) << 23);

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
    public static unsafe Vector256<float> HalfToSingle8(ushort* source)
    {
        var h = Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32(source).AsUInt32()
            : Vector256.WidenLower(Vector256.Create(Vector128.Load(source), Vector128<ushort>.Zero));
        var sign = (h & Vector256.Create(0x8000u)) << 16;
        var magnitude = h & Vector256.Create(0x7FFFu);
        var shifted = magnitude << 13;
        var finite = shifted.AsSingle() * Vector256.Create(HalfRescale);
        var special = (shifted | Vector256.Create(0x7F800000u)).AsSingle();
        var isSpecial = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)).AsSingle();
        return (Vector256.ConditionalSelect(isSpecial, special, finite).AsUInt32() | sign).AsSingle();
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
}
