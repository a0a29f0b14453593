using System.Runtime.InteropServices;
using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Models;

/// <summary>Shape and content of a random-weight model written by <see cref="SyntheticModel"/>.</summary>
public sealed record SyntheticModelSpec
{
    /// <summary><c>llama</c>, <c>qwen2</c> or <c>qwen3</c>.</summary>
    public string Architecture { get; init; } = "llama";

    /// <summary>Hidden size (<c>d</c>). A multiple of 32 for the block types (K-quant matrices of other widths fall back, see <see cref="WeightType"/>).</summary>
    public int EmbeddingLength { get; init; } = 256;

    /// <summary>Transformer blocks.</summary>
    public int BlockCount { get; init; } = 2;

    /// <summary>FFN inner size.</summary>
    public int FeedForwardLength { get; init; } = 512;

    /// <summary>Query heads.</summary>
    public int HeadCount { get; init; } = 4;

    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="HeadCount"/>).</summary>
    public int KvHeadCount { get; init; } = 2;

    /// <summary>Per-head size; null means <see cref="EmbeddingLength"/> / <see cref="HeadCount"/>. Written as <c>attention.key_length</c> when set.</summary>
    public int? HeadDimension { get; init; }

    /// <summary>Rotated dimensions per head; null means the whole head.</summary>
    public int? RopeDimensionCount { get; init; }

    /// <summary>Vocabulary size, at least 259 (3 specials and the 256 byte tokens).</summary>
    public int VocabularySize { get; init; } = 320;

    /// <summary>Training context length written to the metadata.</summary>
    public int ContextLength { get; init; } = 2048;

    /// <summary>RoPE base frequency.</summary>
    public float RopeFreqBase { get; init; } = 10000f;

    /// <summary>RMSNorm epsilon.</summary>
    public float RmsEpsilon { get; init; } = 1e-5f;

    /// <summary>
    /// Type of every matrix (embeddings and output included); norms and biases stay F32. A K-quant type is replaced by
    /// llama.cpp's fallback (Q4_K → Q5_0, Q6_K → Q8_0) for matrices whose rows are not a multiple of 256.
    /// </summary>
    public GgmlType WeightType { get; init; } = GgmlType.F32;

    /// <summary>Type of <c>token_embd.weight</c> when different from <see cref="WeightType"/>.</summary>
    public GgmlType? EmbeddingType { get; init; }

    /// <summary>Type of <c>output.weight</c> when different from <see cref="WeightType"/>.</summary>
    public GgmlType? OutputType { get; init; }

    /// <summary>No <c>output.weight</c>: the output projection reuses the embeddings.</summary>
    public bool TiedOutput { get; init; }

    /// <summary>Adds Q/K/V biases (always on for qwen2, which requires them).</summary>
    public bool AttentionBiases { get; init; }

    /// <summary>Seed of the weights: the same spec and seed write the same bytes.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Standard deviation of the logits the output projection produces for a unit-RMS input.</summary>
    public float LogitScale { get; init; } = 4f;
}

/// <summary>
/// Writes random-weight GGUF models of the supported architectures, loadable by this engine and by llama.cpp:
/// complete architecture metadata, a small SentencePiece-style vocabulary (<c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>,
/// <c>&lt;/s&gt;</c>, the 256 byte tokens, then filler tokens) and seeded Gaussian weights quantized with ggml's
/// reference quantizers. For tests and benchmarks; the models compute nothing meaningful.
/// </summary>
public static class SyntheticModel
{
    /// <summary>Writes the model described by <paramref name="spec"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, SyntheticModelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        CreateWriter(spec).WriteTo(path);
    }

    /// <summary>A writer holding the model's metadata and tensors (tensor data is generated while writing).</summary>
    public static GgufWriter CreateWriter(SyntheticModelSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var arch = spec.Architecture;
        if (arch is not ("llama" or "qwen2" or "qwen3"))
        {
            throw new ArgumentException($"architecture '{arch}' is not supported; supported: llama, qwen2, qwen3", nameof(spec));
        }

        if (spec.VocabularySize < 259)
        {
            throw new ArgumentException("the vocabulary needs at least 259 tokens", nameof(spec));
        }

        var d = spec.EmbeddingLength;
        var headDim = spec.HeadDimension ?? (d / spec.HeadCount);
        var qDim = headDim * spec.HeadCount;
        var kvDim = headDim * spec.KvHeadCount;
        var ff = spec.FeedForwardLength;
        var vocab = spec.VocabularySize;

        var w = new GgufWriter();
        w.AddString("general.architecture", arch);
        w.AddString("general.name", $"sluice-synthetic-{arch}");
        w.AddUInt32("general.file_type", FileType(spec.WeightType));
        w.AddUInt32("general.quantization_version", 2);
        w.AddUInt32($"{arch}.context_length", (uint)spec.ContextLength);
        w.AddUInt32($"{arch}.embedding_length", (uint)d);
        w.AddUInt32($"{arch}.block_count", (uint)spec.BlockCount);
        w.AddUInt32($"{arch}.feed_forward_length", (uint)ff);
        w.AddUInt32($"{arch}.attention.head_count", (uint)spec.HeadCount);
        w.AddUInt32($"{arch}.attention.head_count_kv", (uint)spec.KvHeadCount);
        w.AddUInt32($"{arch}.rope.dimension_count", (uint)(spec.RopeDimensionCount ?? headDim));
        w.AddSingle($"{arch}.rope.freq_base", spec.RopeFreqBase);
        w.AddSingle($"{arch}.attention.layer_norm_rms_epsilon", spec.RmsEpsilon);
        w.AddUInt32($"{arch}.vocab_size", (uint)vocab);
        if (spec.HeadDimension is not null)
        {
            w.AddUInt32($"{arch}.attention.key_length", (uint)headDim);
            w.AddUInt32($"{arch}.attention.value_length", (uint)headDim);
        }

        AddVocabulary(w, vocab);

        var matrixType = spec.WeightType;
        var embeddingScale = 1f;
        var logitStd = spec.LogitScale / MathF.Sqrt(d);
        var embeddingType = spec.EmbeddingType ?? matrixType;
        AddMatrix(w, spec, "token_embd.weight", embeddingType, d, vocab, spec.TiedOutput ? logitStd : embeddingScale);
        var biases = spec.AttentionBiases || arch == "qwen2";
        for (var layer = 0; layer < spec.BlockCount; layer++)
        {
            var p = $"blk.{layer}.";
            AddNorm(w, spec, p + "attn_norm.weight", d);
            AddMatrix(w, spec, p + "attn_q.weight", matrixType, d, qDim, 1f / MathF.Sqrt(d));
            AddMatrix(w, spec, p + "attn_k.weight", matrixType, d, kvDim, 1f / MathF.Sqrt(d));
            AddMatrix(w, spec, p + "attn_v.weight", matrixType, d, kvDim, 1f / MathF.Sqrt(d));
            if (biases)
            {
                AddVector(w, spec, p + "attn_q.bias", qDim, 0f, 0.2f);
                AddVector(w, spec, p + "attn_k.bias", kvDim, 0f, 0.2f);
                AddVector(w, spec, p + "attn_v.bias", kvDim, 0f, 0.2f);
            }

            if (arch == "qwen3")
            {
                AddNorm(w, spec, p + "attn_q_norm.weight", headDim);
                AddNorm(w, spec, p + "attn_k_norm.weight", headDim);
            }

            AddMatrix(w, spec, p + "attn_output.weight", matrixType, qDim, d, 1f / MathF.Sqrt(qDim));
            AddNorm(w, spec, p + "ffn_norm.weight", d);
            AddMatrix(w, spec, p + "ffn_gate.weight", matrixType, d, ff, 1f / MathF.Sqrt(d));
            AddMatrix(w, spec, p + "ffn_up.weight", matrixType, d, ff, 1f / MathF.Sqrt(d));
            AddMatrix(w, spec, p + "ffn_down.weight", matrixType, ff, d, 1f / MathF.Sqrt(ff));
        }

        AddNorm(w, spec, "output_norm.weight", d);
        if (!spec.TiedOutput)
        {
            AddMatrix(w, spec, "output.weight", spec.OutputType ?? matrixType, d, vocab, logitStd);
        }

        return w;
    }

    private static void AddVocabulary(GgufWriter w, int vocab)
    {
        var tokens = new string[vocab];
        var scores = new float[vocab];
        var types = new int[vocab];
        tokens[0] = "<unk>";
        types[0] = 2;
        tokens[1] = "<s>";
        types[1] = 3;
        tokens[2] = "</s>";
        types[2] = 3;
        for (var b = 0; b < 256; b++)
        {
            tokens[3 + b] = $"<0x{b:X2}>";
            types[3 + b] = 6;
        }

        for (var i = 259; i < vocab; i++)
        {
            tokens[i] = $"▁t{i - 259}";
            types[i] = 1;
            scores[i] = -(i - 259);
        }

        w.AddString("tokenizer.ggml.model", "llama");
        w.AddArray("tokenizer.ggml.tokens", tokens);
        w.AddArray("tokenizer.ggml.scores", scores);
        w.AddArray("tokenizer.ggml.token_type", types);
        w.AddUInt32("tokenizer.ggml.bos_token_id", 1);
        w.AddUInt32("tokenizer.ggml.eos_token_id", 2);
        w.AddUInt32("tokenizer.ggml.unknown_token_id", 0);
        w.AddBoolean("tokenizer.ggml.add_bos_token", false);
        w.AddBoolean("tokenizer.ggml.add_eos_token", false);
    }

    private static void AddMatrix(GgufWriter w, SyntheticModelSpec spec, string name, GgmlType type, int columns, int rows, float std)
    {
        // K-quants need whole super-blocks per row: llama.cpp's fallback type otherwise (Qwen2.5-0.5B's d = 896).
        type = GgmlQuantization.CompatibleType(type, columns);
        w.AddTensor(name, type, [columns, rows], stream =>
        {
            var rng = new Gaussian(spec.Seed, name);
            var row = new float[columns];
            var bytes = new byte[GgmlTypes.RowBytes(type, columns)];
            for (var r = 0; r < rows; r++)
            {
                for (var i = 0; i < columns; i++)
                {
                    row[i] = rng.Next() * std;
                }

                GgmlQuantization.Quantize(type, row, bytes);
                stream.Write(bytes);
            }
        });
    }

    private static void AddNorm(GgufWriter w, SyntheticModelSpec spec, string name, int length) =>
        AddVector(w, spec, name, length, 1f, 0.2f);

    private static void AddVector(GgufWriter w, SyntheticModelSpec spec, string name, int length, float mean, float std)
    {
        var rng = new Gaussian(spec.Seed, name);
        var values = new float[length];
        for (var i = 0; i < length; i++)
        {
            values[i] = mean + (rng.Next() * std);
        }

        w.AddTensor(name, GgmlType.F32, [length], MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
    }

    /// <summary>llama.cpp's <c>llama_ftype</c> for a file whose matrices are all <paramref name="type"/>.</summary>
    private static uint FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q4_0 => 2,
        GgmlType.Q5_0 => 8,
        GgmlType.Q8_0 => 7,
        GgmlType.Q4_K => 14,
        GgmlType.Q6_K => 18,
        GgmlType.BF16 => 32,
        _ => throw new ArgumentException($"{type} weights are not supported", nameof(type)),
    };

    /// <summary>Seeded standard normal values (xorshift64* and Box–Muller), independent per tensor name.</summary>
    private sealed class Gaussian
    {
        private ulong _state;
        private float? _spare;

        public Gaussian(int seed, string name)
        {
            // FNV-1a of the name mixed with the seed: stable across runs and .NET versions, unlike string.GetHashCode.
            var h = 14695981039346656037UL ^ (ulong)(uint)seed;
            foreach (var c in name)
            {
                h = (h ^ c) * 1099511628211UL;
            }

            _state = h == 0 ? 0x9E3779B97F4A7C15UL : h;
        }

        public float Next()
        {
            if (_spare is { } spare)
            {
                _spare = null;
                return spare;
            }

            var u1 = (NextBits() + 1.0) / 9007199254740993.0;
            var u2 = NextBits() / 9007199254740992.0;
            var radius = Math.Sqrt(-2.0 * Math.Log(u1));
            _spare = (float)(radius * Math.Sin(2 * Math.PI * u2));
            return (float)(radius * Math.Cos(2 * Math.PI * u2));
        }

        private ulong NextBits()
        {
            _state ^= _state >> 12;
            _state ^= _state << 25;
            _state ^= _state >> 27;
            return (_state * 2685821657736338717UL) >> 11;
        }
    }
}
