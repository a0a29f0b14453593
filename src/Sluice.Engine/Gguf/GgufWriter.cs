using System.Buffers.Binary;
using System.Text;

namespace Sluice.Engine.Gguf;

/// <summary>
/// Writes GGUF v3 files: metadata in the order added, then tensor descriptions, then the tensor data, each
/// tensor aligned to <see cref="Alignment"/> (a non-default alignment is recorded as <c>general.alignment</c>).
/// Tensor data is either given as bytes or produced by a callback at write time, so large files need not be
/// held in memory.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    /// <summary>Creates a writer; <paramref name="alignment"/> must be a power of two.</summary>
    public GgufWriter(int alignment = GgufFile.DefaultAlignment)
    {
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(alignment), alignment, "alignment must be a power of two");
        }

        Alignment = alignment;
        if (alignment != GgufFile.DefaultAlignment)
        {
            Add(GgufFile.AlignmentKey, GgufValue.FromUInt32((uint)alignment));
        }
    }

    /// <summary>Alignment of the data section and of each tensor.</summary>
    public int Alignment { get; }

    /// <summary>Adds a metadata entry.</summary>
    /// <exception cref="ArgumentException">The key was already added (or is <c>general.alignment</c>, set by the constructor).</exception>
    public void Add(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (!_keys.Add(key))
        {
            throw new ArgumentException(key == GgufFile.AlignmentKey
                ? "general.alignment is set through the GgufWriter constructor"
                : $"metadata key '{key}' was already added", nameof(key));
        }

        _metadata.Add(new KeyValuePair<string, GgufValue>(key, value));
    }

    /// <summary>Adds a string entry.</summary>
    public void AddString(string key, string value) => Add(key, GgufValue.FromString(value));

    /// <summary>Adds a u32 entry.</summary>
    public void AddUInt32(string key, uint value) => Add(key, GgufValue.FromUInt32(value));

    /// <summary>Adds an i32 entry.</summary>
    public void AddInt32(string key, int value) => Add(key, GgufValue.FromInt32(value));

    /// <summary>Adds a u64 entry.</summary>
    public void AddUInt64(string key, ulong value) => Add(key, GgufValue.FromUInt64(value));

    /// <summary>Adds an f32 entry.</summary>
    public void AddSingle(string key, float value) => Add(key, GgufValue.FromFloat32(value));

    /// <summary>Adds a bool entry.</summary>
    public void AddBoolean(string key, bool value) => Add(key, GgufValue.FromBool(value));

    /// <summary>Adds an array entry (see <see cref="GgufValue.FromArray"/> for the accepted element types).</summary>
    public void AddArray(string key, Array elements) => Add(key, GgufValue.FromArray(elements));

    /// <summary>Adds a tensor whose data is given now (copied by reference: do not change it before writing).</summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="type">Element type.</param>
    /// <param name="dimensions">Shape in ggml order (<c>ne</c>; the first entry is the row length).</param>
    /// <param name="data">Exactly the tensor's bytes.</param>
    public void AddTensor(string name, GgmlType type, ReadOnlySpan<long> dimensions, ReadOnlyMemory<byte> data)
    {
        var size = ValidateTensor(name, type, dimensions);
        if (data.Length != size)
        {
            throw new ArgumentException($"tensor '{name}' ({type} [{string.Join(", ", dimensions.ToArray())}]) needs {size} bytes, got {data.Length}", nameof(data));
        }

        _tensorNames.Add(name);
        _tensors.Add(new PendingTensor(name, type, dimensions.ToArray(), size, data, null));
    }

    /// <summary>
    /// Adds a tensor whose data is produced when the file is written: <paramref name="writeData"/> must write exactly
    /// the tensor's byte size to the stream it receives.
    /// </summary>
    public void AddTensor(string name, GgmlType type, ReadOnlySpan<long> dimensions, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        var size = ValidateTensor(name, type, dimensions);
        _tensorNames.Add(name);
        _tensors.Add(new PendingTensor(name, type, dimensions.ToArray(), size, default, writeData));
    }

    /// <summary>Writes the file to <paramref name="path"/> (replacing it).</summary>
    public void WriteTo(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        WriteTo(stream);
    }

    /// <summary>Writes the file to <paramref name="stream"/> from its current position.</summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var counter = new CountingStream(stream);
        Span<byte> buffer = stackalloc byte[8];
        "GGUF"u8.CopyTo(buffer);
        counter.Write(buffer[..4]);
        WriteUInt32(counter, 3);
        WriteUInt64(counter, (ulong)_tensors.Count);
        WriteUInt64(counter, (ulong)_metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            WriteString(counter, key);
            WriteUInt32(counter, (uint)value.Type);
            WriteValue(counter, value);
        }

        long offset = 0;
        foreach (var tensor in _tensors)
        {
            WriteString(counter, tensor.Name);
            WriteUInt32(counter, (uint)tensor.Dimensions.Length);
            foreach (var d in tensor.Dimensions)
            {
                WriteUInt64(counter, (ulong)d);
            }

            WriteUInt32(counter, (uint)tensor.Type);
            WriteUInt64(counter, (ulong)offset);
            offset = AlignUp(offset + tensor.Size);
        }

        Pad(counter);
        foreach (var tensor in _tensors)
        {
            var before = counter.Written;
            if (tensor.Writer is null)
            {
                counter.Write(tensor.Data.Span);
            }
            else
            {
                tensor.Writer(counter);
            }

            if (counter.Written - before != tensor.Size)
            {
                throw new InvalidOperationException($"the data callback of tensor '{tensor.Name}' wrote {counter.Written - before} bytes; {tensor.Size} expected");
            }

            Pad(counter);
        }

        counter.Flush();
    }

    private long ValidateTensor(string name, GgmlType type, ReadOnlySpan<long> dimensions)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!GgmlTypes.IsKnown(type))
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type");
        }

        if (dimensions.Length is 0 or > 4)
        {
            throw new ArgumentException("a tensor has 1 to 4 dimensions", nameof(dimensions));
        }

        long elements = 1;
        foreach (var d in dimensions)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(dimensions));
            elements = checked(elements * d);
        }

        if (dimensions[0] % GgmlTypes.BlockSize(type) != 0)
        {
            throw new ArgumentException($"tensor '{name}': rows of {dimensions[0]} elements are not a multiple of the {type} block size {GgmlTypes.BlockSize(type)}", nameof(dimensions));
        }

        if (_tensorNames.Contains(name))
        {
            throw new ArgumentException($"tensor '{name}' was already added", nameof(name));
        }

        return elements / GgmlTypes.BlockSize(type) * GgmlTypes.BlockBytes(type);
    }

    private long AlignUp(long value) => (value + Alignment - 1) / Alignment * Alignment;

    private void Pad(CountingStream stream)
    {
        var padding = (int)(AlignUp(stream.Written) - stream.Written);
        Span<byte> zeros = stackalloc byte[padding];
        zeros.Clear();
        stream.Write(zeros);
    }

    private static void WriteValue(Stream stream, GgufValue value)
    {
        switch (value.Value)
        {
            case byte v: stream.WriteByte(v); break;
            case sbyte v: stream.WriteByte((byte)v); break;
            case ushort v: WriteUInt16(stream, v); break;
            case short v: WriteUInt16(stream, (ushort)v); break;
            case uint v: WriteUInt32(stream, v); break;
            case int v: WriteUInt32(stream, (uint)v); break;
            case float v: WriteUInt32(stream, BitConverter.SingleToUInt32Bits(v)); break;
            case ulong v: WriteUInt64(stream, v); break;
            case long v: WriteUInt64(stream, (ulong)v); break;
            case double v: WriteUInt64(stream, BitConverter.DoubleToUInt64Bits(v)); break;
            case bool v: stream.WriteByte(v ? (byte)1 : (byte)0); break;
            case string v: WriteString(stream, v); break;
            case Array array:
                WriteUInt32(stream, (uint)value.ElementType!.Value);
                WriteUInt64(stream, (ulong)array.Length);
                WriteArrayElements(stream, array);
                break;
            default:
                throw new InvalidOperationException($"cannot write a {value.Value.GetType()} value");
        }
    }

    private static void WriteArrayElements(Stream stream, Array array)
    {
        switch (array)
        {
            case byte[] a: stream.Write(a); break;
            case sbyte[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case ushort[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case short[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case uint[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case int[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case float[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case ulong[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case long[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case double[] a: stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan())); break;
            case bool[] a:
                foreach (var b in a)
                {
                    stream.WriteByte(b ? (byte)1 : (byte)0);
                }

                break;
            case string[] a:
                foreach (var s in a)
                {
                    WriteString(stream, s);
                }

                break;
            case GgufValue[] a:
                foreach (var nested in a)
                {
                    WriteValue(stream, nested);
                }

                break;
            default:
                throw new InvalidOperationException($"cannot write a {array.GetType()} array");
        }
    }

    private static void WriteString(Stream stream, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        WriteUInt64(stream, (ulong)bytes.Length);
        stream.Write(bytes);
    }

    private static void WriteUInt16(Stream stream, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        stream.Write(b);
    }

    private static void WriteUInt32(Stream stream, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        stream.Write(b);
    }

    private static void WriteUInt64(Stream stream, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        stream.Write(b);
    }

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Dimensions, long Size, ReadOnlyMemory<byte> Data, Action<Stream>? Writer);

    /// <summary>Forwards writes and counts bytes, so padding and callback sizes do not depend on the target being seekable.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Written { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => Written;

        public override long Position
        {
            get => Written;
            set => throw new NotSupportedException();
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            Written += count;
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            inner.Write(buffer);
            Written += buffer.Length;
        }

        public override void WriteByte(byte value)
        {
            inner.WriteByte(value);
            Written++;
        }
    }
}
