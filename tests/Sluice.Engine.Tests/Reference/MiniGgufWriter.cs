using System.Text;

namespace Sluice.Engine.Tests.Reference;

/// <summary>
/// A minimal GGUF v3 writer for test files llama.cpp can load: metadata plus a tiny llama-architecture model with zero
/// F32 weights (1 block, d = 16) sized to the vocabulary. Test-only, until the engine's own GGUF writer is merged.
/// </summary>
internal static class MiniGgufWriter
{
    private const int Alignment = 32;
    private const int Embedding = 16;
    private const int FeedForward = 32;

    public static void WriteTinyLlama(string path, IReadOnlyList<KeyValuePair<string, object>> tokenizerMetadata, int vocabularySize)
    {
        var metadata = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", "llama"),
            new("general.name", "sluice-test-vocabulary"),
            new("general.file_type", 0u),
            new("general.quantization_version", 2u),
            new("llama.context_length", 256u),
            new("llama.embedding_length", (uint)Embedding),
            new("llama.block_count", 1u),
            new("llama.feed_forward_length", (uint)FeedForward),
            new("llama.attention.head_count", 2u),
            new("llama.attention.head_count_kv", 2u),
            new("llama.rope.dimension_count", (uint)(Embedding / 2)),
            new("llama.attention.layer_norm_rms_epsilon", 1e-5f),
            new("llama.rope.freq_base", 10000f),
            new("llama.vocab_size", (uint)vocabularySize),
        };
        metadata.AddRange(tokenizerMetadata);

        var tensors = new List<(string Name, long[] Shape)>
        {
            ("token_embd.weight", [Embedding, vocabularySize]),
            ("blk.0.attn_norm.weight", [Embedding]),
            ("blk.0.attn_q.weight", [Embedding, Embedding]),
            ("blk.0.attn_k.weight", [Embedding, Embedding]),
            ("blk.0.attn_v.weight", [Embedding, Embedding]),
            ("blk.0.attn_output.weight", [Embedding, Embedding]),
            ("blk.0.ffn_norm.weight", [Embedding]),
            ("blk.0.ffn_gate.weight", [Embedding, FeedForward]),
            ("blk.0.ffn_up.weight", [Embedding, FeedForward]),
            ("blk.0.ffn_down.weight", [FeedForward, Embedding]),
            ("output_norm.weight", [Embedding]),
        };

        using var stream = File.Create(path);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            WriteValue(w, value);
        }
        long offset = 0;
        foreach (var (name, shape) in tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            foreach (var d in shape)
            {
                w.Write((ulong)d);
            }
            w.Write(0u); // F32
            w.Write((ulong)offset);
            offset += Align(shape.Aggregate(4L, (a, d) => a * d));
        }
        Pad(w);
        var zeros = new byte[1 << 16];
        foreach (var (_, shape) in tensors)
        {
            var size = Align(shape.Aggregate(4L, (a, d) => a * d));
            while (size > 0)
            {
                var n = (int)Math.Min(size, zeros.Length);
                w.Write(zeros, 0, n);
                size -= n;
            }
        }
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w)
    {
        while (w.BaseStream.Position % Alignment != 0)
        {
            w.Write((byte)0);
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, object value)
    {
        switch (value)
        {
            case uint u: w.Write(4u); w.Write(u); break;
            case int i: w.Write(5u); w.Write(i); break;
            case float f: w.Write(6u); w.Write(f); break;
            case bool b: w.Write(7u); w.Write(b ? (byte)1 : (byte)0); break;
            case string s: w.Write(8u); WriteString(w, s); break;
            case string[] a:
                w.Write(9u); w.Write(8u); w.Write((ulong)a.Length);
                foreach (var s in a)
                {
                    WriteString(w, s);
                }
                break;
            case float[] a:
                w.Write(9u); w.Write(6u); w.Write((ulong)a.Length);
                foreach (var f in a)
                {
                    w.Write(f);
                }
                break;
            case int[] a:
                w.Write(9u); w.Write(5u); w.Write((ulong)a.Length);
                foreach (var i in a)
                {
                    w.Write(i);
                }
                break;
            default:
                throw new ArgumentException($"unsupported GGUF value type {value.GetType()}");
        }
    }
}
