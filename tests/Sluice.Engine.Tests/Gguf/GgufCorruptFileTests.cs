using System.Buffers.Binary;
using System.Text;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Tests.Gguf;

public sealed class GgufCorruptFileTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A small valid file whose last tensor ends exactly at the end of the file (no trailing padding).</summary>
    private static byte[] ValidFile()
    {
        var writer = new GgufWriter();
        writer.AddString("general.architecture", "llama");
        writer.AddUInt32("llama.block_count", 2);
        writer.AddArray("tokenizer.ggml.tokens", new[] { "a", "b", "c" });
        writer.AddArray("tokenizer.ggml.scores", new[] { 0f, 1f, 2f });
        writer.AddTensor("first", GgmlType.F32, [4, 2], GgufRoundTripTests.RandomBytes(32, 1));
        writer.AddTensor("second", GgmlType.Q8_0, [32], GgufRoundTripTests.RandomBytes(34, 2));
        writer.AddTensor("last", GgmlType.F32, [8], GgufRoundTripTests.RandomBytes(32, 3));
        using var stream = new MemoryStream();
        writer.WriteTo(stream);
        return stream.ToArray();
    }

    private GgufFormatException OpenFails(byte[] bytes, string name = "bad.gguf")
    {
        var path = _dir.File(name);
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path));
        Assert.StartsWith(path + ": ", ex.Message, StringComparison.Ordinal);
        Assert.Equal(path, ex.Path);

        // Read into memory instead of mapped: the same checks, the same words.
        var inMemory = Assert.Throws<GgufFormatException>(() => GgufFile.OpenInMemory(path));
        Assert.Equal(ex.Message, inMemory.Message);
        return ex;
    }

    [Fact]
    public void The_valid_file_opens()
    {
        var path = _dir.File("ok.gguf");
        File.WriteAllBytes(path, ValidFile());
        using var file = GgufFile.Open(path);
        Assert.Equal(3, file.Tensors.Count);
    }

    [Fact]
    public void Every_truncation_gives_a_clear_error()
    {
        var bytes = ValidFile();
        for (var length = 0; length < bytes.Length; length++)
        {
            var ex = OpenFails(bytes[..length], $"cut{length}.gguf");
            if (length == 0)
            {
                Assert.Contains("the file is empty", ex.Problem, StringComparison.Ordinal);
            }
            else if (length >= 4)
            {
                Assert.True(ex.Problem.Contains("truncated", StringComparison.Ordinal), $"length {length}: {ex.Problem}");
            }
        }
    }

    [Fact]
    public void Bad_magic()
    {
        var bytes = ValidFile();
        "GGML"u8.CopyTo(bytes);
        Assert.Contains("not a GGUF file: it starts with 47474D4C", OpenFails(bytes).Problem, StringComparison.Ordinal);
        Assert.Contains("not a GGUF file", OpenFails("hello world, this is plain text"u8.ToArray(), "text.gguf").Problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0x03000000u)]
    public void Unsupported_version(uint version)
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), version);
        var problem = OpenFails(bytes).Problem;
        Assert.Contains($"unsupported GGUF version {version}", problem, StringComparison.Ordinal);
        Assert.Equal(version == 0x03000000u, problem.Contains("big-endian", StringComparison.Ordinal));
    }

    [Fact]
    public void Version_2_has_the_same_layout_and_opens()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), 2);
        var path = _dir.File("v2.gguf");
        File.WriteAllBytes(path, bytes);
        using var file = GgufFile.Open(path);
        Assert.Equal(2u, file.Version);
    }

    [Theory]
    [InlineData(99u)]
    [InlineData(4u)]
    public void Unknown_tensor_type(uint type)
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(TensorTypeOffset(bytes, "second", 1)), type);
        Assert.Contains($"tensor 'second' has unknown ggml type {type}", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Tensor_offset_past_the_end()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(TensorTypeOffset(bytes, "last", 1) + 4), 1 << 20);
        Assert.Contains("tensor 'last' data (offset 1048576, 32 bytes) runs past the end", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Tensor_offset_not_aligned()
    {
        var bytes = ValidFile();
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(TensorTypeOffset(bytes, "second", 1) + 4), 40);
        Assert.Contains("tensor 'second' data offset 40 is not a multiple of the alignment 32", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Row_length_not_a_block_multiple()
    {
        var bytes = ValidFile();
        var typeOffset = TensorTypeOffset(bytes, "second", 1);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(typeOffset - 8), 31);
        Assert.Contains("tensor 'second' (Q8_0) has rows of 31 elements, not a multiple of the block size 32", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Implausible_array_length()
    {
        var bytes = ValidFile();
        var key = Encoding.UTF8.GetBytes("tokenizer.ggml.tokens");
        var at = bytes.AsSpan().IndexOf(key) + key.Length + 4 + 4; // value type, element type
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), 1UL << 40);
        Assert.Contains("length of array 'tokenizer.ggml.tokens' 1099511627776 cannot fit", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_value_type()
    {
        var bytes = ValidFile();
        var key = Encoding.UTF8.GetBytes("llama.block_count");
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.AsSpan().IndexOf(key) + key.Length), 13);
        Assert.Contains("metadata key 'llama.block_count' has unknown value type 13", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Alignment_must_be_a_power_of_two()
    {
        var writer = new GgufWriter(alignment: 64);
        using var stream = new MemoryStream();
        writer.WriteTo(stream);
        var bytes = stream.ToArray();
        var key = Encoding.UTF8.GetBytes(GgufFile.AlignmentKey);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.AsSpan().IndexOf(key) + key.Length + 4), 48);
        Assert.Contains("'general.alignment' must be a u32 power of two, found 48", OpenFails(bytes).Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_file_is_a_file_not_found()
    {
        var path = _dir.File("absent.gguf");
        var ex = Assert.Throws<FileNotFoundException>(() => GgufFile.Open(path));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    /// <summary>File offset of the u32 type id in the tensor info of <paramref name="name"/>.</summary>
    private static int TensorTypeOffset(byte[] bytes, string name, int dimensions)
    {
        var encoded = Encoding.UTF8.GetBytes(name);
        Span<byte> prefixed = stackalloc byte[8 + encoded.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(prefixed, (ulong)encoded.Length);
        encoded.CopyTo(prefixed[8..]);
        var at = bytes.AsSpan().IndexOf(prefixed);
        Assert.True(at > 0);
        return at + prefixed.Length + 4 + (8 * dimensions);
    }
}
