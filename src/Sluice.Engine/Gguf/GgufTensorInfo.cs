namespace Sluice.Engine.Gguf;

/// <summary>
/// A tensor described in a GGUF file. <see cref="Dimensions"/> is in ggml order: <c>Dimensions[0]</c> is the
/// contiguous (row) length, so a PyTorch <c>[out, in]</c> matrix is <c>[in, out]</c> here.
/// </summary>
public sealed class GgufTensorInfo
{
    private readonly long[] _dimensions;

    internal GgufTensorInfo(string name, GgmlType type, long[] dimensions, long offset, long byteSize)
    {
        Name = name;
        Type = type;
        _dimensions = dimensions;
        Offset = offset;
        ByteSize = byteSize;
    }

    /// <summary>The tensor's name, e.g. <c>blk.0.attn_q.weight</c>.</summary>
    public string Name { get; }

    /// <summary>The element type.</summary>
    public GgmlType Type { get; }

    /// <summary>The shape in ggml order (<c>ne</c>), 1 to 4 entries.</summary>
    public IReadOnlyList<long> Dimensions => _dimensions;

    /// <summary>Offset of the data from the start of the data section.</summary>
    public long Offset { get; }

    /// <summary>Size of the data in bytes.</summary>
    public long ByteSize { get; }

    /// <summary>Total number of elements.</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in _dimensions)
            {
                n *= d;
            }

            return n;
        }
    }

    /// <summary>Elements per row (<c>ne[0]</c>).</summary>
    public long RowLength => _dimensions[0];

    /// <summary>Number of rows: the product of every dimension after the first.</summary>
    public long RowCount
    {
        get
        {
            long n = 1;
            for (var i = 1; i < _dimensions.Length; i++)
            {
                n *= _dimensions[i];
            }

            return n;
        }
    }

    /// <summary>Bytes per row.</summary>
    public long RowBytes => GgmlTypes.RowBytes(Type, _dimensions[0]);

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Type} [{string.Join(", ", _dimensions)}]";
}
