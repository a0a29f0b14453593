using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// Conversion between f32 values and the ggml tensor types the engine runs (F32, F16, BF16, Q8_0, Q4_0, Q5_0,
/// Q4_K, Q6_K). Quantization follows ggml's reference quantizers (<c>quantize_row_*_ref</c>, used by llama.cpp's tools
/// when no importance matrix is given), so files written with it hold the bytes real tools would produce.
/// </summary>
public static class GgmlQuantization
{
    /// <summary>True for the types <see cref="Quantize(GgmlType, ReadOnlySpan{float}, Span{byte})"/> and <see cref="Dequantize"/> handle.</summary>
    public static bool IsSupported(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q4_K or GgmlType.Q6_K;

    /// <summary>The supported types, for messages.</summary>
    public static string SupportedTypeNames => "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K";

    /// <summary>
    /// The type llama.cpp's quantizer writes for a tensor of <paramref name="columns"/> columns when <paramref name="type"/>
    /// is asked for: K-quants need rows of whole 256-value super-blocks, and llama.cpp falls back (Q4_K → Q5_0,
    /// Q6_K → Q8_0, as <c>llama_tensor_get_type</c> does) for tensors whose rows are not.
    /// </summary>
    public static GgmlType CompatibleType(GgmlType type, int columns) =>
        columns % GgmlTypes.BlockSize(type) == 0 ? type : type switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => type,
        };

    /// <summary>Quantizes <paramref name="source"/> (a whole number of blocks) to a new byte array.</summary>
    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> source)
    {
        var bytes = new byte[GgmlTypes.RowBytes(type, source.Length)];
        Quantize(type, source, bytes);
        return bytes;
    }

    /// <summary>
    /// Quantizes <paramref name="source"/>, whose length must be a multiple of the type's block size, into
    /// <paramref name="destination"/> (exactly the type's byte size for that many values).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Quantize(GgmlType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        CheckSizes(type, source.Length, destination.Length);
        switch (type)
        {
            case GgmlType.F32:
                for (var i = 0; i < source.Length; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(destination[(4 * i)..], source[i]);
                }

                break;
            case GgmlType.F16:
                for (var i = 0; i < source.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], FloatConversions.SingleToHalfBits(source[i]));
                }

                break;
            case GgmlType.BF16:
                for (var i = 0; i < source.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(destination[(2 * i)..], FloatConversions.SingleToBFloat16Bits(source[i]));
                }

                break;
            case GgmlType.Q8_0:
                for (var b = 0; b < source.Length / 32; b++)
                {
                    QuantizeBlockQ8_0(source.Slice(32 * b, 32), destination.Slice(34 * b, 34));
                }

                break;
            case GgmlType.Q4_0:
                for (var b = 0; b < source.Length / 32; b++)
                {
                    QuantizeBlockQ4_0(source.Slice(32 * b, 32), destination.Slice(18 * b, 18));
                }

                break;
            case GgmlType.Q5_0:
                for (var b = 0; b < source.Length / 32; b++)
                {
                    QuantizeBlockQ5_0(source.Slice(32 * b, 32), destination.Slice(22 * b, 22));
                }

                break;
            case GgmlType.Q4_K:
                for (var b = 0; b < source.Length / 256; b++)
                {
                    QuantizeBlockQ4_K(source.Slice(256 * b, 256), destination.Slice(144 * b, 144));
                }

                break;
            case GgmlType.Q6_K:
                for (var b = 0; b < source.Length / 256; b++)
                {
                    QuantizeBlockQ6_K(source.Slice(256 * b, 256), destination.Slice(210 * b, 210));
                }

                break;
            default:
                throw new NotSupportedException($"quantizing to {type} is not supported");
        }
    }

    /// <summary>Dequantizes <paramref name="source"/> (whole blocks) into <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckSizes(type, destination.Length, source.Length);
        switch (type)
        {
            case GgmlType.F32:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]);
                }

                break;
            case GgmlType.F16:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = FloatConversions.HalfBitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]));
                }

                break;
            case GgmlType.BF16:
                for (var i = 0; i < destination.Length; i++)
                {
                    destination[i] = FloatConversions.BFloat16BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]));
                }

                break;
            case GgmlType.Q8_0:
                for (var b = 0; b < destination.Length / 32; b++)
                {
                    var block = source.Slice(34 * b, 34);
                    var d = ReadHalf(block);
                    for (var j = 0; j < 32; j++)
                    {
                        destination[(32 * b) + j] = (sbyte)block[2 + j] * d;
                    }
                }

                break;
            case GgmlType.Q4_0:
                for (var b = 0; b < destination.Length / 32; b++)
                {
                    var block = source.Slice(18 * b, 18);
                    var d = ReadHalf(block);
                    var y = destination.Slice(32 * b, 32);
                    for (var j = 0; j < 16; j++)
                    {
                        y[j] = ((block[2 + j] & 0x0F) - 8) * d;
                        y[j + 16] = ((block[2 + j] >> 4) - 8) * d;
                    }
                }

                break;
            case GgmlType.Q5_0:
                for (var b = 0; b < destination.Length / 32; b++)
                {
                    var block = source.Slice(22 * b, 22);
                    var d = ReadHalf(block);
                    var qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
                    var y = destination.Slice(32 * b, 32);
                    for (var j = 0; j < 16; j++)
                    {
                        var x0 = (block[6 + j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
                        var x1 = (block[6 + j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
                        y[j] = (x0 - 16) * d;
                        y[j + 16] = (x1 - 16) * d;
                    }
                }

                break;
            case GgmlType.Q4_K:
                for (var b = 0; b < destination.Length / 256; b++)
                {
                    DequantizeBlockQ4_K(source.Slice(144 * b, 144), destination.Slice(256 * b, 256));
                }

                break;
            case GgmlType.Q6_K:
                for (var b = 0; b < destination.Length / 256; b++)
                {
                    DequantizeBlockQ6_K(source.Slice(210 * b, 210), destination.Slice(256 * b, 256));
                }

                break;
            default:
                throw new NotSupportedException($"dequantizing {type} is not supported");
        }
    }

    /// <summary>
    /// ggml's <c>nearest_int</c>: round half to even through the 1.5·2²³ trick, valid for |x| ≤ 4194303. Kept
    /// bit-for-bit because quantized bytes must match ggml's.
    /// </summary>
    internal static int NearestInt(float value)
    {
        var shifted = value + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007fffff) - 0x00400000;
    }

    /// <summary>The 6-bit scale and min of sub-block <paramref name="j"/> of a Q4_K block (ggml's <c>get_scale_min_k4</c>).</summary>
    internal static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> scales)
    {
        if (j < 4)
        {
            return (scales[j] & 63, scales[j + 4] & 63);
        }

        return ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }

    private static float ReadHalf(ReadOnlySpan<byte> bytes) =>
        FloatConversions.HalfBitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes));

    private static void WriteHalf(Span<byte> bytes, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, FloatConversions.SingleToHalfBits(value));

    private static void CheckSizes(GgmlType type, int values, int bytes)
    {
        if (!IsSupported(type))
        {
            throw new NotSupportedException($"{type} is not supported; supported: {SupportedTypeNames}");
        }

        var blockSize = GgmlTypes.BlockSize(type);
        if (values % blockSize != 0)
        {
            throw new ArgumentException($"{values} values is not a multiple of the {type} block size {blockSize}");
        }

        var expected = (long)values / blockSize * GgmlTypes.BlockBytes(type);
        if (bytes != expected)
        {
            throw new ArgumentException($"{values} {type} values take {expected} bytes, not {bytes}");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlockQ8_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        var amax = 0f;
        for (var j = 0; j < 32; j++)
        {
            amax = MathF.Max(amax, MathF.Abs(x[j]));
        }

        var d = amax / 127;
        var id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, d);
        for (var j = 0; j < 32; j++)
        {
            y[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlockQ4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        var amax = 0f;
        var max = 0f;
        for (var j = 0; j < 32; j++)
        {
            if (amax < MathF.Abs(x[j]))
            {
                amax = MathF.Abs(x[j]);
                max = x[j];
            }
        }

        var d = max / -8;
        var id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, d);
        for (var j = 0; j < 16; j++)
        {
            var x0 = x[j] * id;
            var x1 = x[16 + j] * id;

            // ggml truncates through (int8_t) after adding 8.5: round half up, then clamp to 15.
            var xi0 = Math.Min(15, (int)(sbyte)(x0 + 8.5f));
            var xi1 = Math.Min(15, (int)(sbyte)(x1 + 8.5f));
            y[2 + j] = (byte)(xi0 | (xi1 << 4));
        }
    }

    /// <summary>ggml's <c>quantize_row_q5_0_ref</c>: d = max/−16 (max the signed value of largest magnitude), 5-bit values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlockQ5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        var amax = 0f;
        var max = 0f;
        for (var j = 0; j < 32; j++)
        {
            if (amax < MathF.Abs(x[j]))
            {
                amax = MathF.Abs(x[j]);
                max = x[j];
            }
        }

        var d = max / -16;
        var id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, d);
        uint qh = 0;
        for (var j = 0; j < 16; j++)
        {
            var x0 = x[j] * id;
            var x1 = x[16 + j] * id;

            // ggml truncates through (int8_t) after adding 16.5: round half up, then clamp to 31.
            var xi0 = Math.Min(31, (int)(sbyte)(x0 + 16.5f));
            var xi1 = Math.Min(31, (int)(sbyte)(x1 + 16.5f));
            y[6 + j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= (uint)((xi0 & 0x10) >> 4) << j;
            qh |= (uint)((xi1 & 0x10) >> 4) << (j + 16);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y[2..], qh);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlockQ4_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> levels = stackalloc byte[256];
        Span<byte> aux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[8];
        Span<float> scales = stackalloc float[8];
        y.Clear();

        var maxScale = 0f;
        var maxMin = 0f;
        for (var j = 0; j < 8; j++)
        {
            var sub = x.Slice(32 * j, 32);
            var sumX2 = 0f;
            for (var l = 0; l < 32; l++)
            {
                sumX2 += sub[l] * sub[l];
            }

            var avX = MathF.Sqrt(sumX2 / 32);
            for (var l = 0; l < 32; l++)
            {
                weights[l] = avX + MathF.Abs(sub[l]);
            }

            scales[j] = MakeQkx2Quants(32, 15, sub, weights, levels.Slice(32 * j, 32), out mins[j], aux, -1f, 0.1f, 20, false);
            maxScale = Math.Max(maxScale, scales[j]);
            maxMin = Math.Max(maxMin, mins[j]);
        }

        var invScale = maxScale > 0 ? 63f / maxScale : 0f;
        var invMin = maxMin > 0 ? 63f / maxMin : 0f;
        var sc = y.Slice(4, 12);
        for (var j = 0; j < 8; j++)
        {
            var ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
            var lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                sc[j] = (byte)ls;
                sc[j + 4] = (byte)lm;
            }
            else
            {
                sc[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                sc[j - 4] |= (byte)((ls >> 4) << 6);
                sc[j] |= (byte)((lm >> 4) << 6);
            }
        }

        WriteHalf(y, maxScale / 63f);
        WriteHalf(y[2..], maxMin / 63f);
        var dAll = ReadHalf(y);
        var dminAll = ReadHalf(y[2..]);
        for (var j = 0; j < 8; j++)
        {
            var (s, m) = ScaleMinK4(j, sc);
            var d = dAll * s;
            if (d == 0)
            {
                continue;
            }

            var dm = dminAll * m;
            for (var ii = 0; ii < 32; ii++)
            {
                var l = NearestInt((x[(32 * j) + ii] + dm) / d);
                levels[(32 * j) + ii] = (byte)Math.Clamp(l, 0, 15);
            }
        }

        var q = y[16..];
        for (var j = 0; j < 256; j += 64)
        {
            for (var l = 0; l < 32; l++)
            {
                q[l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
            }

            q = q[32..];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> levels,
        out float theMin, Span<byte> aux, float rmin, float rdelta, int nstep, bool useMad)
    {
        var min = x[0];
        var max = x[0];
        var sumW = weights[0];
        var sumX = sumW * x[0];
        for (var i = 1; i < n; i++)
        {
            if (x[i] < min)
            {
                min = x[i];
            }

            if (x[i] > max)
            {
                max = x[i];
            }

            var w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }

        if (min > 0)
        {
            min = 0;
        }

        if (max == min)
        {
            levels[..n].Clear();
            theMin = -min;
            return 0f;
        }

        var iscale = nmax / (max - min);
        var scale = 1 / iscale;
        var bestError = 0f;
        for (var i = 0; i < n; i++)
        {
            var l = NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            var diff = (scale * levels[i]) + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }

        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }

        for (var step = 0; step <= nstep; step++)
        {
            iscale = (rmin + (rdelta * step) + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (var i = 0; i < n; i++)
            {
                var l = NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                aux[i] = (byte)l;
                var w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }

            var det = (sumW * sumL2) - (sumL * sumL);
            if (det > 0)
            {
                var thisScale = ((sumW * sumXL) - (sumX * sumL)) / det;
                var thisMin = ((sumL2 * sumX) - (sumL * sumXL)) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }

                var curError = 0f;
                for (var i = 0; i < n; i++)
                {
                    var diff = (thisScale * aux[i]) + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }

                if (curError < bestError)
                {
                    aux[..n].CopyTo(levels);
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }

        theMin = -min;
        return scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DequantizeBlockQ4_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = ReadHalf(block);
        var min = ReadHalf(block[2..]);
        var scales = block.Slice(4, 12);
        var q = block[16..];
        var o = 0;
        for (var j = 0; j < 8; j += 2)
        {
            var (s1, m1) = ScaleMinK4(j, scales);
            var (s2, m2) = ScaleMinK4(j + 1, scales);
            float d1 = d * s1, dm1 = min * m1, d2 = d * s2, dm2 = min * m2;
            for (var l = 0; l < 32; l++)
            {
                y[o + l] = (d1 * (q[l] & 0xF)) - dm1;
            }

            for (var l = 0; l < 32; l++)
            {
                y[o + 32 + l] = (d2 * (q[l] >> 4)) - dm2;
            }

            q = q[32..];
            o += 64;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeBlockQ6_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<sbyte> levels = stackalloc sbyte[256];
        Span<float> scales = stackalloc float[16];
        y.Clear();
        var maxScale = 0f;
        var maxAbsScale = 0f;
        for (var ib = 0; ib < 16; ib++)
        {
            var scale = MakeQxQuants(16, 32, x.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
            scales[ib] = scale;
            var abs = MathF.Abs(scale);
            if (abs > maxAbsScale)
            {
                maxAbsScale = abs;
                maxScale = scale;
            }
        }

        var ql = y[..128];
        var qh = y.Slice(128, 64);
        var sc = y.Slice(192, 16);
        if (maxAbsScale < 1e-15f)
        {
            // ggml stores an all-zero block (d = 0) for an all-zero group.
            return;
        }

        var iscale = -128f / maxScale;
        WriteHalf(y[208..], 1 / iscale);
        for (var ib = 0; ib < 16; ib++)
        {
            sc[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
        }

        var dAll = ReadHalf(y[208..]);
        for (var j = 0; j < 16; j++)
        {
            var d = dAll * (sbyte)sc[j];
            if (d == 0)
            {
                continue;
            }

            for (var ii = 0; ii < 16; ii++)
            {
                var l = NearestInt(x[(16 * j) + ii] / d);
                levels[(16 * j) + ii] = (sbyte)(Math.Clamp(l, -32, 31) + 32);
            }
        }

        for (var j = 0; j < 256; j += 128)
        {
            for (var l = 0; l < 32; l++)
            {
                var q1 = (byte)levels[j + l] & 0xF;
                var q2 = (byte)levels[j + l + 32] & 0xF;
                var q3 = (byte)levels[j + l + 64] & 0xF;
                var q4 = (byte)levels[j + l + 96] & 0xF;
                ql[l] = (byte)(q1 | (q3 << 4));
                ql[l + 32] = (byte)(q2 | (q4 << 4));
                qh[l] = (byte)((levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2) | ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6));
            }

            ql = ql[64..];
            qh = qh[32..];
        }
    }

    /// <summary>ggml's <c>make_qx_quants</c> with <c>rmse_type = 1</c> and no importance weights (the Q6_K path).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> levels)
    {
        var max = 0f;
        var amax = 0f;
        for (var i = 0; i < n; i++)
        {
            var ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }

        if (amax < 1e-15f)
        {
            levels[..n].Clear();
            return 0f;
        }

        var iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (var i = 0; i < n; i++)
        {
            var l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            levels[i] = (sbyte)(l + nmax);
            var w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }

        var scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        var best = scale * sumlx;
        for (var step = -9; step <= 9; step++)
        {
            if (step == 0)
            {
                continue;
            }

            iscale = -(nmax + (0.1f * step)) / max;
            sumlx = suml2 = 0;
            for (var i = 0; i < n; i++)
            {
                var l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                var w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }

            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (var i = 0; i < n; i++)
                {
                    var l = NearestInt(iscale * x[i]);
                    levels[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }

                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }

        return scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DequantizeBlockQ6_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = ReadHalf(block[208..]);
        var ql = block[..128];
        var qh = block.Slice(128, 64);
        var sc = block.Slice(192, 16);
        var o = 0;
        for (var n = 0; n < 256; n += 128)
        {
            for (var l = 0; l < 32; l++)
            {
                var @is = l / 16;
                var q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                var q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                var q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                var q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[o + l] = d * (sbyte)sc[@is] * q1;
                y[o + l + 32] = d * (sbyte)sc[@is + 2] * q2;
                y[o + l + 64] = d * (sbyte)sc[@is + 4] * q3;
                y[o + l + 96] = d * (sbyte)sc[@is + 6] * q4;
            }

            o += 128;
            ql = ql[64..];
            qh = qh[32..];
            sc = sc[8..];
        }
    }
}
