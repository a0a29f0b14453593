using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;

namespace Sluice.Engine.Models;

/// <summary>The weights of one transformer block, pointing into the file mapping (small vectors are copied to f32).</summary>
internal sealed class LayerWeights
{
    public required float[] AttentionNorm { get; init; }

    public required WeightMatrix Query { get; init; }

    public required WeightMatrix Key { get; init; }

    public required WeightMatrix Value { get; init; }

    public required WeightMatrix AttentionOutput { get; init; }

    public float[]? QueryBias { get; init; }

    public float[]? KeyBias { get; init; }

    public float[]? ValueBias { get; init; }

    public float[]? OutputBias { get; init; }

    public float[]? QueryNorm { get; init; }

    public float[]? KeyNorm { get; init; }

    public required float[] FfnNorm { get; init; }

    public required WeightMatrix Gate { get; init; }

    public required WeightMatrix Up { get; init; }

    public required WeightMatrix Down { get; init; }
}

/// <summary>Reads and checks a model's hyper-parameters and tensors from a GGUF file.</summary>
internal sealed unsafe class TransformerWeights
{
    private TransformerWeights(ModelInfo info, WeightMatrix embeddings, WeightMatrix output, float[] outputNorm, LayerWeights[] layers, float[]? ropeFactors)
    {
        Info = info;
        Embeddings = embeddings;
        Output = output;
        OutputNorm = outputNorm;
        Layers = layers;
        RopeFactors = ropeFactors;
    }

    public ModelInfo Info { get; }

    public WeightMatrix Embeddings { get; }

    public WeightMatrix Output { get; }

    public float[] OutputNorm { get; }

    public LayerWeights[] Layers { get; }

    /// <summary>Per-frequency divisors of RoPE angles (<c>rope_freqs.weight</c>, Llama 3.1+), or null.</summary>
    public float[]? RopeFactors { get; }

    public static TransformerWeights Load(GgufFile file)
    {
        var path = file.FilePath;
        var arch = file.GetString("general.architecture", string.Empty);
        if (!ModelInfo.SupportedArchitectures.Contains(arch))
        {
            throw new ModelLoadException(path, arch.Length == 0
                ? $"general.architecture is missing; supported architectures: {string.Join(", ", ModelInfo.SupportedArchitectures)}"
                : $"architecture '{arch}' is not supported; supported architectures: {string.Join(", ", ModelInfo.SupportedArchitectures)}");
        }

        int Required(string key)
        {
            var value = file.GetUInt32($"{arch}.{key}");
            return value is > 0 and <= int.MaxValue ? (int)value : throw new ModelLoadException(path, $"{arch}.{key} = {value} is out of range");
        }

        var d = Required("embedding_length");
        var blocks = Required("block_count");
        var ff = Required("feed_forward_length");
        var heads = Required("attention.head_count");
        var kvHeads = (int)file.GetUInt32($"{arch}.attention.head_count_kv", (uint)heads);
        if (kvHeads <= 0 || heads % kvHeads != 0)
        {
            throw new ModelLoadException(path, $"{heads} query heads cannot share {kvHeads} key/value heads");
        }

        var headDim = (int)file.GetUInt32($"{arch}.attention.key_length", (uint)(d / heads));
        var valueDim = (int)file.GetUInt32($"{arch}.attention.value_length", (uint)headDim);
        if (valueDim != headDim)
        {
            throw new ModelLoadException(path, $"key length {headDim} and value length {valueDim} differ; only equal lengths are supported");
        }

        if (file.ContainsKey($"{arch}.attention.key_length") is false && d % heads != 0)
        {
            throw new ModelLoadException(path, $"embedding length {d} is not a multiple of the {heads} heads and attention.key_length is missing");
        }

        var nRot = (int)file.GetUInt32($"{arch}.rope.dimension_count", (uint)headDim);
        if (nRot > headDim || nRot % 2 != 0)
        {
            throw new ModelLoadException(path, $"rope.dimension_count {nRot} must be even and at most the head size {headDim}");
        }

        if (arch == "qwen3" && nRot != headDim)
        {
            throw new ModelLoadException(path, $"qwen3 rotates whole heads, but rope.dimension_count {nRot} ≠ head size {headDim}");
        }

        var freqScale = 1f;
        var scalingType = file.GetString($"{arch}.rope.scaling.type", "none");
        if (scalingType == "linear")
        {
            var factor = file.GetSingle($"{arch}.rope.scaling.factor", 1f);
            freqScale = factor > 0 ? 1f / factor : 1f;
        }
        else if (scalingType != "none")
        {
            throw new ModelLoadException(path, $"RoPE scaling '{scalingType}' is not supported (supported: none, linear)");
        }

        var embeddings = Matrix(file, "token_embd.weight", d, null);
        var vocab = embeddings.Rows;
        var tied = !file.TryGetTensor("output.weight", out _);
        var output = tied ? embeddings : Matrix(file, "output.weight", d, vocab);

        var layers = new LayerWeights[blocks];
        var qDim = heads * headDim;
        var kvDim = kvHeads * headDim;
        for (var i = 0; i < blocks; i++)
        {
            var p = $"blk.{i}.";
            if (file.TryGetTensor(p + "attn_qkv.weight", out _) && !file.TryGetTensor(p + "attn_q.weight", out _))
            {
                throw new ModelLoadException(path, $"fused '{p}attn_qkv.weight' is not supported; expected separate attn_q/attn_k/attn_v");
            }

            layers[i] = new LayerWeights
            {
                AttentionNorm = Vector(file, p + "attn_norm.weight", d, required: true)!,
                Query = Matrix(file, p + "attn_q.weight", d, qDim),
                Key = Matrix(file, p + "attn_k.weight", d, kvDim),
                Value = Matrix(file, p + "attn_v.weight", d, kvDim),
                AttentionOutput = Matrix(file, p + "attn_output.weight", qDim, d),
                QueryBias = Vector(file, p + "attn_q.bias", qDim, required: arch == "qwen2"),
                KeyBias = Vector(file, p + "attn_k.bias", kvDim, required: arch == "qwen2"),
                ValueBias = Vector(file, p + "attn_v.bias", kvDim, required: arch == "qwen2"),
                OutputBias = Vector(file, p + "attn_output.bias", d, required: false),
                QueryNorm = arch == "qwen3" ? Vector(file, p + "attn_q_norm.weight", headDim, required: true) : null,
                KeyNorm = arch == "qwen3" ? Vector(file, p + "attn_k_norm.weight", headDim, required: true) : null,
                FfnNorm = Vector(file, p + "ffn_norm.weight", d, required: true)!,
                Gate = Matrix(file, p + "ffn_gate.weight", d, ff),
                Up = Matrix(file, p + "ffn_up.weight", d, ff),
                Down = Matrix(file, p + "ffn_down.weight", ff, d),
            };
        }

        var outputNorm = Vector(file, "output_norm.weight", d, required: true)!;
        var ropeFactors = Vector(file, "rope_freqs.weight", nRot / 2, required: false);

        var types = new SortedDictionary<GgmlType, int>();
        long parameters = 0, weightBytes = 0;
        foreach (var t in file.Tensors)
        {
            types[t.Type] = types.GetValueOrDefault(t.Type) + 1;
            parameters += t.ElementCount;
            weightBytes += t.ByteSize;
        }

        int? TokenId(string key) => file.ContainsKey(key) ? file.GetInt32(key) : null;

        var info = new ModelInfo
        {
            Architecture = arch,
            Name = file.ContainsKey("general.name") ? file.GetString("general.name") : null,
            EmbeddingLength = d,
            BlockCount = blocks,
            FeedForwardLength = ff,
            HeadCount = heads,
            KvHeadCount = kvHeads,
            HeadDimension = headDim,
            RopeDimensionCount = nRot,
            RopeFreqBase = file.GetSingle($"{arch}.rope.freq_base", 10000f),
            RopeFreqScale = freqScale,
            RopeStyle = arch == "llama" ? RopeStyle.Normal : RopeStyle.Neox,
            RmsEpsilon = file.GetSingle($"{arch}.attention.layer_norm_rms_epsilon"),
            TrainingContextLength = Required("context_length"),
            VocabularySize = vocab,
            BosTokenId = TokenId("tokenizer.ggml.bos_token_id"),
            EosTokenId = TokenId("tokenizer.ggml.eos_token_id"),
            TiedOutput = tied,
            ParameterCount = parameters,
            WeightBytes = weightBytes,
            TensorTypes = types,
            FilePath = path,
            FileSize = file.FileLength,
        };
        return new TransformerWeights(info, embeddings, output, outputNorm, layers, ropeFactors);
    }

    private static WeightMatrix Matrix(GgufFile file, string name, int columns, int? rows)
    {
        if (!file.TryGetTensor(name, out var tensor))
        {
            throw new ModelLoadException(file.FilePath, $"tensor '{name}' is missing");
        }

        if (tensor.Dimensions.Count != 2 || tensor.Dimensions[0] != columns || (rows is { } r && tensor.Dimensions[1] != r) || tensor.Dimensions[1] > int.MaxValue)
        {
            throw new ModelLoadException(file.FilePath,
                $"tensor '{name}' has shape [{string.Join(", ", tensor.Dimensions)}], expected [{columns}, {(rows?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "n")}]");
        }

        if (!GgmlQuantization.IsSupported(tensor.Type))
        {
            throw new ModelLoadException(file.FilePath, $"tensor '{name}' has type {tensor.Type}; supported: {GgmlQuantization.SupportedTypeNames}");
        }

        return new WeightMatrix(name, tensor.Type, columns, (int)tensor.Dimensions[1], file.GetTensorPointer(tensor));
    }

    private static float[]? Vector(GgufFile file, string name, int length, bool required)
    {
        if (!file.TryGetTensor(name, out var tensor))
        {
            return required ? throw new ModelLoadException(file.FilePath, $"tensor '{name}' is missing") : null;
        }

        if (tensor.ElementCount != length || tensor.Dimensions[0] != length)
        {
            throw new ModelLoadException(file.FilePath, $"tensor '{name}' has shape [{string.Join(", ", tensor.Dimensions)}], expected [{length}]");
        }

        if (!GgmlQuantization.IsSupported(tensor.Type))
        {
            throw new ModelLoadException(file.FilePath, $"tensor '{name}' has type {tensor.Type}");
        }

        // Norms and biases are tiny: a private f32 copy keeps the hot loops type-free.
        var values = new float[length];
        GgmlQuantization.Dequantize(tensor.Type, file.GetTensorData(tensor), values);
        return values;
    }
}
