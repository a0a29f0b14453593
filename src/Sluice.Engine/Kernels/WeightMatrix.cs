using Sluice.Engine.Gguf;

namespace Sluice.Engine.Kernels;

/// <summary>
/// A 2-D weight tensor read in place from a GGUF mapping: <see cref="Rows"/> output rows of <see cref="Columns"/>
/// inputs each, in the file's block layout.
/// </summary>
internal sealed unsafe class WeightMatrix
{
    public WeightMatrix(string name, GgmlType type, int columns, int rows, byte* data)
    {
        if (!GgmlQuantization.IsSupported(type))
        {
            throw new NotSupportedException($"tensor '{name}' has type {type}; supported: {GgmlQuantization.SupportedTypeNames}");
        }

        if (columns % GgmlTypes.BlockSize(type) != 0)
        {
            throw new ArgumentException($"tensor '{name}': {columns} columns is not a multiple of the {type} block size");
        }

        Name = name;
        Type = type;
        Columns = columns;
        Rows = rows;
        Data = data;
        RowBytes = GgmlTypes.RowBytes(type, columns);
        ActivationKind = Activations.KindFor(type);

        // f16 infinities/NaN need the exact (slow) conversion; finite weights, the real case, take the fast one.
        HasNonFiniteValues = type == GgmlType.F16 && FloatConversions.HasNonFiniteHalves((ushort*)data, (long)rows * columns);
    }

    public string Name { get; }

    public GgmlType Type { get; }

    /// <summary>Inputs per row (ggml <c>ne[0]</c>).</summary>
    public int Columns { get; }

    /// <summary>Output rows (ggml <c>ne[1]</c>).</summary>
    public int Rows { get; }

    public byte* Data { get; }

    public long RowBytes { get; }

    public ActivationKind ActivationKind { get; }

    /// <summary>True for F16 weights holding infinities or NaN.</summary>
    public bool HasNonFiniteValues { get; }

    /// <summary>Total bytes of the weights.</summary>
    public long ByteSize => RowBytes * Rows;

    public byte* Row(int row) => Data + (row * RowBytes);

    /// <summary>Weight row <paramref name="row"/> as f32 (embedding lookups).</summary>
    public void DequantizeRow(int row, Span<float> destination) =>
        GgmlQuantization.Dequantize(Type, new ReadOnlySpan<byte>(Row(row), checked((int)RowBytes)), destination[..Columns]);
}
