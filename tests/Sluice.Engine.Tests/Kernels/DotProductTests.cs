using System.Runtime.Intrinsics;
using System.Security.Cryptography;
using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Tests.Kernels;

public sealed unsafe class DotProductTests
{
    public static TheoryData<GgmlType> Types => [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q4_K, GgmlType.Q6_K];

    /// <summary>
    /// For every weight type: the scalar definition (<see cref="VecDot.Reference"/>) equals Σ dequantized weight ×
    /// dequantized activation (to f32 accumulation error), and the fast kernels equal the definition bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Definition_equals_the_dequantized_dot_and_the_kernels_equal_the_definition(GgmlType type)
    {
        const int columns = 1024;
        const int rows = 5;
        const int tokens = 3;
        var (bytes, x) = RandomProblem(type, columns, rows, tokens, 42 + (int)type, spikes: true);
        var dequantized = new float[rows * columns];
        GgmlQuantization.Dequantize(type, bytes, dequantized);
        var y = new float[tokens * rows];
        fixed (byte* w = bytes)
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            var matrix = new WeightMatrix("w", type, columns, rows, w);
            var act = new Activations();
            act.Load(matrix.ActivationKind, xp, tokens, columns, columns);
            MatMul.MultiplyRows(matrix, act, yp, rows, 0, rows);
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

                    var reference = VecDot.Reference(matrix, r, act, t);
                    Assert.True(Math.Abs(reference - expected) <= 2e-6 * magnitude, $"{type} row {r}: definition {reference} vs dequantized {expected} (Σ|wx| {magnitude})");
                    Assert.Equal(reference, y[(t * rows) + r]);
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

    /// <summary>
    /// Batched products (any token count: whole and partial 8-token groups, 4-token float tiles and their tails, rows not
    /// a multiple of the 4-row tile, several threads) equal the definition for every (row, token) bit for bit — so a
    /// token's result never depends on which other tokens share its batch.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Batched_products_equal_the_definition_for_every_batch_size(GgmlType type)
    {
        const int rows = 70;
        var columns = type is GgmlType.Q4_K or GgmlType.Q6_K ? 512 : type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? 200 : 224;
        using var pool = new WorkerPool(3);
        foreach (var tokens in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 17, 37 })
        {
            var (bytes, x) = RandomProblem(type, columns, rows, tokens, 7 + tokens, spikes: false);
            var y = new float[tokens * (rows + 3)];
            fixed (byte* w = bytes)
            fixed (float* xp = x)
            fixed (float* yp = y)
            {
                var matrix = new WeightMatrix("w", type, columns, rows, w);
                var act = new Activations();
                act.Load(matrix.ActivationKind, xp, tokens, columns, columns, pool);
                MatMul.Multiply(matrix, act, yp, rows + 3, pool);

                // The last token alone, as a decode step would see it.
                var alone = new Activations();
                alone.Load(matrix.ActivationKind, xp + ((tokens - 1) * columns), 1, columns, columns);
                var single = new float[rows];
                fixed (float* sp = single)
                {
                    MatMul.Multiply(matrix, alone, sp, rows, pool);
                }

                for (var t = 0; t < tokens; t++)
                {
                    for (var r = 0; r < rows; r++)
                    {
                        Assert.Equal(VecDot.Reference(matrix, r, act, t), y[(t * (rows + 3)) + r]);
                    }

                    Assert.Equal(0f, y[(t * (rows + 3)) + rows]);
                }

                for (var r = 0; r < rows; r++)
                {
                    Assert.Equal(y[((tokens - 1) * (rows + 3)) + r], single[r]);
                }
            }
        }
    }

    /// <summary>
    /// The vector unpacking of Q4_K's 12 bytes of 6-bit scales and mins equals the scalar one for random bytes and for
    /// every single set bit (a wrong shift or mask moves one bit into the wrong scale).
    /// </summary>
    [Fact]
    public void Q4K_scales_and_mins_unpack_the_same_in_a_vector()
    {
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported)
        {
            return; // the vector form is only called behind the AVX2 kernels
        }

        var rng = new Random(11);
        var bytes = new byte[16];
        for (var round = 0; round < 2000 + (12 * 8); round++)
        {
            if (round < 12 * 8)
            {
                Array.Clear(bytes);
                bytes[round / 8] = (byte)(1 << (round % 8));
            }
            else
            {
                rng.NextBytes(bytes);
            }

            fixed (byte* q = bytes)
            {
                var (scales, mins) = VecDot.ScalesMinsK4(q);
                var vector = VecDot.ScalesMinsK4Vector(q).AsUInt64();
                Assert.Equal(scales, vector.GetElement(0));
                Assert.Equal(mins, vector.GetElement(1));
            }
        }
    }

    /// <summary>
    /// Integer products at the ends of their ranges: every activation quantized to ±127 (so every 16- and 32-value sum is
    /// at its largest, with either sign per token) against blocks whose bytes are all 0xFF (largest values, and for
    /// K-quants 6-bit scales and mins of 63) or random. The decode kernels pack sums into 16-bit lanes; an overflow there
    /// would show as a difference from the definition. 1 token (matrix-vector path) and 2–8 (quad paths).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    public void Integer_products_are_exact_at_the_ends_of_their_ranges(GgmlType type)
    {
        const int columns = 768;
        const int rows = 11;
        var (blockValues, blockBytes, scaleAt) = type switch
        {
            GgmlType.Q4_K => (256, 144, 0),
            GgmlType.Q6_K => (256, 210, 208),
            GgmlType.Q4_0 => (32, 18, 0),
            _ => (32, 22, 0),
        };
        var blocks = columns / blockValues;
        var bytes = new byte[rows * blocks * blockBytes];
        new Random(3).NextBytes(bytes);
        for (var r = 0; r < rows; r += 2)
        {
            // Even rows all ones, except each block's f16 scales (0x3C00 = 1.0: 0xFFFF would be NaN).
            var row = bytes.AsSpan(r * blocks * blockBytes, blocks * blockBytes);
            row.Fill(0xFF);
            for (var b = 0; b < blocks; b++)
            {
                var d = (b * blockBytes) + scaleAt;
                BitConverter.TryWriteBytes(row[d..], (ushort)0x3C00);
                if (type == GgmlType.Q4_K)
                {
                    BitConverter.TryWriteBytes(row[(d + 2)..], (ushort)0x3C00);
                }
            }
        }

        using var pool = new WorkerPool(2);
        foreach (var tokens in new[] { 1, 2, 4, 5, 8 })
        {
            var x = new float[tokens * columns];
            for (var t = 0; t < tokens; t++)
            {
                x.AsSpan(t * columns, columns).Fill(t % 2 == 0 ? 3.5f : -3.5f);
            }

            var y = new float[tokens * rows];
            fixed (byte* w = bytes)
            fixed (float* xp = x)
            fixed (float* yp = y)
            {
                var matrix = new WeightMatrix("w", type, columns, rows, w);
                var act = new Activations();
                act.Load(matrix.ActivationKind, xp, tokens, columns, columns, pool);
                Assert.Equal(127, Math.Abs((int)act.Quant(0, 5)));
                MatMul.Multiply(matrix, act, yp, rows, pool);
                for (var t = 0; t < tokens; t++)
                {
                    for (var r = 0; r < rows; r++)
                    {
                        Assert.Equal(VecDot.Reference(matrix, r, act, t), y[(t * rows) + r]);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Decode products (1 token, and quads of 2–8) equal the definition in both kernel widths — the 512-bit one where
    /// AVX-512 is present (Q4_K; the other types have one kernel, checked here all the same) and the 256-bit one every AVX2
    /// machine runs — over row ranges that start and end mid-tile.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q8_0)]
    public void Decode_products_equal_the_definition_in_both_kernel_widths(GgmlType type)
    {
        const int columns = 768;
        const int rows = 21;
        var saved = QuantGemm.UseWideKernels;
        try
        {
            foreach (var wide in new[] { false, true })
            {
                if (wide && !saved)
                {
                    continue; // no AVX-512 here: the default already ran the 256-bit kernel
                }

                QuantGemm.UseWideKernels = wide;
                foreach (var tokens in new[] { 1, 2, 3, 4, 5, 6, 8 })
                {
                    var (bytes, x) = RandomProblem(type, columns, rows, tokens, 100 + tokens, spikes: true);
                    fixed (byte* w = bytes)
                    fixed (float* xp = x)
                    {
                        var matrix = new WeightMatrix("w", type, columns, rows, w);
                        var act = new Activations();
                        act.Load(matrix.ActivationKind, xp, tokens, columns, columns);
                        Assert.True(tokens == 1 ? act.HasPlainRows : QuantGemm.TakesQuads(matrix, act));
                        foreach (var (start, end) in new[] { (0, rows), (3, 14), (16, 21) })
                        {
                            CheckRange(matrix, act, start, end, tokens == 1 ? &QuantGemm.MultiplyFewRows : &QuantGemm.MultiplyTokenQuads, null, $"{(wide ? 512 : 256)}-bit");
                        }
                    }
                }
            }
        }
        finally
        {
            QuantGemm.UseWideKernels = saved;
        }
    }

    /// <summary>
    /// Every activation buffer starts on a cache line, whatever address the allocator gave its array: the kernels' vector
    /// loads then split lines the same way in every process (with 8-byte-aligned arrays the prompt speed moved ~7 %
    /// between otherwise identical runs).
    /// </summary>
    [Fact]
    public void Activation_buffers_start_on_a_cache_line()
    {
        foreach (var (kind, tokens) in new[] { (ActivationKind.Q8_K, 1), (ActivationKind.Q8_K, 5), (ActivationKind.Q8_0, 1), (ActivationKind.F32, 3) })
        {
            var x = new float[tokens * 512];
            fixed (float* xp = x)
            {
                var act = new Activations();
                act.Load(kind, xp, tokens, 512, 512);
                if (kind == ActivationKind.F32)
                {
                    Assert.Equal(0, (nint)act.Values(0) % 64);
                    continue;
                }

                Assert.Equal(0, (nint)act.GroupQuants(0) % 64);
                Assert.Equal(0, (nint)act.GroupScales(0) % 64);
                Assert.Equal(0, (nint)act.GroupSums(0) % 64);
                if (act.HasPlainRows)
                {
                    Assert.Equal(0, (nint)act.PlainQuants(0) % 64);
                }
            }
        }
    }

    /// <summary>f16 weights holding infinities or NaN take the exact conversion (the fast one assumes finite values).</summary>
    [Fact]
    public void F16_weights_with_infinities_and_nan_follow_the_definition()
    {
        const int columns = 64;
        const int rows = 6;
        var (bytes, x) = RandomProblem(GgmlType.F16, columns, rows, 2, 3, spikes: false);
        BitConverter.TryWriteBytes(bytes.AsSpan(2 * 5), (ushort)0x7C00); // +inf in row 0
        BitConverter.TryWriteBytes(bytes.AsSpan(2 * (columns + 7)), (ushort)0x7E00); // NaN in row 1
        var y = new float[2 * rows];
        fixed (byte* w = bytes)
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            var matrix = new WeightMatrix("w", GgmlType.F16, columns, rows, w);
            Assert.True(matrix.HasNonFiniteValues);
            var act = new Activations();
            act.Load(ActivationKind.F16, xp, 2, columns, columns);
            MatMul.MultiplyRows(matrix, act, yp, rows, 0, rows);
            Assert.True(float.IsInfinity(y[0]) || float.IsNaN(y[0]));
            Assert.True(float.IsNaN(y[1]));
            for (var r = 2; r < rows; r++)
            {
                Assert.Equal(VecDot.Reference(matrix, r, act, 0), y[r]);
            }
        }
    }

    public static TheoryData<GgmlType> FloatTypes => [GgmlType.F32, GgmlType.F16, GgmlType.BF16];

    /// <summary>
    /// The float matrix-vector path (<see cref="FloatGemm.MultiplyFewRows"/>, 1–4 tokens) equals the definition and the
    /// prompt GEMM for every (row, token) bit for bit: columns below, at and past the 16-lane step (tails of 1–15 values),
    /// row ranges that start and end mid-tile, and no write outside the range.
    /// </summary>
    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Float_decode_path_equals_the_definition_for_1_to_4_tokens(GgmlType type)
    {
        const int rows = 23;
        foreach (var columns in new[] { 1, 7, 16, 17, 40, 200, 896 })
        {
            foreach (var tokens in new[] { 1, 2, 3, 4 })
            {
                var (bytes, x) = RandomProblem(type, columns, rows, tokens, (31 * columns) + tokens, spikes: true);
                fixed (byte* w = bytes)
                fixed (float* xp = x)
                {
                    var matrix = new WeightMatrix("w", type, columns, rows, w);
                    var act = new Activations();
                    act.Load(matrix.ActivationKind, xp, tokens, columns, columns);
                    foreach (var (start, end) in new[] { (0, rows), (1, 6), (5, 6), (2, 21), (20, 23) })
                    {
                        CheckFewRows(matrix, act, start, end);
                    }
                }
            }
        }
    }

    /// <summary>
    /// F16 weights across the whole finite range (subnormals, ±65504, signed zeros) against activations at the ends of
    /// theirs (±65504 and infinities after f16 rounding, f16 subnormals): the matrix-vector path moves the f16 rebias
    /// (×2^112) from the weights onto the activations, which must stay exact at these extremes.
    /// </summary>
    [Fact]
    public void F16_decode_path_is_exact_at_the_ends_of_the_f16_range()
    {
        const int columns = 96;
        const int rows = 9;
        var rng = new Random(5);
        var halves = new ushort[columns * rows];
        for (var i = 0; i < halves.Length; i++)
        {
            halves[i] = (i % 6) switch
            {
                0 => (ushort)rng.Next(0x0001, 0x0400), // subnormal
                1 => (ushort)(0x8000 | rng.Next(0x0001, 0x0400)), // negative subnormal
                2 => i % 12 == 2 ? (ushort)0x7BFF : (ushort)0xFBFF, // ±65504
                3 => i % 12 == 3 ? (ushort)0x0000 : (ushort)0x8000, // ±0
                _ => (ushort)(rng.Next(0, 0x7C00) | (rng.Next(2) << 15)), // any finite value
            };
        }

        var bytes = new byte[halves.Length * 2];
        Buffer.BlockCopy(halves, 0, bytes, 0, bytes.Length);
        foreach (var tokens in new[] { 1, 2, 3, 4 })
        {
            var x = new float[columns * tokens];
            for (var i = 0; i < x.Length; i++)
            {
                x[i] = (i % 5) switch
                {
                    0 => i % 10 == 0 ? 65504f : -65504f,
                    1 => (float)QuantizationTests.Gaussian(rng) * 1e-6f, // f16 subnormal range
                    2 => (float)QuantizationTests.Gaussian(rng) * 1e-3f,
                    _ => (float)QuantizationTests.Gaussian(rng),
                };
            }

            if (tokens == 3)
            {
                x[(2 * columns) + 11] = 70000f; // rounds to +inf: infinities and NaN in that token's sums
            }

            fixed (byte* w = bytes)
            fixed (float* xp = x)
            {
                var matrix = new WeightMatrix("w", GgmlType.F16, columns, rows, w);
                Assert.False(matrix.HasNonFiniteValues);
                var act = new Activations();
                act.Load(ActivationKind.F16, xp, tokens, columns, columns);
                CheckFewRows(matrix, act, 0, rows);
            }
        }
    }

    /// <summary>Runs the float matrix-vector path on rows [start, end) and compares with the definition and the GEMM.</summary>
    private static void CheckFewRows(WeightMatrix matrix, Activations act, int start, int end) =>
        CheckRange(matrix, act, start, end, &FloatGemm.MultiplyFewRows, &FloatGemm.MultiplyRows, "float");

    /// <summary>
    /// Runs <paramref name="product"/> on rows [start, end): nothing outside them is written, and each (row, token) inside
    /// equals the definition bit for bit — and <paramref name="alsoEqualTo"/>'s result when given (NaN equals NaN).
    /// </summary>
    private static void CheckRange(
        WeightMatrix matrix, Activations act, int start, int end,
        delegate*<WeightMatrix, Activations, float*, int, int, int, void> product,
        delegate*<WeightMatrix, Activations, float*, int, int, int, void> alsoEqualTo,
        string label)
    {
        var rows = matrix.Rows;
        var tokens = act.Rows;
        var y = new float[tokens * rows];
        var other = new float[tokens * rows];
        y.AsSpan().Fill(float.NaN);
        fixed (float* yp = y)
        fixed (float* op = other)
        {
            product(matrix, act, yp, rows, start, end);
            if (alsoEqualTo != null)
            {
                alsoEqualTo(matrix, act, op, rows, start, end);
            }
        }

        static bool Same(float a, float b) => BitConverter.SingleToInt32Bits(a) == BitConverter.SingleToInt32Bits(b) || (float.IsNaN(a) && float.IsNaN(b));
        for (var t = 0; t < tokens; t++)
        {
            for (var r = 0; r < rows; r++)
            {
                var actual = y[(t * rows) + r];
                if (r < start || r >= end)
                {
                    Assert.True(float.IsNaN(actual), $"{label} {matrix.Type} row {r} token {t} outside [{start}, {end}) was written");
                    continue;
                }

                var expected = VecDot.Reference(matrix, r, act, t);
                Assert.True(Same(expected, actual), $"{label} {matrix.Type} {matrix.Columns} columns, {tokens} tokens, row {r} token {t}: {actual} vs definition {expected}");
                if (alsoEqualTo != null)
                {
                    Assert.True(Same(other[(t * rows) + r], actual), $"{label} {matrix.Type} row {r} token {t}: {actual} vs {other[(t * rows) + r]}");
                }
            }
        }
    }

    [Fact]
    public void Q8_K_activations_match_ggml_bit_for_bit()
    {
        // SHA-256 of ggml's quantize_row_q8_K_ref on the golden input (block_q8_K: f32 d, 256 int8, 16 int16 sums).
        var x = QuantizationTests.GoldenInput();
        var act = new Activations();
        fixed (float* xp = x)
        {
            act.Load(ActivationKind.Q8_K, xp, 1, x.Length, x.Length);
        }

        var (q, d, sums) = act.ExportRow(0);
        var bytes = new byte[x.Length / 256 * 292];
        for (var b = 0; b < x.Length / 256; b++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(292 * b), d[b]);
            for (var i = 0; i < 256; i++)
            {
                bytes[(292 * b) + 4 + i] = (byte)q[(256 * b) + i];
            }

            for (var j = 0; j < 16; j++)
            {
                BitConverter.TryWriteBytes(bytes.AsSpan((292 * b) + 260 + (2 * j)), sums[(16 * b) + j]);
            }
        }

        Assert.Equal("ef7936daa23f3b9589f5e06636f309a9ff2436b4fc9ae42853615cde8cd0c26a", Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    [Fact]
    public void Q8_0_activations_round_half_to_even_with_an_f16_scale()
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

        Assert.Equal(1f, act.Scale(0, 0));
        Assert.Equal(new sbyte[] { 127, 2, -4, 0, -127 }, act.ExportRow(0).Quants[..5]);
        Assert.Equal(127 + 2 - 4 - 127, act.Sum(0, 0));
    }

    /// <summary>
    /// Q8_K's scale comes from the first value of largest magnitude, with its sign: the vectorized search finds the same
    /// one as the scalar loop when the magnitude appears twice with opposite signs (in one 8-value step or several
    /// apart, first and last lanes), and its sums of 16 match (the unsigned offset taken back off exactly).
    /// </summary>
    [Theory]
    [InlineData(0, 255)]
    [InlineData(255, 0)]
    [InlineData(7, 8)]
    [InlineData(8, 7)]
    [InlineData(3, 4)]
    [InlineData(100, 37)]
    public void Q8_K_takes_the_sign_of_the_first_largest_value_like_the_definition(int negative, int positive)
    {
        var x = new float[512];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = ((i * 37) % 101 / 25f) - 2f;
        }

        x[negative] = -9.5f;
        x[positive] = 9.5f;
        x[256 + positive] = -3.25f;
        x[256 + negative] = 3.25f;
        var q1 = new sbyte[512];
        var q2 = new sbyte[512];
        var d1 = new float[16];
        var d2 = new float[16];
        var s1 = new short[32];
        var s2 = new short[32];
        fixed (float* xp = x)
        fixed (sbyte* q1p = q1, q2p = q2)
        fixed (float* d1p = d1, d2p = d2)
        fixed (short* s1p = s1, s2p = s2)
        {
            Activations.QuantizeQ8_K(xp, q1p, d1p, s1p, x.Length);
            Activations.QuantizeQ8_KFast(xp, q2p, d2p, s2p, x.Length);
        }

        Assert.Equal(q1, q2);
        Assert.Equal(d1[..2], d2[..2]);
        Assert.Equal(s1, s2);
        Assert.Equal(negative < positive ? 127 : -127, q2[negative] * -1);
    }

    /// <summary>The vectorized activation quantizers and roundings equal the scalar definitions bit for bit.</summary>
    [Fact]
    public void Vectorized_activation_conversions_equal_the_scalar_ones()
    {
        var rng = new Random(11);
        var x = new float[4096];
        for (var i = 0; i < x.Length; i++)
        {
            // Wide dynamic range, exact ties, tiny and huge values, signed zeros.
            x[i] = (i % 11) switch
            {
                0 => (float)QuantizationTests.Gaussian(rng) * 1e-6f,
                1 => (rng.Next(-2000, 2000) + 0.5f) / 1024f,
                2 => (float)QuantizationTests.Gaussian(rng) * 70000f,
                3 => i % 2 == 0 ? 0f : -0f,
                4 => (float)QuantizationTests.Gaussian(rng) * 1e-9f,
                _ => (float)QuantizationTests.Gaussian(rng) * (i % 7),
            };
        }

        Array.Clear(x, 512, 256); // an all-zero super-block
        fixed (float* xp = x)
        {
            var q1 = new sbyte[x.Length];
            var q2 = new sbyte[x.Length];
            var d1 = new float[x.Length / 32];
            var d2 = new float[x.Length / 32];
            var s1 = new short[x.Length / 16];
            var s2 = new short[x.Length / 16];
            fixed (sbyte* q1p = q1, q2p = q2)
            fixed (float* d1p = d1, d2p = d2)
            fixed (short* s1p = s1, s2p = s2)
            {
                Activations.QuantizeQ8_0(xp, q1p, d1p, x.Length);
                Activations.QuantizeQ8_0Fast(xp, q2p, d2p, x.Length);
                Assert.Equal(q1, q2);
                Assert.Equal(d1, d2);
                Activations.QuantizeQ8_K(xp, q1p, d1p, s1p, x.Length);
                Activations.QuantizeQ8_KFast(xp, q2p, d2p, s2p, x.Length);
                Assert.Equal(q1, q2);
                Assert.Equal(d1.AsSpan(0, x.Length / 256).ToArray(), d2.AsSpan(0, x.Length / 256).ToArray());
                Assert.Equal(s1, s2);
            }

            var h = new float[x.Length];
            var b = new float[x.Length];
            fixed (float* hp = h, bp = b)
            {
                FloatConversions.RoundToHalf(xp, hp, x.Length);
                FloatConversions.RoundToBFloat16(xp, bp, x.Length);
            }

            for (var i = 0; i < x.Length; i++)
            {
                Assert.Equal(BitConverter.SingleToInt32Bits(FloatConversions.RoundToHalf(x[i])), BitConverter.SingleToInt32Bits(h[i]));
                Assert.Equal(BitConverter.SingleToInt32Bits(FloatConversions.RoundToBFloat16(x[i])), BitConverter.SingleToInt32Bits(b[i]));
            }
        }

        // Every f16 boundary region: the largest values, the overflow threshold, subnormals, infinities and NaN.
        var edges = new float[] { 65504f, 65519.99f, 65520f, 65536f, -65520f, 6.1035156e-5f, 6.1e-5f, 6.0e-8f, 2.98e-8f, 2.99e-8f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.Epsilon, -float.Epsilon, 1e-45f, 3.4e38f };
        var rounded = new float[edges.Length + 7];
        fixed (float* ep = edges)
        fixed (float* rp = rounded)
        {
            FloatConversions.RoundToHalf(ep, rp, edges.Length);
        }

        for (var i = 0; i < edges.Length; i++)
        {
            var expected = FloatConversions.RoundToHalf(edges[i]);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(rounded[i]) || (float.IsNaN(expected) && float.IsNaN(rounded[i])), $"{edges[i]}: {rounded[i]} vs {expected}");
        }
    }

    private static (byte[] Weights, float[] X) RandomProblem(GgmlType type, int columns, int rows, int tokens, int seed, bool spikes)
    {
        var rng = new Random(seed);
        var weights = new float[rows * columns];
        for (var i = 0; i < weights.Length; i++)
        {
            weights[i] = (float)QuantizationTests.Gaussian(rng) * 0.1f;
        }

        var x = new float[tokens * columns];
        for (var i = 0; i < x.Length; i++)
        {
            x[i] = (float)QuantizationTests.Gaussian(rng) * (spikes && i % 97 == 0 ? 8f : 1f);
        }

        return (GgmlQuantization.Quantize(type, weights), x);
    }

    private static float[] DequantizeActivation(Activations x, int t)
    {
        var result = new float[x.Length];
        if (x.Kind is ActivationKind.F32 or ActivationKind.F16 or ActivationKind.BF16)
        {
            new ReadOnlySpan<float>(x.Values(t), x.Length).CopyTo(result);
            return result;
        }

        for (var i = 0; i < x.Length; i++)
        {
            result[i] = x.Quant(t, i) * x.Scale(t, i / x.ScaleBlock);
        }

        return result;
    }
}
