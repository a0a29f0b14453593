using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;

namespace Sluice.Engine.Gguf;

/// <summary>
/// A GGUF file (version 2 or 3, little-endian) opened read-only: memory-mapped by <see cref="Open"/>, or read whole
/// into process memory by <see cref="OpenInMemory"/>. The header, metadata and tensor descriptions are parsed when it
/// opens; tensor data is handed out as spans over the mapping (or the memory), never copied again. Spans and pointers
/// obtained from the file are valid until it is disposed.
/// </summary>
public sealed unsafe partial class GgufFile : IDisposable
{
    /// <summary>The alignment of tensor data when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;

    /// <summary>The metadata key that overrides the data alignment.</summary>
    public const string AlignmentKey = "general.alignment";

    private const uint Magic = 0x46554747; // "GGUF" read as a little-endian u32
    private const int MaxDimensions = 4;

    // Huge pages for the in-memory copy: weights are streamed whole every token, and 2 MiB pages take ~500× fewer
    // TLB entries than 4 KiB ones. Also the alignment of the copy.
    private const int HugePageBytes = 2 << 20;
    private const int ReadChunkBytes = 64 << 20;
    private const int MadvHugePage = 14; // MADV_HUGEPAGE, Linux

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly bool _ownsMemory;
    private readonly Dictionary<string, GgufValue> _metadata;
    private readonly Dictionary<string, GgufTensorInfo> _tensorsByName;
    private byte* _base;
    private int _disposed;

    private GgufFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePointer)
    {
        FilePath = path;
        FileLength = length;
        _map = map;
        _view = view;
        _ownsMemory = map is null;
        _base = basePointer;
        _metadata = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        _tensorsByName = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        MetadataKeys = [];
        Tensors = [];
    }

    /// <summary>Full path of the file.</summary>
    public string FilePath { get; }

    /// <summary>Size of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>True when the file was read into process memory (<see cref="OpenInMemory"/>), false when it is mapped.</summary>
    public bool IsInMemory => _ownsMemory;

    /// <summary>GGUF format version (2 or 3; both have the same layout).</summary>
    public uint Version { get; private set; }

    /// <summary>Alignment of the data section and of every tensor in it.</summary>
    public int Alignment { get; private set; } = DefaultAlignment;

    /// <summary>File offset where the data section starts.</summary>
    public long DataOffset { get; private set; }

    /// <summary>Every metadata entry by key.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata => _metadata;

    /// <summary>Metadata keys in file order.</summary>
    public IReadOnlyList<string> MetadataKeys { get; private set; }

    /// <summary>Tensor descriptions in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; private set; }

    /// <summary>
    /// Opens and parses <paramref name="path"/>. Throws <see cref="GgufFormatException"/> (message starting with the
    /// path) for a file that is not GGUF, is truncated, has an unsupported version, an unknown tensor type, a
    /// malformed value, or tensor data outside the file.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static GgufFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            // Values and tensor data are read in place, in the file's little-endian byte order.
            throw new PlatformNotSupportedException("GGUF files are read in place and need a little-endian machine");
        }

        var fullPath = Path.GetFullPath(path);
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        GgufFile? file = null;
        try
        {
            var length = CheckHead(stream, fullPath);
            stream.Position = 0;
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            pointer += view.PointerOffset;

            // Pages the file has not yet put in the page cache are then read in 2 MiB folios and mapped with one TLB
            // entry each (Linux 6.x, file systems with large folios such as ext4 and XFS), which the quantized kernels'
            // 8 rows read side by side need far fewer of; pages already cached stay as they are.
            AdviseHugePages(pointer, length);
            file = new GgufFile(fullPath, length, map, view, pointer);
            file.Parse();
            return file;
        }
        catch
        {
            if (file is not null)
            {
                file.Dispose();
            }
            else
            {
                view?.Dispose();
                map?.Dispose();
                stream.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Like <see cref="Open"/>, but reads the whole file into process memory (2 MiB-aligned; huge pages asked for on
    /// Linux) instead of mapping it, as llama.cpp's <c>--no-mmap</c>. Costs the file's size in resident memory that
    /// the system cannot page back to the file, and a read at open; in return the weights do not depend on the page
    /// cache staying mapped — on some virtual machines reads through a file mapping run at a fraction of memory
    /// speed (docs/engine.md, "Memory-mapped or in memory").
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="progress">Called after each chunk read with (bytes read, file length).</param>
    /// <param name="cancellationToken">Stops the read; the memory is freed.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="OutOfMemoryException">The file does not fit in memory.</exception>
    public static GgufFile OpenInMemory(string path, Action<long, long>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("GGUF files are read in place and need a little-endian machine");
        }

        var fullPath = Path.GetFullPath(path);
        byte* memory = null;
        GgufFile? file = null;
        try
        {
            long length;
            using (var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.SequentialScan))
            {
                length = CheckHead(stream, fullPath);
                memory = (byte*)NativeMemory.AlignedAlloc((nuint)length, HugePageBytes);
                AdviseHugePages(memory, length);

                long done = 0;
                while (done < length)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var chunk = (int)Math.Min(ReadChunkBytes, length - done);
                    var read = RandomAccess.Read(stream.SafeFileHandle, new Span<byte>(memory + done, chunk), done);
                    if (read <= 0)
                    {
                        throw new GgufFormatException(fullPath, $"the file ended at {done} bytes while reading {length}; was it changed while loading?");
                    }

                    done += read;
                    progress?.Invoke(done, length);
                }
            }

            file = new GgufFile(fullPath, length, null, null, memory);
            file.Parse();
            return file;
        }
        catch
        {
            if (file is not null)
            {
                file.Dispose();
            }
            else if (memory != null)
            {
                NativeMemory.AlignedFree(memory);
            }

            throw;
        }
    }

    /// <summary>
    /// Asks Linux for transparent huge pages on the copy or the mapping. Advice only: without them (switched off, another
    /// system, a file system without large folios, a C library that cannot be loaded) normal pages work the same.
    /// </summary>
    private static void AdviseHugePages(byte* memory, long length)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = Madvise(memory, (nuint)length, MadvHugePage);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // Normal pages, then.
        }
    }

    /// <summary>Checks the magic and the minimal length; returns the file's length.</summary>
    private static long CheckHead(FileStream stream, string fullPath)
    {
        var length = stream.Length;
        Span<byte> head = stackalloc byte[4];
        var headLength = stream.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (!"GGUF"u8.StartsWith(head[..headLength]) || headLength == 0)
        {
            throw new GgufFormatException(fullPath, headLength == 0
                ? "not a GGUF file: the file is empty"
                : $"not a GGUF file: it starts with {Convert.ToHexString(head[..headLength])}, expected 47475546 (\"GGUF\")");
        }

        if (length < 24)
        {
            throw new GgufFormatException(fullPath, $"truncated: the file is {length} bytes, shorter than the 24-byte GGUF header");
        }

        return length;
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    /// <summary>True when the file has a tensor called <paramref name="name"/>.</summary>
    public bool TryGetTensor(string name, out GgufTensorInfo tensor) =>
        _tensorsByName.TryGetValue(name, out tensor!);

    /// <summary>The tensor called <paramref name="name"/>.</summary>
    /// <exception cref="GgufFormatException">The file has no such tensor.</exception>
    public GgufTensorInfo GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var tensor)
            ? tensor
            : throw new GgufFormatException(FilePath, $"tensor '{name}' is missing");

    /// <summary>
    /// The data of <paramref name="tensor"/> as a span over the mapping. Tensors over 2 GiB do not fit a span:
    /// read them with <see cref="GetTensorRows"/>.
    /// </summary>
    public ReadOnlySpan<byte> GetTensorData(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.ByteSize > int.MaxValue)
        {
            throw new InvalidOperationException($"{FilePath}: tensor '{tensor.Name}' is {tensor.ByteSize} bytes, too large for one span; use GetTensorRows.");
        }

        return new ReadOnlySpan<byte>(GetTensorPointer(tensor), (int)tensor.ByteSize);
    }

    /// <summary>The data of <paramref name="rowCount"/> rows of <paramref name="tensor"/> from <paramref name="firstRow"/>.</summary>
    public ReadOnlySpan<byte> GetTensorRows(GgufTensorInfo tensor, long firstRow, int rowCount)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentOutOfRangeException.ThrowIfNegative(firstRow);
        ArgumentOutOfRangeException.ThrowIfNegative(rowCount);
        if (firstRow + rowCount > tensor.RowCount)
        {
            throw new ArgumentOutOfRangeException(nameof(rowCount), $"rows {firstRow}..{firstRow + rowCount} are outside the {tensor.RowCount} rows of '{tensor.Name}'.");
        }

        var rowBytes = tensor.RowBytes;
        var bytes = checked(rowBytes * rowCount);
        if (bytes > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(rowCount), "too many rows for one span");
        }

        return new ReadOnlySpan<byte>(GetTensorPointer(tensor) + (firstRow * rowBytes), (int)bytes);
    }

    /// <summary>Pointer to the first byte of the tensor's data in the mapping.</summary>
    internal byte* GetTensorPointer(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (!_tensorsByName.TryGetValue(tensor.Name, out var own) || !ReferenceEquals(own, tensor))
        {
            throw new ArgumentException($"tensor '{tensor.Name}' does not belong to {FilePath}", nameof(tensor));
        }

        return _base + DataOffset + tensor.Offset;
    }

    /// <summary>True when the metadata has <paramref name="key"/>.</summary>
    public bool ContainsKey(string key) => _metadata.ContainsKey(key);

    /// <summary>The metadata value of <paramref name="key"/>, if present.</summary>
    public bool TryGetValue(string key, out GgufValue value) => _metadata.TryGetValue(key, out value!);

    /// <summary>The metadata value of <paramref name="key"/>.</summary>
    /// <exception cref="GgufFormatException">The key is missing.</exception>
    public GgufValue GetValue(string key) =>
        _metadata.TryGetValue(key, out var value) ? value : throw Missing(key);

    /// <summary>A string value.</summary>
    /// <exception cref="GgufFormatException">The key is missing or not a string.</exception>
    public string GetString(string key) => AsString(key, GetValue(key));

    /// <summary>A string value, or <paramref name="defaultValue"/> when the key is absent.</summary>
    /// <exception cref="GgufFormatException">The key is present but not a string.</exception>
    public string GetString(string key, string defaultValue) =>
        _metadata.TryGetValue(key, out var value) ? AsString(key, value) : defaultValue;

    /// <summary>An unsigned 32-bit value; any integer type whose value fits is accepted.</summary>
    /// <exception cref="GgufFormatException">The key is missing, not an integer, or out of range.</exception>
    public uint GetUInt32(string key) => (uint)AsInteger(key, GetValue(key), 0, uint.MaxValue);

    /// <summary>An unsigned 32-bit value, or <paramref name="defaultValue"/> when the key is absent.</summary>
    public uint GetUInt32(string key, uint defaultValue) =>
        _metadata.TryGetValue(key, out var value) ? (uint)AsInteger(key, value, 0, uint.MaxValue) : defaultValue;

    /// <summary>A signed 32-bit value; any integer type whose value fits is accepted.</summary>
    public int GetInt32(string key) => (int)AsInteger(key, GetValue(key), int.MinValue, int.MaxValue);

    /// <summary>A signed 32-bit value, or <paramref name="defaultValue"/> when the key is absent.</summary>
    public int GetInt32(string key, int defaultValue) =>
        _metadata.TryGetValue(key, out var value) ? (int)AsInteger(key, value, int.MinValue, int.MaxValue) : defaultValue;

    /// <summary>An unsigned 64-bit value; any non-negative integer is accepted.</summary>
    public ulong GetUInt64(string key)
    {
        var value = GetValue(key);
        return value.Value is ulong u ? u : (ulong)AsInteger(key, value, 0, long.MaxValue);
    }

    /// <summary>An unsigned 64-bit value, or <paramref name="defaultValue"/> when the key is absent.</summary>
    public ulong GetUInt64(string key, ulong defaultValue) => ContainsKey(key) ? GetUInt64(key) : defaultValue;

    /// <summary>A 32-bit float; f64 values are converted.</summary>
    public float GetSingle(string key) => AsSingle(key, GetValue(key));

    /// <summary>A 32-bit float, or <paramref name="defaultValue"/> when the key is absent.</summary>
    public float GetSingle(string key, float defaultValue) =>
        _metadata.TryGetValue(key, out var value) ? AsSingle(key, value) : defaultValue;

    /// <summary>A boolean value.</summary>
    public bool GetBoolean(string key) =>
        GetValue(key).Value is bool b ? b : throw WrongType(key, GetValue(key), "bool");

    /// <summary>A boolean value, or <paramref name="defaultValue"/> when the key is absent.</summary>
    public bool GetBoolean(string key, bool defaultValue) => ContainsKey(key) ? GetBoolean(key) : defaultValue;

    /// <summary>A copy of a string array.</summary>
    public string[] GetStringArray(string key) =>
        GetValue(key).Value is string[] a ? (string[])a.Clone() : throw WrongType(key, GetValue(key), "string array");

    /// <summary>A copy of an f32 array (f64 arrays are converted).</summary>
    public float[] GetSingleArray(string key) => GetValue(key).Value switch
    {
        float[] a => (float[])a.Clone(),
        double[] d => Array.ConvertAll(d, v => (float)v),
        _ => throw WrongType(key, GetValue(key), "f32 array"),
    };

    /// <summary>An i32 array; arrays of any integer type whose values fit are converted.</summary>
    public int[] GetInt32Array(string key)
    {
        var value = GetValue(key);
        switch (value.Value)
        {
            case int[] a when value.ElementType == GgufValueType.Int32:
                return (int[])a.Clone();
            case Array a when value.ElementType is GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16
                or GgufValueType.Int16 or GgufValueType.UInt32 or GgufValueType.UInt64 or GgufValueType.Int64:
                var result = new int[a.Length];
                for (var i = 0; i < a.Length; i++)
                {
                    var element = a.GetValue(i)!;
                    var wide = element is ulong u ? (u > int.MaxValue ? long.MaxValue : (long)u) : Convert.ToInt64(element, System.Globalization.CultureInfo.InvariantCulture);
                    if (wide is < int.MinValue or > int.MaxValue)
                    {
                        throw new GgufFormatException(FilePath, $"metadata key '{key}' element {i} = {element} does not fit an i32");
                    }

                    result[i] = (int)wide;
                }

                return result;
            default:
                throw WrongType(key, value, "i32 array");
        }
    }

    /// <summary>Unmaps the file (or frees its copy). Spans and pointers into it must not be used afterwards.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_ownsMemory)
        {
            var memory = _base;
            _base = null;
            NativeMemory.AlignedFree(memory);
            return;
        }

        if (_base != null)
        {
            _base = null;
            _view!.SafeMemoryMappedViewHandle.ReleasePointer();
        }

        _view!.Dispose();
        _map!.Dispose();
    }

    private GgufFormatException Missing(string key) => new(FilePath, $"metadata key '{key}' is missing");

    private GgufFormatException WrongType(string key, GgufValue value, string expected) =>
        new(FilePath, $"metadata key '{key}' is {Describe(value)}, expected {expected}");

    private static string Describe(GgufValue value) =>
        value.Type == GgufValueType.Array ? $"an array of {value.ElementType}" : $"of type {value.Type}";

    private string AsString(string key, GgufValue value) =>
        value.Value as string ?? throw WrongType(key, value, "string");

    private long AsInteger(string key, GgufValue value, long min, long max)
    {
        long result;
        switch (value.Value)
        {
            case byte v: result = v; break;
            case sbyte v: result = v; break;
            case ushort v: result = v; break;
            case short v: result = v; break;
            case uint v: result = v; break;
            case int v: result = v; break;
            case long v: result = v; break;
            case ulong v when v <= long.MaxValue: result = (long)v; break;
            case ulong v: throw new GgufFormatException(FilePath, $"metadata key '{key}' = {v} is out of range [{min}, {max}]");
            default: throw WrongType(key, value, "an integer");
        }

        return result >= min && result <= max
            ? result
            : throw new GgufFormatException(FilePath, $"metadata key '{key}' = {result} is out of range [{min}, {max}]");
    }

    private float AsSingle(string key, GgufValue value) => value.Value switch
    {
        float f => f,
        double d => (float)d,
        _ => throw WrongType(key, value, "f32"),
    };

    private void Parse()
    {
        var reader = new Reader(_base, FileLength, FilePath);
        reader.Skip(4); // magic, checked in Open
        var version = reader.ReadUInt32("version");
        if (version != 2 && version != 3)
        {
            var hint = (version & 0xFFFF) == 0 ? " (a big-endian GGUF file? only little-endian is supported)" : string.Empty;
            throw new GgufFormatException(FilePath, $"unsupported GGUF version {version}{hint}; supported: 2 and 3");
        }

        Version = version;
        var tensorCount = reader.ReadCount("tensor count", 8 + 4 + 4 + 8 + 8);
        var metadataCount = reader.ReadCount("metadata count", 8 + 4);

        var keys = new List<string>((int)Math.Min(metadataCount, 4096));
        for (long i = 0; i < metadataCount; i++)
        {
            var key = reader.ReadString($"metadata key #{i}");
            var typeId = reader.ReadUInt32($"type of metadata '{key}'");
            var value = ReadValue(ref reader, key, typeId, depth: 0);
            if (!_metadata.TryAdd(key, value))
            {
                throw new GgufFormatException(FilePath, $"metadata key '{key}' appears twice");
            }

            keys.Add(key);
        }

        MetadataKeys = keys.AsReadOnly();
        if (_metadata.TryGetValue(AlignmentKey, out var alignmentValue))
        {
            if (alignmentValue.Value is not uint alignment || alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (1 << 30))
            {
                throw new GgufFormatException(FilePath, $"'{AlignmentKey}' must be a u32 power of two, found {alignmentValue} ({alignmentValue.Type})");
            }

            Alignment = (int)alignment;
        }

        var infos = new (string Name, GgmlType Type, long[] Dims, ulong Offset)[tensorCount];
        for (long i = 0; i < tensorCount; i++)
        {
            var name = reader.ReadString($"name of tensor #{i}");
            var nDims = reader.ReadUInt32($"dimension count of tensor '{name}'");
            if (nDims is 0 or > MaxDimensions)
            {
                throw new GgufFormatException(FilePath, $"tensor '{name}' has {nDims} dimensions; 1 to {MaxDimensions} are allowed");
            }

            var dims = new long[nDims];
            for (var d = 0; d < nDims; d++)
            {
                var ne = reader.ReadUInt64($"dimension {d} of tensor '{name}'");
                if (ne > long.MaxValue)
                {
                    throw new GgufFormatException(FilePath, $"tensor '{name}' dimension {d} = {ne} is out of range");
                }

                dims[d] = (long)ne;
            }

            var typeId = reader.ReadUInt32($"type of tensor '{name}'");
            var type = (GgmlType)typeId;
            if (!Enum.IsDefined(type) || !GgmlTypes.IsKnown(type))
            {
                throw new GgufFormatException(FilePath, $"tensor '{name}' has unknown ggml type {typeId}");
            }

            var offset = reader.ReadUInt64($"data offset of tensor '{name}'");
            infos[i] = (name, type, dims, offset);
        }

        DataOffset = tensorCount == 0 ? reader.Position : AlignUp(reader.Position, Alignment);
        if (DataOffset > FileLength)
        {
            throw new GgufFormatException(FilePath, $"truncated: the data section would start at offset {DataOffset} but the file is {FileLength} bytes");
        }

        var dataSize = FileLength - DataOffset;
        var tensors = new GgufTensorInfo[tensorCount];
        for (long i = 0; i < tensorCount; i++)
        {
            var (name, type, dims, offset) = infos[i];
            var blockSize = GgmlTypes.BlockSize(type);
            if (dims[0] % blockSize != 0)
            {
                throw new GgufFormatException(FilePath, $"tensor '{name}' ({type}) has rows of {dims[0]} elements, not a multiple of the block size {blockSize}");
            }

            long bytes;
            try
            {
                long elements = 1;
                foreach (var d in dims)
                {
                    elements = checked(elements * d);
                }

                bytes = checked(elements / blockSize * GgmlTypes.BlockBytes(type));
            }
            catch (OverflowException)
            {
                throw new GgufFormatException(FilePath, $"tensor '{name}' shape [{string.Join(", ", dims)}] is too large");
            }

            if (offset % (ulong)Alignment != 0)
            {
                throw new GgufFormatException(FilePath, $"tensor '{name}' data offset {offset} is not a multiple of the alignment {Alignment}");
            }

            if (offset > (ulong)dataSize || (ulong)bytes > (ulong)dataSize - offset)
            {
                throw new GgufFormatException(FilePath,
                    $"tensor '{name}' data (offset {offset}, {bytes} bytes) runs past the end of the data section ({dataSize} bytes from file offset {DataOffset}); the file is truncated or the offset is wrong");
            }

            var info = new GgufTensorInfo(name, type, dims, (long)offset, bytes);
            if (!_tensorsByName.TryAdd(name, info))
            {
                throw new GgufFormatException(FilePath, $"tensor '{name}' appears twice");
            }

            tensors[i] = info;
        }

        Tensors = Array.AsReadOnly(tensors);
    }

    private GgufValue ReadValue(ref Reader reader, string key, uint typeId, int depth)
    {
        var type = (GgufValueType)typeId;
        switch (type)
        {
            case GgufValueType.UInt8: return GgufValue.FromUInt8(reader.ReadBytes(1, key)[0]);
            case GgufValueType.Int8: return GgufValue.FromInt8((sbyte)reader.ReadBytes(1, key)[0]);
            case GgufValueType.UInt16: return GgufValue.FromUInt16(BinaryPrimitives.ReadUInt16LittleEndian(reader.ReadBytes(2, key)));
            case GgufValueType.Int16: return GgufValue.FromInt16(BinaryPrimitives.ReadInt16LittleEndian(reader.ReadBytes(2, key)));
            case GgufValueType.UInt32: return GgufValue.FromUInt32(reader.ReadUInt32(key));
            case GgufValueType.Int32: return GgufValue.FromInt32((int)reader.ReadUInt32(key));
            case GgufValueType.Float32: return GgufValue.FromFloat32(BitConverter.UInt32BitsToSingle(reader.ReadUInt32(key)));
            case GgufValueType.UInt64: return GgufValue.FromUInt64(reader.ReadUInt64(key));
            case GgufValueType.Int64: return GgufValue.FromInt64((long)reader.ReadUInt64(key));
            case GgufValueType.Float64: return GgufValue.FromFloat64(BitConverter.UInt64BitsToDouble(reader.ReadUInt64(key)));
            case GgufValueType.Bool: return GgufValue.FromBool(ReadBool(ref reader, key));
            case GgufValueType.String: return GgufValue.FromString(reader.ReadString($"value of '{key}'"));
            case GgufValueType.Array:
                var elementTypeId = reader.ReadUInt32($"element type of '{key}'");
                var elementType = (GgufValueType)elementTypeId;
                if (!Enum.IsDefined(elementType))
                {
                    throw new GgufFormatException(FilePath, $"metadata key '{key}' is an array of unknown value type {elementTypeId}");
                }

                if (elementType == GgufValueType.Array && depth >= 8)
                {
                    throw new GgufFormatException(FilePath, $"metadata key '{key}' nests arrays too deeply");
                }

                var elementSize = ElementSize(elementType);
                var count = reader.ReadCount($"length of array '{key}'", Math.Max(1, elementSize == 0 ? 8 : elementSize));
                return GgufValue.FromArray(ReadArray(ref reader, key, elementType, elementSize, (int)count, depth));
            default:
                throw new GgufFormatException(FilePath, $"metadata key '{key}' has unknown value type {typeId}");
        }
    }

    private Array ReadArray(ref Reader reader, string key, GgufValueType elementType, int elementSize, int count, int depth)
    {
        if (elementSize > 0)
        {
            var raw = reader.ReadBytes(checked(count * elementSize), $"elements of '{key}'");
            switch (elementType)
            {
                case GgufValueType.UInt8: return raw.ToArray();
                case GgufValueType.Int8: return FromBytes<sbyte>(raw);
                case GgufValueType.UInt16: return FromBytes<ushort>(raw);
                case GgufValueType.Int16: return FromBytes<short>(raw);
                case GgufValueType.UInt32: return FromBytes<uint>(raw);
                case GgufValueType.Int32: return FromBytes<int>(raw);
                case GgufValueType.Float32: return FromBytes<float>(raw);
                case GgufValueType.UInt64: return FromBytes<ulong>(raw);
                case GgufValueType.Int64: return FromBytes<long>(raw);
                case GgufValueType.Float64: return FromBytes<double>(raw);
                case GgufValueType.Bool:
                    var bools = new bool[count];
                    for (var i = 0; i < count; i++)
                    {
                        bools[i] = raw[i] switch
                        {
                            0 => false,
                            1 => true,
                            _ => throw new GgufFormatException(FilePath, $"metadata key '{key}' element {i} is a bool byte {raw[i]}, expected 0 or 1"),
                        };
                    }

                    return bools;
            }
        }

        if (elementType == GgufValueType.String)
        {
            var strings = new string[count];
            for (var i = 0; i < count; i++)
            {
                strings[i] = reader.ReadString($"element {i} of '{key}'");
            }

            return strings;
        }

        var nested = new GgufValue[count];
        for (var i = 0; i < count; i++)
        {
            nested[i] = ReadValue(ref reader, $"{key}[{i}]", (uint)GgufValueType.Array, depth + 1);
        }

        return nested;
    }

    private bool ReadBool(ref Reader reader, string key)
    {
        var b = reader.ReadBytes(1, key)[0];
        return b switch
        {
            0 => false,
            1 => true,
            _ => throw new GgufFormatException(FilePath, $"metadata key '{key}' is a bool byte {b}, expected 0 or 1"),
        };
    }

    private static T[] FromBytes<T>(ReadOnlySpan<byte> raw)
        where T : unmanaged
    {
        // GGUF is little-endian and Open refuses big-endian machines, so the bytes are the values.
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(raw).ToArray();
    }

    private static int ElementSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };

    private static long AlignUp(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>Bounds-checked little-endian reads from the mapping; every failure names what was being read.</summary>
    private ref struct Reader
    {
        private readonly byte* _start;
        private readonly long _length;
        private readonly string _path;

        public Reader(byte* start, long length, string path)
        {
            _start = start;
            _length = length;
            _path = path;
            Position = 0;
        }

        public long Position { get; private set; }

        public void Skip(int bytes) => ReadBytes(bytes, "header");

        public uint ReadUInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4, what));

        public ulong ReadUInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(ReadBytes(8, what));

        /// <summary>A u64 count, refused when even <paramref name="minBytesEach"/> bytes per item cannot fit the rest of the file.</summary>
        public long ReadCount(string what, int minBytesEach)
        {
            var count = ReadUInt64(what);
            var remaining = _length - Position;
            if (count > (ulong)int.MaxValue || count * (ulong)minBytesEach > (ulong)remaining)
            {
                throw new GgufFormatException(_path, $"{what} {count} cannot fit in the remaining {remaining} bytes: the file is truncated or corrupt");
            }

            return (long)count;
        }

        public string ReadString(string what)
        {
            var length = ReadUInt64($"length of {what}");
            if (length > int.MaxValue)
            {
                throw new GgufFormatException(_path, $"{what}: string length {length} at offset {Position - 8} is not plausible; the file is corrupt");
            }

            // Lenient like llama.cpp (which keeps raw bytes): invalid UTF-8 becomes U+FFFD rather than refusing the file.
            return Encoding.UTF8.GetString(ReadBytes((int)length, what));
        }

        public ReadOnlySpan<byte> ReadBytes(int count, string what)
        {
            if (count < 0 || count > _length - Position)
            {
                throw new GgufFormatException(_path, $"truncated: {what} at offset {Position} needs {count} bytes but the file ends at {_length}");
            }

            var span = new ReadOnlySpan<byte>(_start + Position, count);
            Position += count;
            return span;
        }
    }
}
