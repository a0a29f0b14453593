using System.Security.Cryptography;
using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Tests.Kernels;

public sealed class QuantizationTests
{
    /// <summary>
    /// The input of the golden hashes below: an xorshift64 sequence shaped like weights (heavy tails), with an
    /// all-zero super-block and a block of tiny values.
    /// </summary>
    internal static float[] GoldenInput()
    {
        var s = 0x9E3779B97F4A7C15UL;
        var x = new float[4096];
        for (var i = 0; i < x.Length; i++)
        {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            var v = ((long)(s >> 40) - (1 << 23)) / (float)(1 << 23);
            x[i] = (v * v * v * 3.0f) + (v * 0.5f);
        }

        Array.Clear(x, 256, 256);
        for (var i = 0; i < 32; i++)
        {
            x[1024 + i] = 1e-3f * (i - 16);
        }

        return x;
    }

    /// <summary>
    /// SHA-256 of ggml's reference quantizers (quantize_row_*_ref from the llama.cpp source node-llama-cpp 3.22.1
    /// bundles, compiled with gcc -O2 for x86-64) applied to <see cref="GoldenInput"/>: our files hold the bytes
    /// llama.cpp's own tools would write.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0, "be01d4f4dcdf74e8ddc5c11e26114f4176f3df1d767b677fc8a5679d14236249")]
    [InlineData(GgmlType.Q5_0, "2a2bd3ebd381502d553f4eeb33afcb0c1f9d8f353d34c7d96c82d13903c9f6b5")]
    [InlineData(GgmlType.Q8_0, "9b237418de8535b8fda1fbdeffe9617954d67364d1214fa58273c734d3a19390")]
    [InlineData(GgmlType.Q4_K, "0c12cb0c28175f759782065bcafca9fde3ebf58569fa23da73ff52de15f80800")]
    [InlineData(GgmlType.Q6_K, "c05c444835da2ada299e15ba6005c3d6800292922826416410fd14ec6eebe181")]
    public void Quantizers_match_ggml_bit_for_bit(GgmlType type, string sha256)
    {
        var bytes = GgmlQuantization.Quantize(type, GoldenInput());
        Assert.Equal(sha256, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    /// <summary>
    /// Quantize → dequantize error, relative to the input's RMS (and per block for the simple types). The bounds
    /// are what each format can do on Gaussian-like data, with margin; a layout or scale mistake is far above them.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F32, 0.0)]
    [InlineData(GgmlType.F16, 0.0005)]
    [InlineData(GgmlType.BF16, 0.004)]
    [InlineData(GgmlType.Q8_0, 0.006)]
    [InlineData(GgmlType.Q6_K, 0.02)]
    [InlineData(GgmlType.Q4_K, 0.09)]
    [InlineData(GgmlType.Q4_0, 0.12)]
    [InlineData(GgmlType.Q5_0, 0.06)]
    public void Round_trip_error_is_within_the_format_bound(GgmlType type, double maxRelativeRmse)
    {
        var rng = new Random(1234);
        var x = new float[8192];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (float)Gaussian(rng) * 0.05f;
        }

        var y = new float[x.Length];
        GgmlQuantization.Dequantize(type, GgmlQuantization.Quantize(type, x), y);

        double se = 0, sx = 0;
        for (var i = 0; i < x.Length; i++)
        {
            se += (x[i] - y[i]) * (double)(x[i] - y[i]);
            sx += x[i] * (double)x[i];
        }

        var relative = Math.Sqrt(se / sx);
        Assert.True(relative <= maxRelativeRmse, $"{type}: relative RMSE {relative:E3} > {maxRelativeRmse}");
        if (type != GgmlType.F32)
        {
            Assert.True(relative > maxRelativeRmse / 20, $"{type}: relative RMSE {relative:E3} is implausibly small: is the type really quantized?");
        }

        // Per-element bounds for the block formats whose scale is max|x|/levels.
        for (var b = 0; b < x.Length / 32; b++)
        {
            var amax = 0f;
            for (var j = 0; j < 32; j++)
            {
                amax = Math.Max(amax, Math.Abs(x[(32 * b) + j]));
            }

            for (var j = 0; j < 32; j++)
            {
                var err = Math.Abs(x[(32 * b) + j] - y[(32 * b) + j]);
                switch (type)
                {
                    case GgmlType.Q8_0:
                        Assert.True(err <= (amax / 127 * 0.5f * 1.01f) + (amax * 1e-3f), $"Q8_0 block {b}: error {err} for max {amax}");
                        break;
                    case GgmlType.Q4_0:
                        Assert.True(err <= amax / 8 * 1.01f, $"Q4_0 block {b}: error {err} for max {amax}");
                        break;
                    case GgmlType.Q5_0:
                        Assert.True(err <= amax / 16 * 1.01f, $"Q5_0 block {b}: error {err} for max {amax}");
                        break;
                    case GgmlType.F16:
                        Assert.True(err <= Math.Abs(x[(32 * b) + j]) * (1f / 2048) + 1e-7f);
                        break;
                    case GgmlType.BF16:
                        Assert.True(err <= Math.Abs(x[(32 * b) + j]) * (1f / 256));
                        break;
                }
            }
        }
    }

    [Fact]
    public void Zero_blocks_stay_zero()
    {
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F16, GgmlType.BF16 })
        {
            var y = new float[512];
            y.AsSpan().Fill(1f);
            GgmlQuantization.Dequantize(type, GgmlQuantization.Quantize(type, new float[512]), y);
            Assert.All(y, v => Assert.Equal(0f, v));
        }
    }

    [Fact]
    public void Sizes_are_checked()
    {
        Assert.Throws<ArgumentException>(() => GgmlQuantization.Quantize(GgmlType.Q4_K, new float[255]));
        Assert.Throws<ArgumentException>(() => GgmlQuantization.Quantize(GgmlType.Q8_0, new float[64], new byte[67]));
        Assert.Throws<NotSupportedException>(() => GgmlQuantization.Quantize(GgmlType.Q5_K, new float[256]));
    }

    [Fact]
    public void Half_and_bfloat16_conversions_round_to_nearest_even()
    {
        // 1 + 2^-11 is halfway between two halves: ties go to the even mantissa (1.0).
        Assert.Equal(1f, FloatConversions.RoundToHalf(1f + (1f / 2048)));
        Assert.Equal(1f + (2f / 1024), FloatConversions.RoundToHalf(1f + (3f / 2048)));
        Assert.Equal(65504f, FloatConversions.RoundToHalf(65504f));
        Assert.True(float.IsPositiveInfinity(FloatConversions.RoundToHalf(70000f)));
        Assert.Equal(5.9604645E-08f, FloatConversions.RoundToHalf(6e-8f)); // smallest subnormal
        Assert.Equal(1f, FloatConversions.RoundToBFloat16(1f + (1f / 256)));
        Assert.Equal(1f + (2f / 128), FloatConversions.RoundToBFloat16(1f + (3f / 256)));
        Assert.True(float.IsNaN(FloatConversions.BFloat16BitsToSingle(FloatConversions.SingleToBFloat16Bits(float.NaN))));
    }

    [Fact]
    public unsafe void Vector_half_conversion_matches_scalar_for_every_value()
    {
        var all = new ushort[65536];
        for (var i = 0; i < all.Length; i++)
        {
            all[i] = (ushort)i;
        }

        fixed (ushort* p = all)
        {
            var lanes = new float[8];
            for (var i = 0; i < all.Length; i += 8)
            {
                System.Runtime.Intrinsics.Vector256.CopyTo(FloatConversions.HalfToSingle8(p + i), lanes);
                for (var j = 0; j < 8; j++)
                {
                    var expected = FloatConversions.HalfBitsToSingle(all[i + j]);
                    Assert.True(
                        BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(lanes[j]) || (float.IsNaN(expected) && float.IsNaN(lanes[j])),
                        $"half 0x{i + j:X4}: {lanes[j]} != {expected}");
                    var scalar = VecDot.HalfAt((byte*)(p + i + j));
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(scalar) || (float.IsNaN(expected) && float.IsNaN(scalar)));
                }
            }
        }
    }

    /// <summary>The fast f16 widening (used for finite weights) is exact for every finite half, subnormals included.</summary>
    [Fact]
    public unsafe void Finite_half_widening_is_exact_for_every_finite_value()
    {
        var all = new ushort[65536];
        for (var i = 0; i < all.Length; i++)
        {
            all[i] = (ushort)i;
        }

        fixed (ushort* p = all)
        {
            Assert.True(FloatConversions.HasNonFiniteHalves(p, all.Length));
            Assert.False(FloatConversions.HasNonFiniteHalves(p, 0x7C00));
            var lanes = new float[16];
            for (var i = 0; i < all.Length; i += 16)
            {
                System.Runtime.Intrinsics.Vector512.CopyTo(FloatConversions.FiniteHalfToSingle16(p + i), lanes);
                for (var j = 0; j < 16; j++)
                {
                    if ((all[i + j] & 0x7C00) == 0x7C00)
                    {
                        continue;
                    }

                    var expected = FloatConversions.HalfBitsToSingle(all[i + j]);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(lanes[j]), $"half 0x{i + j:X4}: {lanes[j]} != {expected}");
                }
            }
        }
    }

    internal static double Gaussian(Random rng)
    {
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
