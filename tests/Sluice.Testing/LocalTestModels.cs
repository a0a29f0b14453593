using Sluice.Engine.Gguf;
using Sluice.Engine.Models;

namespace Sluice.Testing;

/// <summary>
/// Random-weight GGUF models for tests of local inference, loadable by Sluice's engine and by llama.cpp: the tensors
/// of <see cref="SyntheticModel"/> with a small SentencePiece chat vocabulary instead of its filler tokens — control
/// tokens <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, <c>&lt;|im_start|&gt;</c>, <c>&lt;|im_end|&gt;</c>, the 256 byte tokens,
/// and English words with every prefix (so the tokenizer merges them) — and a chat template. The models compute
/// nothing meaningful, but their answers are words, so streamed text is readable and chunked at word boundaries.
/// </summary>
public static class LocalTestModels
{
    /// <summary>ChatML, as Qwen and SmolLM write it: ends each turn with &lt;|im_end|&gt; (an end-of-turn token).</summary>
    public const string ChatMLTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>Llama 2's template: writes <c>bos_token</c> itself before every user turn.</summary>
    public const string Llama2Template =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
        + "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
        + "{% for message in loop_messages %}"
        + "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        + "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        + "{% else %}{% set content = message['content'] %}{% endif %}"
        + "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        + "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    /// <summary>Token ids of the chat vocabulary's specials.</summary>
    public const int Unknown = 0, Bos = 1, Eos = 2, ImStart = 3, ImEnd = 4;

    private static readonly string[] Words =
    [
        "the", "and", "water", "river", "light", "house", "stone", "tree", "green", "blue", "sky", "rain", "sun", "moon",
        "star", "night", "day", "morning", "evening", "road", "city", "town", "field", "forest", "hill", "mountain",
        "sea", "boat", "ship", "wind", "cloud", "snow", "fire", "warm", "cold", "old", "new", "small", "large", "long",
        "short", "quiet", "loud", "bright", "dark", "open", "close", "walk", "run", "sing", "read", "write", "speak",
        "listen", "think", "know", "find", "keep", "give", "take", "make", "build", "grow", "turn", "move", "stay",
        "wait", "look", "see", "hear", "tell", "ask", "answer", "story", "song", "word", "book", "page", "letter",
        "door", "window", "garden", "flower", "bird", "fish", "horse", "dog", "cat", "friend", "child", "people",
        "hand", "heart", "mind", "voice", "name", "time", "year", "hour", "way", "place", "world", "home", "lamp",
        "bridge", "tower", "harbor", "island", "shore", "wave", "storm", "path", "wall", "roof", "table", "bread",
        "salt", "iron", "gold", "silver", "paper", "glass", "clock", "bell", "map", "key", "lighthouse", "keeper",
        "is", "was", "are", "of", "to", "in", "on", "at", "by", "with", "from", "a", "an", "it", "we", "they", "you",
        "hello", "world", "yes", "no", "very", "often", "always", "never", "slowly", "again", "together",
    ];

    /// <summary>The vocabulary: specials, byte tokens, then "▁" + every prefix of every word and the punctuation pieces.</summary>
    public static IReadOnlyList<string> Vocabulary { get; } = BuildVocabulary();

    /// <summary>
    /// Writes a model with the chat vocabulary to <paramref name="path"/>. <paramref name="spec"/>'s shape and weight
    /// type are used (its vocabulary size is replaced by the chat vocabulary's).
    /// </summary>
    /// <param name="path">The file to write.</param>
    /// <param name="spec">Architecture, shape, weight type and seed; null for a tiny F32 llama.</param>
    /// <param name="chatTemplate">The template stored in the file; null stores none.</param>
    /// <param name="addBos">The file's <c>add_bos_token</c>.</param>
    public static string WriteChatModel(string path, SyntheticModelSpec? spec = null, string? chatTemplate = ChatMLTemplate, bool addBos = false)
    {
        spec = (spec ?? Tiny()) with { VocabularySize = Vocabulary.Count };
        var synthetic = path + ".synthetic";
        SyntheticModel.Write(synthetic, spec);
        try
        {
            using var source = GgufFile.Open(synthetic);
            var writer = new GgufWriter(source.Alignment);
            foreach (var key in source.MetadataKeys)
            {
                if (key != GgufFile.AlignmentKey && !key.StartsWith("tokenizer.", StringComparison.Ordinal))
                {
                    writer.Add(key, source.Metadata[key]);
                }
            }

            AddVocabulary(writer, chatTemplate, addBos);
            foreach (var tensor in source.Tensors)
            {
                writer.AddTensor(tensor.Name, tensor.Type, [.. tensor.Dimensions], source.GetTensorData(tensor).ToArray());
            }

            writer.WriteTo(path);
        }
        finally
        {
            File.Delete(synthetic);
        }

        return path;
    }

    /// <summary>A tiny shape (d 64, 2 layers, ff 128, 4/2 heads) that loads and generates in milliseconds.</summary>
    public static SyntheticModelSpec Tiny(string architecture = "llama", GgmlType type = GgmlType.F32, int seed = 1) => new()
    {
        Architecture = architecture,
        EmbeddingLength = type is GgmlType.Q4_K or GgmlType.Q6_K ? 256 : 64,
        FeedForwardLength = type is GgmlType.Q4_K or GgmlType.Q6_K ? 256 : 128,
        HeadCount = 4,
        KvHeadCount = 2,
        BlockCount = 2,
        WeightType = type,
        Seed = seed,
    };

    private static void AddVocabulary(GgufWriter w, string? chatTemplate, bool addBos)
    {
        var tokens = Vocabulary.ToArray();
        var scores = new float[tokens.Length];
        var types = new int[tokens.Length];
        types[Unknown] = 2;
        for (var i = 1; i <= ImEnd; i++)
        {
            types[i] = 3;
        }

        for (var b = 0; b < 256; b++)
        {
            types[ImEnd + 1 + b] = 6;
        }

        for (var i = ImEnd + 257; i < tokens.Length; i++)
        {
            types[i] = 1;

            // SentencePiece merges the best-scoring pair first; longer pieces score higher, so words come out whole.
            scores[i] = tokens[i].Length - (i * 1e-4f);
        }

        w.AddString("tokenizer.ggml.model", "llama");
        w.AddArray("tokenizer.ggml.tokens", tokens);
        w.AddArray("tokenizer.ggml.scores", scores);
        w.AddArray("tokenizer.ggml.token_type", types);
        w.AddUInt32("tokenizer.ggml.bos_token_id", Bos);
        w.AddUInt32("tokenizer.ggml.eos_token_id", Eos);
        w.AddUInt32("tokenizer.ggml.unknown_token_id", Unknown);
        w.AddBoolean("tokenizer.ggml.add_bos_token", addBos);
        w.AddBoolean("tokenizer.ggml.add_eos_token", false);
        if (chatTemplate is not null)
        {
            w.AddString("tokenizer.chat_template", chatTemplate);
        }
    }

    private static List<string> BuildVocabulary()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>" };
        for (var b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
        }

        var seen = new HashSet<string>(tokens, StringComparer.Ordinal);
        void Add(string piece)
        {
            if (seen.Add(piece))
            {
                tokens.Add(piece);
            }
        }

        Add("\u2581");
        foreach (var punctuation in new[] { ".", ",", "!", "?", ":" })
        {
            Add(punctuation);
        }

        foreach (var word in Words)
        {
            for (var length = 1; length <= word.Length; length++)
            {
                Add("\u2581" + word[..length]);
            }
        }

        return tokens;
    }
}
