using System.Security.Cryptography;
using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Tests.Kernels;

public sealed unsafe class DotProductTests
{
    public static TheoryData<GgmlType> Types => [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K];

    /// <summary>
    /// For every weight type: the scalar reference dot equals Σ dequantized weight × dequantized activation (to f32
    /// accumulation error), and the vectorized kernel equals the reference (bit for bit for the K-quants, whose
    /// integer sums are exact and whose float steps run in the same order).
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Dot_equals_the_dequantized_dot_and_the_fast_kernel_equals_the_reference(GgmlType type)
    {
        const int columns = 1024;
        const int rows = 5;
        const int tokens = 3;
        var rng = new Random(42 + (int)type);
        var weights = new float[rows * columns];
        for (var i = 0; i < weights.Length; i++)
        {
            weights[i] = (float)QuantizationTests.Gaussian(rng) * 0.1f;
        }

        var x = new float[tokens * columns];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (float)QuantizationTests.Gaussian(rng) * (i % 97 == 0 ? 8f : 1f);
        }

        var bytes = GgmlQuantization.Quantize(type, weights);
        var dequantized = new float[weights.Length];
        GgmlQuantization.Dequantize(type, bytes, dequantized);

        fixed (byte* w = bytes)
        fixed (float* xp = x)
        {
            var matrix = new WeightMatrix("w", type, columns, rows, w);
            var act = new Activations();
            act.Load(matrix.ActivationKind, xp, tokens, columns, columns);
            for (var t = 0; t < tokens; t++)
            {
                var xhat = DequantizeActivation(act, t);
                for (var r = 0; r < rows; r++)
                {
                    double expected = 0, magnitude = 0;
                    for (var i = 0; i < columns; i++)
                    {
                        expected += dequantized[(r * columns) + i] * (double)xhat[i];
                        magnitude += Math.Abs(dequantized[(r * columns) + i] * (double)xhat[i]);
                    }

                    var reference = Reference(type, matrix.Row(r), act, t, columns);
                    var fast = matrix.Dot(r, act, t);
                    Assert.True(Math.Abs(reference - expected) <= 2e-6 * magnitude, $"{type} row {r}: reference {reference} vs dequantized {expected} (Σ|wx| {magnitude})");
                    if (type is GgmlType.Q4_K or GgmlType.Q6_K)
                    {
                        Assert.Equal(reference, fast);
                    }
                    else
                    {
                        Assert.True(Math.Abs(fast - reference) <= 2e-6 * magnitude, $"{type} row {r}: fast {fast} vs reference {reference}");
                    }
                }
            }

            // The activation format keeps the input close (a wrong scale or layout would not).
            var tolerance = matrix.ActivationKind switch
            {
                ActivationKind.F32 => 0.0,
                ActivationKind.F16 => 1.0 / 2048,
                ActivationKind.BF16 => 1.0 / 256,
                _ => 1.0 / 127,
            };
            var back = DequantizeActivation(act, 1);
            var rowMax = 0f;
            for (var i = 0; i < columns; i++)
            {
                rowMax = Math.Max(rowMax, Math.Abs(x[columns + i]));
            }

            for (var i = 0; i < columns; i++)
            {
                Assert.True(Math.Abs(back[i] - x[columns + i]) <= (tolerance * rowMax) + 1e-7, $"{type}: activation {i} {back[i]} vs {x[columns + i]}");
            }
        }
    }

    [Fact]
    public unsafe void Q8_K_activations_match_ggml_bit_for_bit()
    {
        // SHA-256 of ggml's quantize_row_q8_K_ref on the golden input (block_q8_K: f32 d, 256 int8, 16 int16 sums).
        var x = QuantizationTests.GoldenInput();
        var act = new Activations();
        fixed (float* xp = x)
        {
            act.Load(ActivationKind.Q8_K, xp, 1, x.Length, x.Length);
        }

        var bytes = new byte[x.Length / 256 * 292];
        for (var b = 0; b < x.Length / 256; b++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(292 * b), act.Scales(0)[b]);
            new ReadOnlySpan<byte>(act.Quants(0) + (256 * b), 256).CopyTo(bytes.AsSpan((292 * b) + 4));
            new ReadOnlySpan<byte>(act.Sums(0) + (16 * b), 32).CopyTo(bytes.AsSpan((292 * b) + 260));
        }

        Assert.Equal("ef7936daa23f3b9589f5e06636f309a9ff2436b4fc9ae42853615cde8cd0c26a", Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    [Fact]
    public unsafe void Q8_0_activations_round_half_to_even_with_an_f16_scale()
    {
        var x = new float[32];
        x[0] = 127f;
        x[1] = 2.5f;
        x[2] = -3.5f;
        x[3] = 0.5f;
        x[4] = -127f;
        var act = new Activations();
        fixed (float* xp = x)
        {
            act.Load(ActivationKind.Q8_0, xp, 1, 32, 32);
        }

        Assert.Equal(1f, act.Scales(0)[0]);
        Assert.Equal(new sbyte[] { 127, 2, -4, 0, -127 }, new ReadOnlySpan<sbyte>(act.Quants(0), 5).ToArray());
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Matrix_products_over_a_batch_equal_row_by_row_dots(GgmlType type)
    {
        const int columns = 512;
        const int rows = 70;
        const int tokens = 37;
        var rng = new Random(7);
        var weights = new float[rows * columns];
        for (var i = 0; i < weights.Length; i++)
        {
            weights[i] = (float)QuantizationTests.Gaussian(rng);
        }

        var x = new float[tokens * columns];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (float)QuantizationTests.Gaussian(rng);
        }

        var bytes = GgmlQuantization.Quantize(type, weights);
        var y = new float[tokens * (rows + 3)];
        using var pool = new WorkerPool(3);
        fixed (byte* w = bytes)
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            var matrix = new WeightMatrix("w", type, columns, rows, w);
            var act = new Activations();
            act.Load(matrix.ActivationKind, xp, tokens, columns, columns);
            MatMul.Multiply(matrix, act, yp, rows + 3, pool);
            for (var t = 0; t < tokens; t++)
            {
                for (var r = 0; r < rows; r++)
                {
                    Assert.Equal(matrix.Dot(r, act, t), y[(t * (rows + 3)) + r]);
                }

                Assert.Equal(0f, y[(t * (rows + 3)) + rows]);
            }
        }
    }

    private static float Reference(GgmlType type, byte* w, Activations x, int t, int n) => type switch
    {
        GgmlType.F32 => VecDot.ReferenceF32((float*)w, x.Values(t), n),
        GgmlType.F16 => VecDot.ReferenceF16((ushort*)w, x.Values(t), n),
        GgmlType.BF16 => VecDot.ReferenceBF16((ushort*)w, x.Values(t), n),
        GgmlType.Q8_0 => VecDot.ReferenceQ8_0(w, x.Quants(t), x.Scales(t), n),
        GgmlType.Q4_0 => VecDot.ReferenceQ4_0(w, x.Quants(t), x.Scales(t), n),
        GgmlType.Q4_K => VecDot.ReferenceQ4_K(w, x.Quants(t), x.Scales(t), x.Sums(t), n),
        GgmlType.Q6_K => VecDot.ReferenceQ6_K(w, x.Quants(t), x.Scales(t), n),
        _ => throw new NotSupportedException(),
    };

    private static float[] DequantizeActivation(Activations x, int t)
    {
        var result = new float[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            result[i] = x.Kind switch
            {
                ActivationKind.F32 or ActivationKind.F16 or ActivationKind.BF16 => x.Values(t)[i],
                ActivationKind.Q8_0 => x.Quants(t)[i] * x.Scales(t)[i / 32],
                _ => x.Quants(t)[i] * x.Scales(t)[i / 256],
            };
        }

        return result;
    }
}
