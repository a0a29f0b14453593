using Sluice.Engine.Gguf;

namespace Sluice.Engine.Tests.Gguf;

public sealed class GgufRoundTripTests
{
    [Fact]
    public void Every_value_type_and_tensors_survive_a_round_trip()
    {
        using var dir = new TempDirectory();
        var path = dir.File("all.gguf");
        var writer = new GgufWriter();
        writer.AddString("general.architecture", "llama");
        writer.AddString("unicode", "héllo ▁wörld 🙂");
        writer.Add("u8", GgufValue.FromUInt8(200));
        writer.Add("i8", GgufValue.FromInt8(-100));
        writer.Add("u16", GgufValue.FromUInt16(65000));
        writer.Add("i16", GgufValue.FromInt16(-32000));
        writer.AddUInt32("u32", 4_000_000_000);
        writer.AddInt32("i32", -2_000_000_000);
        writer.AddUInt64("u64", ulong.MaxValue - 5);
        writer.Add("i64", GgufValue.FromInt64(long.MinValue + 7));
        writer.AddSingle("f32", 1e-5f);
        writer.Add("f64", GgufValue.FromFloat64(Math.PI));
        writer.AddBoolean("yes", true);
        writer.AddBoolean("no", false);
        writer.AddArray("tokens", new[] { "<unk>", "<s>", "", "▁the", "日本" });
        writer.AddArray("scores", new[] { 0f, -1.5f, float.NegativeInfinity });
        writer.AddArray("types", new[] { 2, 3, 1 });
        writer.AddArray("u32s", new uint[] { 1, 2, 3 });
        writer.AddArray("bools", new[] { true, false, true });
        writer.AddArray("f64s", new[] { 0.25, -8.0 });
        writer.AddArray("nested", new[] { GgufValue.FromArray(new[] { 1, 2 }), GgufValue.FromArray(new[] { "a" }) });
        writer.AddArray("empty", Array.Empty<string>());

        var f32 = RandomBytes(4 * 3 * 5, 1);
        var q8 = RandomBytes(34 * 2 * 3, 2);
        var q4k = RandomBytes(144 * 1 * 2, 3);
        writer.AddTensor("a.f32", GgmlType.F32, [3, 5], f32);
        writer.AddTensor("b.q8", GgmlType.Q8_0, [64, 3], q8);
        writer.AddTensor("c.q4k", GgmlType.Q4_K, [256, 2], s => s.Write(q4k));
        writer.AddTensor("d.vec", GgmlType.F16, [7], new byte[14]);
        writer.WriteTo(path);

        using var file = GgufFile.Open(path);
        Assert.Equal(3u, file.Version);
        Assert.Equal(32, file.Alignment);
        Assert.Equal(0, file.DataOffset % 32);
        Assert.Equal("llama", file.GetString("general.architecture"));
        Assert.Equal("héllo ▁wörld 🙂", file.GetString("unicode"));
        Assert.Equal((byte)200, file.GetValue("u8").Value);
        Assert.Equal((sbyte)-100, file.GetValue("i8").Value);
        Assert.Equal((ushort)65000, file.GetValue("u16").Value);
        Assert.Equal((short)-32000, file.GetValue("i16").Value);
        Assert.Equal(4_000_000_000u, file.GetUInt32("u32"));
        Assert.Equal(-2_000_000_000, file.GetInt32("i32"));
        Assert.Equal(ulong.MaxValue - 5, file.GetUInt64("u64"));
        Assert.Equal(long.MinValue + 7, file.GetValue("i64").Value);
        Assert.Equal(1e-5f, file.GetSingle("f32"));
        Assert.Equal(Math.PI, file.GetValue("f64").Value);
        Assert.Equal((float)Math.PI, file.GetSingle("f64"));
        Assert.True(file.GetBoolean("yes"));
        Assert.False(file.GetBoolean("no"));
        Assert.Equal(new[] { "<unk>", "<s>", "", "▁the", "日本" }, file.GetStringArray("tokens"));
        Assert.Equal(new[] { 0f, -1.5f, float.NegativeInfinity }, file.GetSingleArray("scores"));
        Assert.Equal(new[] { 2, 3, 1 }, file.GetInt32Array("types"));
        Assert.Equal(new[] { 1, 2, 3 }, file.GetInt32Array("u32s"));
        // The CLR lets an int[] pass as a uint[]: the element types must still be told apart.
        Assert.Equal(GgufValueType.Int32, file.GetValue("types").ElementType);
        Assert.Equal(GgufValueType.UInt32, file.GetValue("u32s").ElementType);
        Assert.Equal(new[] { true, false, true }, (bool[])file.GetValue("bools").Value);
        Assert.Equal(new[] { 0.25f, -8f }, file.GetSingleArray("f64s"));
        var nested = (GgufValue[])file.GetValue("nested").Value;
        Assert.Equal(new[] { 1, 2 }, (int[])nested[0].Value);
        Assert.Equal(new[] { "a" }, (string[])nested[1].Value);
        Assert.Empty(file.GetStringArray("empty"));
        Assert.Equal(GgufValueType.String, file.GetValue("empty").ElementType);
        Assert.Equal(
            new[] { "general.architecture", "unicode", "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "yes", "no", "tokens", "scores", "types", "u32s", "bools", "f64s", "nested", "empty" },
            file.MetadataKeys);

        Assert.Equal(["a.f32", "b.q8", "c.q4k", "d.vec"], file.Tensors.Select(t => t.Name));
        var a = file.GetTensor("a.f32");
        Assert.Equal(GgmlType.F32, a.Type);
        Assert.Equal([3L, 5L], a.Dimensions);
        Assert.Equal(5, a.RowCount);
        Assert.Equal(12, a.RowBytes);
        Assert.Equal(f32, file.GetTensorData(a).ToArray());
        Assert.Equal(q8, file.GetTensorData(file.GetTensor("b.q8")).ToArray());
        Assert.Equal(q4k, file.GetTensorData(file.GetTensor("c.q4k")).ToArray());
        Assert.Equal(q8.AsSpan(136, 68).ToArray(), file.GetTensorRows(file.GetTensor("b.q8"), 2, 1).ToArray());
        foreach (var t in file.Tensors)
        {
            Assert.Equal(0, t.Offset % 32);
        }

        Assert.False(file.TryGetTensor("nope", out _));
        var missing = Assert.Throws<GgufFormatException>(() => file.GetTensor("nope"));
        Assert.Contains("'nope' is missing", missing.Message, StringComparison.Ordinal);
        Assert.StartsWith(path, missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public unsafe void A_file_read_into_memory_has_the_metadata_and_tensor_bytes_of_the_mapped_file()
    {
        using var dir = new TempDirectory();
        var path = dir.File("copy.gguf");
        var writer = new GgufWriter(alignment: 64);
        writer.AddString("general.architecture", "llama");
        writer.AddArray("tokens", new[] { "a", "b" });
        writer.AddTensor("a.f32", GgmlType.F32, [3, 5], RandomBytes(60, 4));
        writer.AddTensor("b.q4k", GgmlType.Q4_K, [256, 3], RandomBytes(144 * 3, 5));
        writer.AddTensor("c.q8", GgmlType.Q8_0, [64, 2], RandomBytes(34 * 4, 6));
        writer.WriteTo(path);

        var reads = new List<(long Done, long Total)>();
        using var mapped = GgufFile.Open(path);
        using var copy = GgufFile.OpenInMemory(path, (done, total) => reads.Add((done, total)));
        Assert.False(mapped.IsInMemory);
        Assert.True(copy.IsInMemory);
        Assert.Equal(mapped.MetadataKeys, copy.MetadataKeys);
        Assert.Equal(mapped.GetStringArray("tokens"), copy.GetStringArray("tokens"));
        Assert.Equal(mapped.DataOffset, copy.DataOffset);
        Assert.Equal(mapped.Tensors.Select(t => (t.Name, t.Offset, t.ByteSize)), copy.Tensors.Select(t => (t.Name, t.Offset, t.ByteSize)));
        foreach (var t in copy.Tensors)
        {
            Assert.Equal(mapped.GetTensorData(mapped.GetTensor(t.Name)).ToArray(), copy.GetTensorData(t).ToArray());

            // The kernels' aligned loads need the file's alignment in memory too.
            Assert.Equal(0, (long)copy.GetTensorPointer(t) % 64);
        }

        var length = new FileInfo(path).Length;
        Assert.Equal((length, length), reads[^1]);
    }

    [Fact]
    public void Reading_into_memory_stops_when_cancelled()
    {
        using var dir = new TempDirectory();
        var path = dir.File("cancel.gguf");
        var writer = new GgufWriter();
        writer.AddTensor("t", GgmlType.F32, [4], new byte[16]);
        writer.WriteTo(path);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => GgufFile.OpenInMemory(path, cancellationToken: cancelled.Token));
        Assert.Throws<FileNotFoundException>(() => GgufFile.OpenInMemory(dir.File("absent.gguf")));
    }

    [Fact]
    public void Typed_accessors_convert_compatible_types_and_name_the_key_on_mismatch()
    {
        using var dir = new TempDirectory();
        var path = dir.File("typed.gguf");
        var writer = new GgufWriter();
        writer.AddUInt64("ctx", 4096);
        writer.AddInt32("neg", -1);
        writer.AddString("name", "x");
        writer.AddArray("i64s", new long[] { 1, 5_000_000_000 });
        writer.WriteTo(path);

        using var file = GgufFile.Open(path);
        Assert.Equal(4096u, file.GetUInt32("ctx"));
        Assert.Equal(4096, file.GetInt32("ctx"));
        Assert.Equal(7u, file.GetUInt32("absent", 7));
        Assert.Equal(0.5f, file.GetSingle("absent", 0.5f));
        Assert.Equal("d", file.GetString("absent", "d"));
        Assert.Contains("'neg' = -1 is out of range", Assert.Throws<GgufFormatException>(() => file.GetUInt32("neg")).Message, StringComparison.Ordinal);
        Assert.Contains("'name' is of type String, expected an integer", Assert.Throws<GgufFormatException>(() => file.GetUInt32("name")).Message, StringComparison.Ordinal);
        Assert.Contains("'ctx' is of type UInt64, expected string", Assert.Throws<GgufFormatException>(() => file.GetString("ctx")).Message, StringComparison.Ordinal);
        Assert.Contains("'absent' is missing", Assert.Throws<GgufFormatException>(() => file.GetSingle("absent")).Message, StringComparison.Ordinal);
        Assert.Contains("does not fit an i32", Assert.Throws<GgufFormatException>(() => file.GetInt32Array("i64s")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Custom_alignment_is_recorded_and_applied()
    {
        using var dir = new TempDirectory();
        var path = dir.File("aligned.gguf");
        var writer = new GgufWriter(alignment: 64);
        writer.AddString("k", "v");
        writer.AddTensor("t1", GgmlType.F32, [3], new byte[12]);
        writer.AddTensor("t2", GgmlType.BF16, [5, 2], RandomBytes(20, 9));
        writer.WriteTo(path);

        using var file = GgufFile.Open(path);
        Assert.Equal(64, file.Alignment);
        Assert.Equal(64u, file.GetUInt32(GgufFile.AlignmentKey));
        Assert.Equal(0, file.DataOffset % 64);
        Assert.Equal(64, file.GetTensor("t2").Offset);
        Assert.Equal(RandomBytes(20, 9), file.GetTensorData(file.GetTensor("t2")).ToArray());
        Assert.Throws<ArgumentException>(() => writer.AddUInt32(GgufFile.AlignmentKey, 32));
    }

    [Fact]
    public void Writer_refuses_wrong_sizes_shapes_and_duplicates()
    {
        var writer = new GgufWriter();
        Assert.Throws<ArgumentException>(() => writer.AddTensor("x", GgmlType.Q8_0, [33], new byte[34]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("x", GgmlType.F32, [4], new byte[15]));
        writer.AddTensor("x", GgmlType.F32, [4], new byte[16]);
        Assert.Throws<ArgumentException>(() => writer.AddTensor("x", GgmlType.F32, [4], new byte[16]));
        writer.AddString("k", "v");
        Assert.Throws<ArgumentException>(() => writer.AddString("k", "w"));
        writer.AddTensor("short", GgmlType.F32, [4], s => s.Write(new byte[8]));
        using var sink = new MemoryStream();
        Assert.Contains("'short' wrote 8 bytes; 16 expected", Assert.Throws<InvalidOperationException>(() => writer.WriteTo(sink)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Block_geometry_matches_ggml()
    {
        Assert.Equal((1, 4), (GgmlTypes.BlockSize(GgmlType.F32), GgmlTypes.BlockBytes(GgmlType.F32)));
        Assert.Equal((1, 2), (GgmlTypes.BlockSize(GgmlType.F16), GgmlTypes.BlockBytes(GgmlType.F16)));
        Assert.Equal((1, 2), (GgmlTypes.BlockSize(GgmlType.BF16), GgmlTypes.BlockBytes(GgmlType.BF16)));
        Assert.Equal((32, 18), (GgmlTypes.BlockSize(GgmlType.Q4_0), GgmlTypes.BlockBytes(GgmlType.Q4_0)));
        Assert.Equal((32, 34), (GgmlTypes.BlockSize(GgmlType.Q8_0), GgmlTypes.BlockBytes(GgmlType.Q8_0)));
        Assert.Equal((256, 144), (GgmlTypes.BlockSize(GgmlType.Q4_K), GgmlTypes.BlockBytes(GgmlType.Q4_K)));
        Assert.Equal((256, 210), (GgmlTypes.BlockSize(GgmlType.Q6_K), GgmlTypes.BlockBytes(GgmlType.Q6_K)));
        Assert.Equal((256, 292), (GgmlTypes.BlockSize(GgmlType.Q8_K), GgmlTypes.BlockBytes(GgmlType.Q8_K)));
        Assert.Equal(896L / 32 * 34, GgmlTypes.RowBytes(GgmlType.Q8_0, 896));
        Assert.Throws<ArgumentOutOfRangeException>(() => GgmlTypes.BlockSize((GgmlType)4));
    }

    internal static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
