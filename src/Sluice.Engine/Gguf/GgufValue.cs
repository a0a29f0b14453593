using System.Globalization;

namespace Sluice.Engine.Gguf;

/// <summary>
/// One GGUF metadata value. Scalars keep their exact type; arrays are typed .NET arrays (<c>string[]</c>,
/// <c>float[]</c>, <c>int[]</c>, …; arrays of arrays are <c>GgufValue[]</c>).
/// </summary>
public sealed class GgufValue
{
    private GgufValue(GgufValueType type, GgufValueType? elementType, object value)
    {
        Type = type;
        ElementType = elementType;
        Value = value;
    }

    /// <summary>The value's type.</summary>
    public GgufValueType Type { get; }

    /// <summary>For arrays, the element type; otherwise null.</summary>
    public GgufValueType? ElementType { get; }

    /// <summary>
    /// The value: <c>byte</c>, <c>sbyte</c>, <c>ushort</c>, <c>short</c>, <c>uint</c>, <c>int</c>, <c>float</c>,
    /// <c>bool</c>, <c>string</c>, <c>ulong</c>, <c>long</c>, <c>double</c>, or an array of one of these.
    /// </summary>
    public object Value { get; }

    /// <summary>Number of elements of an array value (0 for scalars).</summary>
    public int ArrayLength => Value is Array a && Type == GgufValueType.Array ? a.Length : 0;

    /// <summary>A string value.</summary>
    public static GgufValue FromString(string value) => new(GgufValueType.String, null, value ?? throw new ArgumentNullException(nameof(value)));

    /// <summary>A u8 value.</summary>
    public static GgufValue FromUInt8(byte value) => new(GgufValueType.UInt8, null, value);

    /// <summary>An i8 value.</summary>
    public static GgufValue FromInt8(sbyte value) => new(GgufValueType.Int8, null, value);

    /// <summary>A u16 value.</summary>
    public static GgufValue FromUInt16(ushort value) => new(GgufValueType.UInt16, null, value);

    /// <summary>An i16 value.</summary>
    public static GgufValue FromInt16(short value) => new(GgufValueType.Int16, null, value);

    /// <summary>A u32 value.</summary>
    public static GgufValue FromUInt32(uint value) => new(GgufValueType.UInt32, null, value);

    /// <summary>An i32 value.</summary>
    public static GgufValue FromInt32(int value) => new(GgufValueType.Int32, null, value);

    /// <summary>A u64 value.</summary>
    public static GgufValue FromUInt64(ulong value) => new(GgufValueType.UInt64, null, value);

    /// <summary>An i64 value.</summary>
    public static GgufValue FromInt64(long value) => new(GgufValueType.Int64, null, value);

    /// <summary>An f32 value.</summary>
    public static GgufValue FromFloat32(float value) => new(GgufValueType.Float32, null, value);

    /// <summary>An f64 value.</summary>
    public static GgufValue FromFloat64(double value) => new(GgufValueType.Float64, null, value);

    /// <summary>A bool value.</summary>
    public static GgufValue FromBool(bool value) => new(GgufValueType.Bool, null, value);

    /// <summary>
    /// An array value. <paramref name="elements"/> must be an array of one of the scalar .NET types listed on
    /// <see cref="Value"/>, or of <see cref="GgufValue"/> arrays (nested arrays).
    /// </summary>
    public static GgufValue FromArray(Array elements)
    {
        ArgumentNullException.ThrowIfNull(elements);
        // Match exact array types: the CLR lets int[] pass as uint[] (and byte[]/sbyte[], …), so 'is' patterns would mislabel them.
        var arrayType = elements.GetType();
        var elementType =
            arrayType == typeof(byte[]) ? GgufValueType.UInt8 :
            arrayType == typeof(sbyte[]) ? GgufValueType.Int8 :
            arrayType == typeof(ushort[]) ? GgufValueType.UInt16 :
            arrayType == typeof(short[]) ? GgufValueType.Int16 :
            arrayType == typeof(uint[]) ? GgufValueType.UInt32 :
            arrayType == typeof(int[]) ? GgufValueType.Int32 :
            arrayType == typeof(float[]) ? GgufValueType.Float32 :
            arrayType == typeof(bool[]) ? GgufValueType.Bool :
            arrayType == typeof(string[]) ? GgufValueType.String :
            arrayType == typeof(ulong[]) ? GgufValueType.UInt64 :
            arrayType == typeof(long[]) ? GgufValueType.Int64 :
            arrayType == typeof(double[]) ? GgufValueType.Float64 :
            arrayType == typeof(GgufValue[]) && Array.TrueForAll((GgufValue[])elements, v => v is { Type: GgufValueType.Array }) ? GgufValueType.Array :
            throw new ArgumentException($"{arrayType} is not a GGUF array type.", nameof(elements));
        if (elements is string[] strings && Array.Exists(strings, s => s is null))
        {
            throw new ArgumentException("A GGUF string array cannot hold null.", nameof(elements));
        }

        return new GgufValue(GgufValueType.Array, elementType, elements);
    }

    /// <summary>Short human-readable form (arrays show their type and length).</summary>
    public override string ToString() => Value switch
    {
        string s => s,
        Array a => $"[{ElementType} × {a.Length}]",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => Value.ToString() ?? string.Empty,
    };
}
