using System.Runtime.CompilerServices;
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
            throw new NotSupportedException($"tensor '{name}' has type {type}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K");
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

    /// <summary>Total bytes of the weights.</summary>
    public long ByteSize => RowBytes * Rows;

    public byte* Row(int row) => Data + (row * RowBytes);

    /// <summary>Dot product of weight row <paramref name="row"/> with activation row <paramref name="xRow"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Dot(int row, Activations x, int xRow)
    {
        var w = Row(row);
        var n = Columns;
        return Type switch
        {
            GgmlType.F32 => VecDot.F32((float*)w, x.Values(xRow), n),
            GgmlType.F16 => VecDot.F16((ushort*)w, x.Values(xRow), n),
            GgmlType.BF16 => VecDot.BF16((ushort*)w, x.Values(xRow), n),
            GgmlType.Q8_0 => VecDot.Q8_0(w, x.Quants(xRow), x.Scales(xRow), n),
            GgmlType.Q4_0 => VecDot.Q4_0(w, x.Quants(xRow), x.Scales(xRow), n),
            GgmlType.Q4_K => VecDot.Q4_K(w, x.Quants(xRow), x.Scales(xRow), x.Sums(xRow), n),
            GgmlType.Q6_K => VecDot.Q6_K(w, x.Quants(xRow), x.Scales(xRow), x.Sums(xRow), n),
            _ => throw new NotSupportedException(Type.ToString()),
        };
    }

    /// <summary>Weight row <paramref name="row"/> as f32 (embedding lookups).</summary>
    public void DequantizeRow(int row, Span<float> destination) =>
        GgmlQuantization.Dequantize(Type, new ReadOnlySpan<byte>(Row(row), checked((int)RowBytes)), destination[..Columns]);
}
