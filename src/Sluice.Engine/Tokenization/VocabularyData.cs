using System.Collections;
using System.Globalization;
using Sluice.Engine.Gguf;

namespace Sluice.Engine.Tokenization;

/// <summary>
/// The tokenizer part of a GGUF file's metadata, as plain data (the <c>tokenizer.ggml.*</c> and <c>tokenizer.chat_template</c>
/// keys). Build it from a GGUF reader's key/value pairs with <see cref="FromMetadata"/>, or directly in code.
/// </summary>
public sealed class VocabularyData
{
    /// <summary><c>tokenizer.ggml.model</c>: <c>llama</c> (SentencePiece) or <c>gpt2</c> (byte-level BPE).</summary>
    public required string Model { get; init; }

    /// <summary><c>tokenizer.ggml.pre</c>: the BPE pre-tokenizer (<c>llama-bpe</c>, <c>qwen2</c>, <c>gpt-2</c>, …).</summary>
    public string? Pre { get; init; }

    /// <summary><c>tokenizer.ggml.tokens</c>: token texts by id (BPE: in the byte-to-unicode alphabet; SPM: with ▁ for spaces).</summary>
    public required IReadOnlyList<string> Tokens { get; init; }

    /// <summary><c>tokenizer.ggml.scores</c>: SentencePiece merge scores by id (higher merges first).</summary>
    public IReadOnlyList<float>? Scores { get; init; }

    /// <summary><c>tokenizer.ggml.token_type</c>: <see cref="GgufTokenType"/> values by id.</summary>
    public IReadOnlyList<int>? TokenTypes { get; init; }

    /// <summary><c>tokenizer.ggml.merges</c>: BPE merges "left right" by rank.</summary>
    public IReadOnlyList<string>? Merges { get; init; }

    /// <summary><c>tokenizer.ggml.bos_token_id</c>.</summary>
    public int? BosTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.eos_token_id</c>.</summary>
    public int? EosTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.eot_token_id</c>.</summary>
    public int? EotTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.eom_token_id</c>.</summary>
    public int? EomTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.unknown_token_id</c>.</summary>
    public int? UnknownTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.padding_token_id</c>.</summary>
    public int? PaddingTokenId { get; init; }

    /// <summary><c>tokenizer.ggml.add_bos_token</c>.</summary>
    public bool? AddBosToken { get; init; }

    /// <summary><c>tokenizer.ggml.add_eos_token</c>.</summary>
    public bool? AddEosToken { get; init; }

    /// <summary><c>tokenizer.ggml.add_space_prefix</c> (SentencePiece's dummy prefix).</summary>
    public bool? AddSpacePrefix { get; init; }

    /// <summary><c>tokenizer.chat_template</c>: the model's Jinja chat template.</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>The GGUF metadata keys this type reads.</summary>
    public static class Keys
    {
        /// <summary>Tokenizer model name.</summary>
        public const string Model = "tokenizer.ggml.model";
        /// <summary>Pre-tokenizer name.</summary>
        public const string Pre = "tokenizer.ggml.pre";
        /// <summary>Token texts.</summary>
        public const string Tokens = "tokenizer.ggml.tokens";
        /// <summary>Token scores.</summary>
        public const string Scores = "tokenizer.ggml.scores";
        /// <summary>Token types.</summary>
        public const string TokenType = "tokenizer.ggml.token_type";
        /// <summary>BPE merges.</summary>
        public const string Merges = "tokenizer.ggml.merges";
        /// <summary>BOS id.</summary>
        public const string BosId = "tokenizer.ggml.bos_token_id";
        /// <summary>EOS id.</summary>
        public const string EosId = "tokenizer.ggml.eos_token_id";
        /// <summary>EOT id.</summary>
        public const string EotId = "tokenizer.ggml.eot_token_id";
        /// <summary>EOM id.</summary>
        public const string EomId = "tokenizer.ggml.eom_token_id";
        /// <summary>Unknown id.</summary>
        public const string UnknownId = "tokenizer.ggml.unknown_token_id";
        /// <summary>Padding id.</summary>
        public const string PaddingId = "tokenizer.ggml.padding_token_id";
        /// <summary>Add BOS flag.</summary>
        public const string AddBos = "tokenizer.ggml.add_bos_token";
        /// <summary>Add EOS flag.</summary>
        public const string AddEos = "tokenizer.ggml.add_eos_token";
        /// <summary>Add space prefix flag.</summary>
        public const string AddSpacePrefix = "tokenizer.ggml.add_space_prefix";
        /// <summary>Chat template.</summary>
        public const string ChatTemplate = "tokenizer.chat_template";
    }

    /// <summary>
    /// Reads the tokenizer keys from GGUF metadata. Values may be any .NET numeric/bool/string type and arrays may be any
    /// enumerable of them, so any GGUF reader's value representation works.
    /// </summary>
    public static VocabularyData FromMetadata(IReadOnlyDictionary<string, object?> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        var model = GetString(metadata, Keys.Model)
            ?? throw new InvalidDataException($"GGUF metadata has no '{Keys.Model}'.");
        var tokens = GetList(metadata, Keys.Tokens, o => Convert.ToString(o, CultureInfo.InvariantCulture) ?? "")
            ?? throw new InvalidDataException($"GGUF metadata has no '{Keys.Tokens}'.");
        return new VocabularyData
        {
            Model = model,
            Pre = GetString(metadata, Keys.Pre),
            Tokens = tokens,
            Scores = GetList(metadata, Keys.Scores, o => Convert.ToSingle(o, CultureInfo.InvariantCulture)),
            TokenTypes = GetList(metadata, Keys.TokenType, o => Convert.ToInt32(o, CultureInfo.InvariantCulture)),
            Merges = GetList(metadata, Keys.Merges, o => Convert.ToString(o, CultureInfo.InvariantCulture) ?? ""),
            BosTokenId = GetInt(metadata, Keys.BosId),
            EosTokenId = GetInt(metadata, Keys.EosId),
            EotTokenId = GetInt(metadata, Keys.EotId),
            EomTokenId = GetInt(metadata, Keys.EomId),
            UnknownTokenId = GetInt(metadata, Keys.UnknownId),
            PaddingTokenId = GetInt(metadata, Keys.PaddingId),
            AddBosToken = GetBool(metadata, Keys.AddBos),
            AddEosToken = GetBool(metadata, Keys.AddEos),
            AddSpacePrefix = GetBool(metadata, Keys.AddSpacePrefix),
            ChatTemplate = GetString(metadata, Keys.ChatTemplate),
        };
    }

    /// <summary>Reads the tokenizer keys of an open GGUF file.</summary>
    public static VocabularyData FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return FromMetadata(file.Metadata.ToDictionary(kv => kv.Key, kv => (object?)kv.Value.Value, StringComparer.Ordinal));
    }

    private static string? GetString(IReadOnlyDictionary<string, object?> m, string key) =>
        m.TryGetValue(key, out var v) && v is not null ? Convert.ToString(v, CultureInfo.InvariantCulture) : null;

    private static int? GetInt(IReadOnlyDictionary<string, object?> m, string key) =>
        m.TryGetValue(key, out var v) && v is not null ? Convert.ToInt32(v, CultureInfo.InvariantCulture) : null;

    private static bool? GetBool(IReadOnlyDictionary<string, object?> m, string key) =>
        m.TryGetValue(key, out var v) && v is not null ? Convert.ToBoolean(v, CultureInfo.InvariantCulture) : null;

    private static T[]? GetList<T>(IReadOnlyDictionary<string, object?> m, string key, Func<object, T> convert)
    {
        if (!m.TryGetValue(key, out var v) || v is null)
        {
            return null;
        }
        if (v is T[] typed)
        {
            return typed;
        }
        if (v is string || v is not IEnumerable items)
        {
            throw new InvalidDataException($"GGUF metadata '{key}' is not an array.");
        }
        var result = new List<T>();
        foreach (var item in items)
        {
            result.Add(convert(item!));
        }
        return [.. result];
    }
}
