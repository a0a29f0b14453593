using Sluice.Engine.Gguf;

namespace Sluice.Engine.Models;

/// <summary>How rotary position embeddings pair the dimensions of a head.</summary>
public enum RopeStyle
{
    /// <summary>Adjacent pairs (2i, 2i+1): llama (HF weights are permuted at conversion to match).</summary>
    Normal,

    /// <summary>Pairs (i, i + n_rot/2): GPT-NeoX style, qwen2 and qwen3.</summary>
    Neox,
}

/// <summary>The hyper-parameters and contents of a loaded model, read from its GGUF metadata and tensors.</summary>
public sealed record ModelInfo
{
    /// <summary>The architectures the engine runs.</summary>
    public static IReadOnlyList<string> SupportedArchitectures { get; } = ["llama", "qwen2", "qwen3"];

    /// <summary><c>general.architecture</c>: llama, qwen2 or qwen3.</summary>
    public required string Architecture { get; init; }

    /// <summary><c>general.name</c>, when present.</summary>
    public string? Name { get; init; }

    /// <summary>Hidden size.</summary>
    public required int EmbeddingLength { get; init; }

    /// <summary>Transformer blocks.</summary>
    public required int BlockCount { get; init; }

    /// <summary>FFN inner size.</summary>
    public required int FeedForwardLength { get; init; }

    /// <summary>Query heads.</summary>
    public required int HeadCount { get; init; }

    /// <summary>Key/value heads.</summary>
    public required int KvHeadCount { get; init; }

    /// <summary>Size of one head (<c>attention.key_length</c>, or embedding length / heads).</summary>
    public required int HeadDimension { get; init; }

    /// <summary>Dimensions of each head that RoPE rotates.</summary>
    public required int RopeDimensionCount { get; init; }

    /// <summary>RoPE base frequency.</summary>
    public required float RopeFreqBase { get; init; }

    /// <summary>RoPE position scale (1 unless the file asks for linear scaling).</summary>
    public float RopeFreqScale { get; init; } = 1f;

    /// <summary>How RoPE pairs dimensions.</summary>
    public required RopeStyle RopeStyle { get; init; }

    /// <summary>RMSNorm epsilon.</summary>
    public required float RmsEpsilon { get; init; }

    /// <summary>Context length the model was trained with (<c>{arch}.context_length</c>).</summary>
    public required int TrainingContextLength { get; init; }

    /// <summary>Number of tokens in the vocabulary (rows of the embedding matrix).</summary>
    public required int VocabularySize { get; init; }

    /// <summary><c>tokenizer.ggml.bos_token_id</c>, when present.</summary>
    public int? BosTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.eos_token_id</c>, when present.</summary>
    public int? EosTokenId { get; init; }

    /// <summary>True when the output projection reuses the token embeddings (no <c>output.weight</c>).</summary>
    public required bool TiedOutput { get; init; }

    /// <summary>Number of weights in the file's tensors.</summary>
    public required long ParameterCount { get; init; }

    /// <summary>Bytes of tensor data (what a forward pass reads).</summary>
    public required long WeightBytes { get; init; }

    /// <summary>How many tensors of each type the file holds.</summary>
    public required IReadOnlyDictionary<GgmlType, int> TensorTypes { get; init; }

    /// <summary>The model file.</summary>
    public required string FilePath { get; init; }

    /// <summary>Size of the model file in bytes.</summary>
    public required long FileSize { get; init; }

    /// <summary>Query projection width (heads × head size).</summary>
    public int QueryLength => HeadCount * HeadDimension;

    /// <summary>Key/value projection width (KV heads × head size).</summary>
    public int KvLength => KvHeadCount * HeadDimension;
}
