using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>The format activations are converted to before a product with weights of a given type.</summary>
internal enum ActivationKind
{
    /// <summary>Plain f32 (F32 weights).</summary>
    F32,

    /// <summary>f32 values rounded to f16 (F16 weights).</summary>
    F16,

    /// <summary>f32 values rounded to bf16 (BF16 weights).</summary>
    BF16,

    /// <summary>Q8_0 blocks of 32: f16 scale, 32 int8 (Q8_0 and Q4_0 weights).</summary>
    Q8_0,

    /// <summary>Q8_K blocks of 256: f32 scale, 256 int8, 16 sums of 16 (K-quant weights).</summary>
    Q8_K,
}

/// <summary>
/// A batch of activation rows converted for products with one weight type, stored structure-of-arrays in pinned
/// buffers (values, or quants + scales + block sums) so kernels read them through pointers. Reused across layers.
/// </summary>
internal sealed unsafe class Activations
{
    private float[] _values = [];
    private sbyte[] _quants = [];
    private float[] _scales = [];
    private short[] _sums = [];

    public ActivationKind Kind { get; private set; }

    public int Rows { get; private set; }

    public int Length { get; private set; }

    /// <summary>The activation format weights of <paramref name="type"/> are multiplied with.</summary>
    public static ActivationKind KindFor(GgmlType type) => type switch
    {
        GgmlType.F32 => ActivationKind.F32,
        GgmlType.F16 => ActivationKind.F16,
        GgmlType.BF16 => ActivationKind.BF16,
        GgmlType.Q8_0 or GgmlType.Q4_0 => ActivationKind.Q8_0,
        GgmlType.Q4_K or GgmlType.Q6_K => ActivationKind.Q8_K,
        _ => throw new NotSupportedException($"no kernels for {type} weights"),
    };

    public float* Values(int row) => Pointer(_values) + ((long)row * Length);

    public sbyte* Quants(int row) => Pointer(_quants) + ((long)row * Length);

    public float* Scales(int row) => Pointer(_scales) + ((long)row * Length / (Kind == ActivationKind.Q8_K ? 256 : 32));

    public short* Sums(int row) => Pointer(_sums) + ((long)row * Length / 16);

    /// <summary>Converts <paramref name="rows"/> rows of <paramref name="length"/> values (row stride <paramref name="stride"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Load(ActivationKind kind, float* source, int rows, int length, int stride)
    {
        Kind = kind;
        Rows = rows;
        Length = length;
        var total = (long)rows * length;
        switch (kind)
        {
            case ActivationKind.F32:
            case ActivationKind.F16:
            case ActivationKind.BF16:
                Ensure(ref _values, total);
                for (var r = 0; r < rows; r++)
                {
                    var src = source + ((long)r * stride);
                    var dst = Values(r);
                    if (kind == ActivationKind.F32)
                    {
                        new ReadOnlySpan<float>(src, length).CopyTo(new Span<float>(dst, length));
                    }
                    else if (kind == ActivationKind.F16)
                    {
                        for (var i = 0; i < length; i++)
                        {
                            dst[i] = FloatConversions.RoundToHalf(src[i]);
                        }
                    }
                    else
                    {
                        for (var i = 0; i < length; i++)
                        {
                            dst[i] = FloatConversions.RoundToBFloat16(src[i]);
                        }
                    }
                }

                break;
            case ActivationKind.Q8_0:
                CheckMultiple(length, 32);
                Ensure(ref _quants, total);
                Ensure(ref _scales, total / 32);
                for (var r = 0; r < rows; r++)
                {
                    QuantizeQ8_0(source + ((long)r * stride), Quants(r), Scales(r), length);
                }

                break;
            case ActivationKind.Q8_K:
                CheckMultiple(length, 256);
                Ensure(ref _quants, total);
                Ensure(ref _scales, total / 256);
                Ensure(ref _sums, total / 16);
                for (var r = 0; r < rows; r++)
                {
                    QuantizeQ8_K(source + ((long)r * stride), Quants(r), Scales(r), Sums(r), length);
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    /// <summary>
    /// Q8_0 as ggml's x86 <c>quantize_row_q8_0</c> does it for activations: scale max|x|/127 stored as f16,
    /// values round-half-even of x·127/max|x|.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_0(float* x, sbyte* q, float* d, int length)
    {
        for (var b = 0; b < length / 32; b++)
        {
            var block = x + (32 * b);
            var amax = 0f;
            for (var j = 0; j < 32; j++)
            {
                amax = MathF.Max(amax, MathF.Abs(block[j]));
            }

            d[b] = FloatConversions.RoundToHalf(amax / 127f);
            var id = amax != 0 ? 127f / amax : 0f;
            var qb = q + (32 * b);
            for (var j = 0; j < 32; j++)
            {
                qb[j] = (sbyte)Math.Clamp((int)MathF.Round(block[j] * id, MidpointRounding.ToEven), -128, 127);
            }
        }
    }

    /// <summary>ggml's <c>quantize_row_q8_K_ref</c>: scale from the signed value of largest magnitude, 16 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_K(float* x, sbyte* q, float* d, short* sums, int length)
    {
        for (var b = 0; b < length / 256; b++)
        {
            var block = x + (256 * b);
            var qb = q + (256 * b);
            var max = 0f;
            var amax = 0f;
            for (var j = 0; j < 256; j++)
            {
                var ax = MathF.Abs(block[j]);
                if (ax > amax)
                {
                    amax = ax;
                    max = block[j];
                }
            }

            if (amax == 0)
            {
                d[b] = 0;
                new Span<sbyte>(qb, 256).Clear();
                new Span<short>(sums + (16 * b), 16).Clear();
                continue;
            }

            var iscale = -127f / max;
            for (var j = 0; j < 256; j++)
            {
                qb[j] = (sbyte)Math.Min(127, GgmlQuantization.NearestInt(iscale * block[j]));
            }

            for (var j = 0; j < 16; j++)
            {
                var sum = 0;
                for (var i = 0; i < 16; i++)
                {
                    sum += qb[(16 * j) + i];
                }

                sums[(16 * b) + j] = (short)sum;
            }

            d[b] = 1 / iscale;
        }
    }

    private static void CheckMultiple(int length, int block)
    {
        if (length % block != 0)
        {
            throw new ArgumentException($"activation rows of {length} values are not a multiple of {block}");
        }
    }

    private static void Ensure<T>(ref T[] buffer, long length)
        where T : unmanaged
    {
        if (buffer.Length < length)
        {
            buffer = GC.AllocateUninitializedArray<T>(checked((int)length), pinned: true);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T* Pointer<T>(T[] array)
        where T : unmanaged =>
        (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
}
