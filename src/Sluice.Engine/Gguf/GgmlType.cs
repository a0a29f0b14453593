namespace Sluice.Engine.Gguf;

/// <summary>
/// ggml tensor types, with the numeric ids ggml and GGUF files use. Ids not listed here were removed from
/// ggml (4, 5, 31–33, 36–38) and are refused when a file uses them.
/// </summary>
public enum GgmlType
{
    /// <summary>32-bit IEEE float.</summary>
    F32 = 0,
    /// <summary>16-bit IEEE half float.</summary>
    F16 = 1,
    /// <summary>Blocks of 32: f16 scale and 32 four-bit values (offset 8).</summary>
    Q4_0 = 2,
    /// <summary>Blocks of 32: f16 scale, f16 min, 32 four-bit values.</summary>
    Q4_1 = 3,
    /// <summary>Blocks of 32: f16 scale and 32 five-bit values.</summary>
    Q5_0 = 6,
    /// <summary>Blocks of 32: f16 scale, f16 min, 32 five-bit values.</summary>
    Q5_1 = 7,
    /// <summary>Blocks of 32: f16 scale and 32 signed bytes.</summary>
    Q8_0 = 8,
    /// <summary>Blocks of 32: f16 scale, f16 sum, 32 signed bytes (activations only).</summary>
    Q8_1 = 9,
    /// <summary>Super-blocks of 256, 2-bit.</summary>
    Q2_K = 10,
    /// <summary>Super-blocks of 256, 3-bit.</summary>
    Q3_K = 11,
    /// <summary>Super-blocks of 256: f16 scale and min, 8 sub-blocks of 32 with 6-bit scales and mins, 4-bit values.</summary>
    Q4_K = 12,
    /// <summary>Super-blocks of 256, 5-bit.</summary>
    Q5_K = 13,
    /// <summary>Super-blocks of 256: 16 sub-blocks of 16 with 8-bit scales, 6-bit values, f16 scale.</summary>
    Q6_K = 14,
    /// <summary>Super-blocks of 256: f32 scale, 256 signed bytes, 16 partial sums (activations only).</summary>
    Q8_K = 15,
    /// <summary>Importance-matrix 2-bit type.</summary>
    IQ2_XXS = 16,
    /// <summary>Importance-matrix 2-bit type.</summary>
    IQ2_XS = 17,
    /// <summary>Importance-matrix 3-bit type.</summary>
    IQ3_XXS = 18,
    /// <summary>Importance-matrix 1-bit type.</summary>
    IQ1_S = 19,
    /// <summary>Non-linear 4-bit type, blocks of 32.</summary>
    IQ4_NL = 20,
    /// <summary>Importance-matrix 3-bit type.</summary>
    IQ3_S = 21,
    /// <summary>Importance-matrix 2-bit type.</summary>
    IQ2_S = 22,
    /// <summary>Non-linear 4-bit type, super-blocks of 256.</summary>
    IQ4_XS = 23,
    /// <summary>8-bit integer.</summary>
    I8 = 24,
    /// <summary>16-bit integer.</summary>
    I16 = 25,
    /// <summary>32-bit integer.</summary>
    I32 = 26,
    /// <summary>64-bit integer.</summary>
    I64 = 27,
    /// <summary>64-bit IEEE float.</summary>
    F64 = 28,
    /// <summary>Importance-matrix 1-bit type.</summary>
    IQ1_M = 29,
    /// <summary>bfloat16: the upper 16 bits of an f32.</summary>
    BF16 = 30,
    /// <summary>Ternary type, 1.69 bits per weight.</summary>
    TQ1_0 = 34,
    /// <summary>Ternary type, 2.06 bits per weight.</summary>
    TQ2_0 = 35,
    /// <summary>Microscaling FP4, blocks of 32.</summary>
    MXFP4 = 39,
    /// <summary>NVIDIA FP4, blocks of 64.</summary>
    NVFP4 = 40,
    /// <summary>1-bit type, blocks of 128.</summary>
    Q1_0 = 41,
    /// <summary>2-bit type, blocks of 64.</summary>
    Q2_0 = 42,
}

/// <summary>Block geometry of the <see cref="GgmlType"/> values (ggml's <c>blck_size</c> and <c>type_size</c>).</summary>
public static class GgmlTypes
{
    /// <summary>Elements per super-block of the K-quant types.</summary>
    public const int QK_K = 256;

    /// <summary>True when <paramref name="type"/> is a ggml type this library knows the layout of.</summary>
    public static bool IsKnown(GgmlType type) => BlockBytesOrZero(type) != 0;

    /// <summary>Elements per block (1 for plain scalar types).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The type id is not a known ggml type.</exception>
    public static int BlockSize(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64
            or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
            or GgmlType.IQ4_NL or GgmlType.MXFP4 => 32,
        GgmlType.NVFP4 or GgmlType.Q2_0 => 64,
        GgmlType.Q1_0 => 128,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K
            or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ3_XXS or GgmlType.IQ1_S or GgmlType.IQ3_S
            or GgmlType.IQ2_S or GgmlType.IQ4_XS or GgmlType.IQ1_M or GgmlType.TQ1_0 or GgmlType.TQ2_0 => QK_K,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    /// <summary>Bytes per block.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The type id is not a known ggml type.</exception>
    public static int BlockBytes(GgmlType type)
    {
        var bytes = BlockBytesOrZero(type);
        return bytes != 0 ? bytes : throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type");
    }

    /// <summary>Bytes taken by <paramref name="elements"/> values, which must be a whole number of blocks.</summary>
    /// <exception cref="ArgumentException"><paramref name="elements"/> is not a multiple of the block size.</exception>
    public static long RowBytes(GgmlType type, long elements)
    {
        var block = BlockSize(type);
        if (elements < 0 || elements % block != 0)
        {
            throw new ArgumentException($"{elements} elements is not a multiple of the {type} block size {block}.", nameof(elements));
        }

        return elements / block * BlockBytes(type);
    }

    private static int BlockBytesOrZero(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 => 2,
        GgmlType.BF16 => 2,
        GgmlType.F64 => 8,
        GgmlType.I8 => 1,
        GgmlType.I16 => 2,
        GgmlType.I32 => 4,
        GgmlType.I64 => 8,
        GgmlType.Q4_0 => 18,
        GgmlType.Q4_1 => 20,
        GgmlType.Q5_0 => 22,
        GgmlType.Q5_1 => 24,
        GgmlType.Q8_0 => 34,
        GgmlType.Q8_1 => 36,
        GgmlType.Q2_K => 84,
        GgmlType.Q3_K => 110,
        GgmlType.Q4_K => 144,
        GgmlType.Q5_K => 176,
        GgmlType.Q6_K => 210,
        GgmlType.Q8_K => 292,
        GgmlType.IQ2_XXS => 66,
        GgmlType.IQ2_XS => 74,
        GgmlType.IQ3_XXS => 98,
        GgmlType.IQ1_S => 50,
        GgmlType.IQ4_NL => 18,
        GgmlType.IQ3_S => 110,
        GgmlType.IQ2_S => 82,
        GgmlType.IQ4_XS => 136,
        GgmlType.IQ1_M => 56,
        GgmlType.TQ1_0 => 54,
        GgmlType.TQ2_0 => 66,
        GgmlType.MXFP4 => 17,
        GgmlType.NVFP4 => 36,
        GgmlType.Q1_0 => 18,
        GgmlType.Q2_0 => 18,
        _ => 0,
    };
}
