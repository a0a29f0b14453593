using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Tests.Kernels;

/// <summary>
/// Sluice's own e^x (softmax, SwiGLU): one value and 8 at a time give the same bits, within 1 ulp of the true value,
/// and — on glibc, whose <c>expf</c> it follows step by step — the bits of <see cref="MathF.Exp"/>.
/// </summary>
public sealed class ExponentialTests
{
    /// <summary>
    /// Linux on x64 with glibc (not musl) and FMA: glibc then runs its FMA build of <c>expf</c>, whose steps
    /// <see cref="Exponential"/> repeats (elsewhere the C library's bits may differ in the last place).
    /// </summary>
    private static readonly bool GlibcExp = OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 &&
        !RuntimeInformation.RuntimeIdentifier.Contains("musl", StringComparison.Ordinal) && Fma.IsSupported;

    [Fact]
    public void Scalar_and_vector_agree_with_each_other_and_with_glibc_over_a_sweep_of_inputs()
    {
        // Every 997th bit pattern over all floats (4.3 million values: all exponents, both signs, NaN and infinities).
        var buffer = new float[8];
        var filled = 0;
        var mismatches = 0;
        for (var u = 0L; u <= uint.MaxValue; u += 997)
        {
            buffer[filled++] = BitConverter.UInt32BitsToSingle((uint)u);
            if (filled == 8)
            {
                mismatches += Check(buffer);
                filled = 0;
            }
        }

        Assert.Equal(0, mismatches);
    }

    [Fact]
    public void Edges_follow_the_definition()
    {
        float[] edges =
        [
            0f, -0f, 1f, -1f, 88f, -88f, 88.72283f, 88.722839f, 88.7228394f, 89f, -87.33655f, -103.97207f, -103.972084f, -104f, -150f,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue,
            1e-8f, -1e-8f, 0.5f, -0.5f, 10f, -10f, 80f, -80f, -100f, 87.9f, -87.9f,
        ];
        for (var i = 0; i < edges.Length; i += 8)
        {
            var chunk = new float[8];
            edges.AsSpan(i, Math.Min(8, edges.Length - i)).CopyTo(chunk);
            Assert.Equal(0, Check(chunk));
        }

        Assert.Equal(1f, Exponential.Exp(0f));
        Assert.Equal(1f, Exponential.Exp(-0f));
        Assert.Equal(0f, Exponential.Exp(float.NegativeInfinity));
        Assert.Equal(float.PositiveInfinity, Exponential.Exp(float.PositiveInfinity));
        Assert.True(float.IsNaN(Exponential.Exp(float.NaN)));
        Assert.Equal(float.PositiveInfinity, Exponential.Exp(89f));
        Assert.Equal(0f, Exponential.Exp(-104f));
        Assert.True(Exponential.Exp(-100f) is > 0f and < 1e-38f, "e^-100 is a subnormal, not zero");
    }

    /// <summary>Mismatches among 8 inputs: vector vs scalar bits, scalar vs the true value (≤ 1 ulp), and vs glibc's expf.</summary>
    private static int Check(float[] x)
    {
        var vector = Exponential.Exp(Vector256.Create(x));
        var bad = 0;
        for (var i = 0; i < 8; i++)
        {
            var scalar = Exponential.Exp(x[i]);
            if (float.IsNaN(x[i]))
            {
                bad += float.IsNaN(scalar) && float.IsNaN(vector[i]) ? 0 : 1;
                continue;
            }

            if (BitConverter.SingleToInt32Bits(scalar) != BitConverter.SingleToInt32Bits(vector[i]))
            {
                bad++;
            }

            var exact = Math.Exp(x[i]);
            if (exact < float.MaxValue && exact > 1e-37 && Math.Abs(scalar - exact) > Math.Abs(MathF.BitIncrement((float)exact) - (float)exact))
            {
                bad++;
            }

            if (GlibcExp && BitConverter.SingleToInt32Bits(scalar) != BitConverter.SingleToInt32Bits(MathF.Exp(x[i])))
            {
                bad++;
            }
        }

        return bad;
    }
}
