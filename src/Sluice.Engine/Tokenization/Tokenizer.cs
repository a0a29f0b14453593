using System.Text;

namespace Sluice.Engine.Tokenization;

/// <summary>The tokenizer algorithm a vocabulary uses.</summary>
public enum TokenizerKind
{
    /// <summary>SentencePiece-style (<c>tokenizer.ggml.model = llama</c>): score-ordered merges, <c>&lt;0xXX&gt;</c> byte fallback, ▁ for spaces.</summary>
    SentencePiece,

    /// <summary>Byte-level BPE (<c>tokenizer.ggml.model = gpt2</c>): byte-to-unicode alphabet, merges by rank, a regex pre-tokenizer.</summary>
    BytePairEncoding,
}

/// <summary>
/// Text to token ids and back, built from a GGUF vocabulary, matching llama.cpp's <c>llama_tokenize</c> /
/// <c>llama_detokenize</c> / <c>llama_token_to_piece</c> id for id and byte for byte. Immutable and thread-safe.
/// </summary>
public sealed class Tokenizer
{
    private readonly string[] _texts;
    private readonly float[] _scores;
    private readonly TokenAttributes[] _attributes;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _tokenLookup;
    private readonly Dictionary<string, int>? _mergeRanks;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeLookup;
    private readonly int[] _specialTokens;
    private readonly byte[][] _pieces;
    private readonly HashSet<int> _endOfGeneration;
    private readonly PreTokenizerKind _preTokenizer;
    private readonly bool _ignoreMerges;

    private Tokenizer(VocabularyData data)
    {
        Kind = data.Model switch
        {
            "llama" => TokenizerKind.SentencePiece,
            "gpt2" => TokenizerKind.BytePairEncoding,
            _ => throw new NotSupportedException(
                $"Tokenizer model '{data.Model}' (tokenizer.ggml.model) is not supported; supported: llama (SentencePiece), gpt2 (byte-level BPE)."),
        };
        var n = data.Tokens.Count;
        if (data.Scores is not null && data.Scores.Count < n)
        {
            throw new InvalidDataException($"tokenizer.ggml.scores has {data.Scores.Count} entries for {n} tokens.");
        }
        if (data.TokenTypes is not null && data.TokenTypes.Count < n)
        {
            throw new InvalidDataException($"tokenizer.ggml.token_type has {data.TokenTypes.Count} entries for {n} tokens.");
        }

        _texts = new string[n];
        _scores = new float[n];
        _attributes = new TokenAttributes[n];
        _tokenToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            // llama.cpp renames empty entries; a later duplicate text wins the text-to-id map, as in its unordered_map.
            var text = data.Tokens[i];
            if (text.Length == 0)
            {
                text = $"[EMPTY_{i}]";
            }
            _texts[i] = text;
            _tokenToId[text] = i;
            _scores[i] = data.Scores?[i] ?? 0f;
            _attributes[i] = data.TokenTypes is null ? TokenAttributes.Normal : FromTokenType(data.TokenTypes[i]);
        }
        _tokenLookup = _tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();

        if (Kind == TokenizerKind.BytePairEncoding)
        {
            var merges = data.Merges ?? throw new InvalidDataException("A gpt2 vocabulary needs tokenizer.ggml.merges.");
            _mergeRanks = new Dictionary<string, int>(merges.Count, StringComparer.Ordinal);
            for (var rank = 0; rank < merges.Count; rank++)
            {
                // "left right", split at the first space after the first character; the first occurrence of a pair keeps its rank.
                var merge = merges[rank];
                if (merge.IndexOf(' ', Math.Min(1, merge.Length)) > 0)
                {
                    _mergeRanks.TryAdd(merge, rank);
                }
            }
            _mergeLookup = _mergeRanks.GetAlternateLookup<ReadOnlySpan<char>>();
            _preTokenizer = PreTokenizer.Parse(data.Pre);
            _ignoreMerges = PreTokenizer.IgnoresMerges(data.Pre);
            CleanSpaces = PreTokenizer.CleansSpaces(data.Pre);
            AddSpacePrefix = data.AddSpacePrefix ?? false;
            AddBos = data.AddBosToken ?? false;
            AddEos = data.AddEosToken ?? false;
            BosTokenId = InRange(data.BosTokenId ?? 11);
            EosTokenId = InRange(data.EosTokenId ?? 11);
            UnknownTokenId = InRange(data.UnknownTokenId);
        }
        else
        {
            AddSpacePrefix = data.AddSpacePrefix ?? true;
            AddBos = data.AddBosToken ?? true;
            AddEos = data.AddEosToken ?? false;
            BosTokenId = InRange(data.BosTokenId ?? 1);
            EosTokenId = InRange(data.EosTokenId ?? 2);
            UnknownTokenId = InRange(data.UnknownTokenId ?? 0);
        }
        PaddingTokenId = InRange(data.PaddingTokenId);
        EotTokenId = InRange(data.EotTokenId);
        EomTokenId = InRange(data.EomTokenId);
        if (AddBos && BosTokenId is null)
        {
            throw new InvalidDataException("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set.");
        }
        if (AddEos && EosTokenId is null)
        {
            throw new InvalidDataException("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set.");
        }

        _endOfGeneration = DetectSpecialTokens();

        // Matched in text longest first (by UTF-8 length, as llama.cpp sorts); ties keep id order.
        _specialTokens = [.. Enumerable.Range(0, n)
            .Where(i => (_attributes[i] & (TokenAttributes.Control | TokenAttributes.UserDefined | TokenAttributes.Unknown)) != 0)
            .OrderByDescending(i => Encoding.UTF8.GetByteCount(_texts[i]))
            .ThenBy(i => i)];

        _pieces = new byte[n][];
        for (var i = 0; i < n; i++)
        {
            _pieces[i] = BuildPiece(i);
        }
    }

    /// <summary>Builds a tokenizer from GGUF vocabulary data.</summary>
    /// <exception cref="NotSupportedException">The tokenizer model or pre-tokenizer is not one this engine implements.</exception>
    /// <exception cref="InvalidDataException">The vocabulary data is inconsistent.</exception>
    public static Tokenizer Create(VocabularyData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return new Tokenizer(data);
    }

    /// <summary>The algorithm family.</summary>
    public TokenizerKind Kind { get; }

    /// <summary>Number of tokens in the vocabulary.</summary>
    public int VocabularySize => _texts.Length;

    /// <summary>Beginning-of-sequence token, if the vocabulary has one.</summary>
    public int? BosTokenId { get; }

    /// <summary>End-of-sequence token, if the vocabulary has one.</summary>
    public int? EosTokenId { get; }

    /// <summary>End-of-turn token (given, or found by name like <c>&lt;|eot_id|&gt;</c>, <c>&lt;|im_end|&gt;</c>).</summary>
    public int? EotTokenId { get; private set; }

    /// <summary>End-of-message token (<c>&lt;|eom_id|&gt;</c>).</summary>
    public int? EomTokenId { get; private set; }

    /// <summary>Unknown token.</summary>
    public int? UnknownTokenId { get; }

    /// <summary>Padding token.</summary>
    public int? PaddingTokenId { get; }

    /// <summary>Whether <see cref="Encode"/> with <c>addSpecial</c> puts BOS first (<c>tokenizer.ggml.add_bos_token</c>).</summary>
    public bool AddBos { get; }

    /// <summary>Whether <see cref="Encode"/> with <c>addSpecial</c> puts EOS last.</summary>
    public bool AddEos { get; }

    /// <summary>SentencePiece's dummy prefix: a space before text at the start and after special tokens; stripped again by decoding.</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>Whether <see cref="Decode"/> cleans spaces before punctuation by default (llama.cpp's <c>clean_spaces</c>).</summary>
    public bool CleanSpaces { get; }

    /// <summary>The tokens that end a generation (EOS, EOT, EOM and the end tokens llama.cpp recognises by name).</summary>
    public IReadOnlySet<int> EndOfGenerationTokenIds => _endOfGeneration;

    /// <summary>Whether <paramref name="id"/> ends a generation.</summary>
    public bool IsEndOfGeneration(int id) => _endOfGeneration.Contains(id);

    /// <summary>The token's text as stored in the vocabulary (BPE: byte-to-unicode alphabet; SPM: ▁ for spaces).</summary>
    public string GetTokenText(int id) => _texts[CheckId(id)];

    /// <summary>The token's attributes.</summary>
    public TokenAttributes GetAttributes(int id) => _attributes[CheckId(id)];

    /// <summary>The id of the token whose vocabulary text is exactly <paramref name="text"/>, if any.</summary>
    public int? FindToken(string text) => _tokenToId.TryGetValue(text, out var id) ? id : null;

    /// <summary>
    /// Tokenizes <paramref name="text"/> as <c>llama_tokenize</c> does. <paramref name="addSpecial"/> adds BOS/EOS as the
    /// vocabulary asks (<see cref="AddBos"/>, <see cref="AddEos"/>); <paramref name="parseSpecial"/> turns control-token
    /// texts in <paramref name="text"/> into their tokens (user-defined tokens are always matched).
    /// </summary>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = Codepoints.Sanitize(text);
        var output = new List<int>(text.Length / 3 + 4);
        var fragments = Partition(text, parseSpecial);
        if (Kind == TokenizerKind.SentencePiece)
        {
            var previousSpecial = true;
            if (addSpecial && AddBos)
            {
                output.Add(BosTokenId!.Value);
            }
            foreach (var fragment in fragments)
            {
                if (fragment.Token >= 0)
                {
                    output.Add(fragment.Token);
                    previousSpecial = true;
                    continue;
                }
                var piece = text.AsSpan(fragment.Start, fragment.Length);
                var prefixed = AddSpacePrefix && previousSpecial ? string.Concat(" ", piece) : piece.ToString();
                new SpmSession(this, prefixed.Replace(" ", "\u2581", StringComparison.Ordinal)).Tokenize(output);
                previousSpecial = false;
            }
        }
        else
        {
            if (addSpecial && AddBos)
            {
                output.Add(BosTokenId!.Value);
            }
            foreach (var fragment in fragments)
            {
                if (fragment.Token >= 0)
                {
                    output.Add(fragment.Token);
                }
                else
                {
                    TokenizeBpe(text.Substring(fragment.Start, fragment.Length), output);
                }
            }
        }
        if (addSpecial && AddEos)
        {
            output.Add(EosTokenId!.Value);
        }
        return [.. output];
    }

    /// <summary>
    /// The bytes one token stands for (<c>llama_token_to_piece</c>): possibly part of a UTF-8 character. Control and unknown
    /// tokens are empty unless <paramref name="special"/>; up to <paramref name="lstrip"/> leading spaces are dropped.
    /// </summary>
    public ReadOnlySpan<byte> GetPiece(int id, bool special = true, int lstrip = 0)
    {
        CheckId(id);
        if (!special && (_attributes[id] & (TokenAttributes.Unknown | TokenAttributes.Control)) != 0)
        {
            return [];
        }
        var piece = _pieces[id].AsSpan();
        for (var i = 0; i < lstrip && piece.Length > 0 && piece[0] == (byte)' '; i++)
        {
            piece = piece[1..];
        }
        return piece;
    }

    /// <summary>The token's piece as text (invalid UTF-8, such as half a character, becomes U+FFFD).</summary>
    public string GetPieceText(int id, bool special = true) => Encoding.UTF8.GetString(GetPiece(id, special));

    /// <summary>
    /// Detokenizes as <c>llama_detokenize</c>: the first piece loses its dummy-prefix space (<see cref="AddSpacePrefix"/>);
    /// <paramref name="removeSpecial"/> drops an added BOS/EOS; <paramref name="unparseSpecial"/> renders control tokens;
    /// <paramref name="cleanSpaces"/> (default <see cref="CleanSpaces"/>) removes spaces before punctuation and contractions.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool removeSpecial = false, bool unparseSpecial = false, bool? cleanSpaces = null) =>
        Encoding.UTF8.GetString(DecodeBytes(ids, removeSpecial, unparseSpecial, cleanSpaces));

    /// <summary>As <see cref="Decode"/>, but the raw bytes (which need not be valid UTF-8).</summary>
    public byte[] DecodeBytes(IEnumerable<int> ids, bool removeSpecial = false, bool unparseSpecial = false, bool? cleanSpaces = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = ids as IReadOnlyList<int> ?? [.. ids];
        int first = 0, count = tokens.Count;
        var removeSpace = AddSpacePrefix;
        if (removeSpecial && AddBos && count > 0 && tokens[0] == BosTokenId)
        {
            removeSpace = false;
            first++;
            count--;
        }
        if (removeSpecial && AddEos && count > 0 && tokens[first + count - 1] == EosTokenId)
        {
            count--;
        }
        var bytes = new List<byte>(count * 4);
        for (var i = first; i < first + count; i++)
        {
            bytes.AddRange(GetPiece(tokens[i], unparseSpecial, removeSpace ? 1 : 0));
            removeSpace = false;
        }
        var result = bytes.ToArray();
        return cleanSpaces ?? CleanSpaces ? CleanUpSpaces(result) : result;
    }

    /// <summary>A streaming detokenizer over this vocabulary (see <see cref="StreamingDetokenizer"/>).</summary>
    public StreamingDetokenizer CreateStreamingDetokenizer(bool renderSpecial = false, bool? stripLeadingSpace = null) =>
        new(this, renderSpecial, stripLeadingSpace ?? AddSpacePrefix);

    private int CheckId(int id) => (uint)id < (uint)_texts.Length
        ? id
        : throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id out of range (vocabulary of {_texts.Length}).");

    private int? InRange(int? id) => id is { } v && v >= 0 && v < _texts.Length ? v : null;

    private static TokenAttributes FromTokenType(int type) => (GgufTokenType)type switch
    {
        GgufTokenType.Unknown => TokenAttributes.Unknown,
        GgufTokenType.Unused => TokenAttributes.Unused,
        GgufTokenType.Normal => TokenAttributes.Normal,
        GgufTokenType.Control => TokenAttributes.Control,
        GgufTokenType.UserDefined => TokenAttributes.UserDefined,
        GgufTokenType.Byte => TokenAttributes.Byte,
        _ => TokenAttributes.Undefined,
    };

    // The end-of-turn and fill-in-the-middle tokens llama.cpp finds by their text (marking them control), and the
    // end-of-generation set it derives; the names are llama.cpp's list for the families it knows.
    private static readonly string[] EotNames =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
         "<｜end▁of▁sentence｜>", "<end_of_utterance>"];

    private static readonly string[] EogNames =
        ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>",
         "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>",
         "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["];

    private static readonly string[][] FimNames =
    [
        ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
        ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
        ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"],
    ];

    private static readonly string[] FimPadNames = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
    private static readonly string[] FimRepNames = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
    private static readonly string[] FimSepNames = ["<|file_sep|>"];

    private HashSet<int> DetectSpecialTokens()
    {
        int? FindAndMark(string[] names)
        {
            foreach (var name in names)
            {
                if (_tokenToId.TryGetValue(name, out var id))
                {
                    _attributes[id] |= TokenAttributes.Control;
                    return id;
                }
            }
            return null;
        }

        EotTokenId ??= FindAndMark(EotNames);
        EomTokenId ??= FindAndMark(["<|eom_id|>"]);
        foreach (var names in FimNames)
        {
            FindAndMark(names);
        }
        var eog = new HashSet<int>();
        foreach (var names in new[] { FimPadNames, FimRepNames, FimSepNames })
        {
            if (FindAndMark(names) is { } id)
            {
                eog.Add(id);
            }
        }
        for (var i = 0; i < _texts.Length; i++)
        {
            if ((_attributes[i] & TokenAttributes.Control) != 0 && _texts[i].Contains("unused", StringComparison.Ordinal))
            {
                _attributes[i] |= TokenAttributes.Unused;
            }
        }
        foreach (var name in EogNames)
        {
            if (_tokenToId.TryGetValue(name, out var id))
            {
                eog.Add(id);
                _attributes[id] |= TokenAttributes.Control;
            }
        }
        foreach (var name in (string[])["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"])
        {
            if (_tokenToId.TryGetValue(name, out var id))
            {
                _attributes[id] = TokenAttributes.UserDefined;
            }
        }
        foreach (var id in new[] { EosTokenId, EotTokenId, EomTokenId })
        {
            if (id is { } v)
            {
                eog.Add(v);
            }
        }
        return eog;
    }

    private byte[] BuildPiece(int id)
    {
        var attr = _attributes[id];
        var text = _texts[id];
        if ((attr & (TokenAttributes.Unknown | TokenAttributes.Control | TokenAttributes.UserDefined)) != 0)
        {
            return Encoding.UTF8.GetBytes(text);
        }
        if ((attr & TokenAttributes.Normal) != 0)
        {
            return Kind == TokenizerKind.SentencePiece
                ? Encoding.UTF8.GetBytes(text.Replace("\u2581", " ", StringComparison.Ordinal))
                : ByteLevel.DecodeTokenText(text);
        }
        if ((attr & TokenAttributes.Byte) != 0)
        {
            return [ByteLevel.ParseByteToken(text)];
        }
        return [];
    }

    private readonly record struct Fragment(int Start, int Length, int Token);

    // llama.cpp's tokenizer_st_partition: every special token, longest first, is cut out of the raw text fragments.
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<Fragment>();
        if (text.Length == 0)
        {
            return fragments;
        }
        fragments.Add(new Fragment(0, text.Length, -1));
        foreach (var id in _specialTokens)
        {
            var attr = _attributes[id];
            if (!parseSpecial && (attr & (TokenAttributes.Control | TokenAttributes.Unknown)) != 0)
            {
                continue;
            }
            var special = _texts[id];
            for (var f = 0; f < fragments.Count; f++)
            {
                var fragment = fragments[f];
                if (fragment.Token >= 0)
                {
                    continue;
                }
                var match = text.IndexOf(special, fragment.Start, fragment.Length, StringComparison.Ordinal);
                if (match < 0)
                {
                    continue;
                }
                var replacement = new List<Fragment>(3);
                var leftLength = match - fragment.Start;
                if ((attr & TokenAttributes.LStrip) != 0)
                {
                    while (leftLength > 0 && IsCSpace(text[fragment.Start + leftLength - 1]))
                    {
                        leftLength--;
                    }
                }
                if (leftLength > 0)
                {
                    replacement.Add(new Fragment(fragment.Start, leftLength, -1));
                }
                replacement.Add(new Fragment(match, special.Length, id));
                var rightStart = match + special.Length;
                var rightLength = fragment.Start + fragment.Length - rightStart;
                if ((attr & TokenAttributes.RStrip) != 0)
                {
                    while (rightLength > 0 && IsCSpace(text[rightStart]))
                    {
                        rightStart++;
                        rightLength--;
                    }
                }
                if (rightLength > 0)
                {
                    replacement.Add(new Fragment(rightStart, rightLength, -1));
                }
                fragments.RemoveAt(f);
                fragments.InsertRange(f, replacement);
                // The right remainder (if any) is the next raw fragment the loop visits, so every occurrence is found.
                f += replacement.Count - (rightLength > 0 ? 2 : 1);
            }
        }
        return fragments;
    }

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';

    private void TokenizeBpe(string text, List<int> output)
    {
        var cpts = Codepoints.FromString(text);
        var lengths = PreTokenizer.Split(cpts, _preTokenizer);
        var start = 0;
        var utf8 = new List<byte>(64);
        foreach (var length in lengths)
        {
            utf8.Clear();
            for (var i = start; i < start + length; i++)
            {
                Utf8.Append(utf8, cpts[i]);
            }
            start += length;
            var word = ByteLevel.Encode(utf8);
            new BpeSession(this, word).Tokenize(output);
        }
    }

    private int? Lookup(ReadOnlySpan<char> text) => _tokenLookup.TryGetValue(text, out var id) ? id : null;

    private int MergeRank(ReadOnlySpan<char> left, ReadOnlySpan<char> right)
    {
        Span<char> key = left.Length + right.Length + 1 <= 256 ? stackalloc char[left.Length + right.Length + 1] : new char[left.Length + right.Length + 1];
        left.CopyTo(key);
        key[left.Length] = ' ';
        right.CopyTo(key[(left.Length + 1)..]);
        return _mergeLookup.TryGetValue(key, out var rank) ? rank : -1;
    }

    private int ByteToToken(byte b)
    {
        if (Kind == TokenizerKind.SentencePiece)
        {
            if (Lookup($"<0x{b:X2}>") is { } id)
            {
                return id;
            }
            if (b < 0x80 && Lookup(((char)b).ToString()) is { } raw)
            {
                return raw;
            }
            throw new InvalidDataException($"The vocabulary has no byte token <0x{b:X2}> for byte fallback.");
        }
        return Lookup(ByteLevel.EncodeByte(b).ToString())
            ?? throw new InvalidDataException($"The vocabulary has no byte-level token for byte 0x{b:X2}.");
    }

    private struct Symbol
    {
        public int Prev;
        public int Next;
        public int Start;
        public int Length;
    }

    /// <summary>llama.cpp's SPM session: symbols are characters; the highest-scoring adjacent pair that is a token merges first.</summary>
    private sealed class SpmSession(Tokenizer vocab, string text)
    {
        private readonly List<Symbol> _symbols = [];
        private readonly PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)> _queue = new(SpmOrder.Instance);
        private readonly Dictionary<string, (int Left, int Right)> _revMerge = new(StringComparer.Ordinal);

        public void Tokenize(List<int> output)
        {
            var offset = 0;
            var index = 0;
            while (offset < text.Length)
            {
                var len = char.IsHighSurrogate(text[offset]) && offset + 1 < text.Length ? 2 : 1;
                _symbols.Add(new Symbol { Start = offset, Length = len, Prev = index - 1, Next = offset + len == text.Length ? -1 : index + 1 });
                offset += len;
                index++;
            }
            for (var i = 1; i < _symbols.Count; i++)
            {
                TryAddBigram(i - 1, i);
            }
            while (_queue.TryDequeue(out var bigram, out _))
            {
                var left = _symbols[bigram.Left];
                var right = _symbols[bigram.Right];
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != bigram.Size)
                {
                    continue;
                }
                left.Length += right.Length;
                right.Length = 0;
                left.Next = right.Next;
                if (right.Next >= 0)
                {
                    var next = _symbols[right.Next];
                    next.Prev = bigram.Left;
                    _symbols[right.Next] = next;
                }
                _symbols[bigram.Left] = left;
                _symbols[bigram.Right] = right;
                TryAddBigram(left.Prev, bigram.Left);
                TryAddBigram(bigram.Left, left.Next);
            }
            for (var i = _symbols.Count == 0 ? -1 : 0; i != -1; i = _symbols[i].Next)
            {
                Resegment(_symbols[i], output);
            }
        }

        private void Resegment(Symbol symbol, List<int> output)
        {
            var piece = text.AsSpan(symbol.Start, symbol.Length);
            if (vocab.Lookup(piece) is { } id)
            {
                output.Add(id);
                return;
            }
            if (_revMerge.TryGetValue(piece.ToString(), out var pair))
            {
                Resegment(_symbols[pair.Left], output);
                Resegment(_symbols[pair.Right], output);
                return;
            }
            foreach (var b in Encoding.UTF8.GetBytes(piece.ToString()))
            {
                output.Add(vocab.ByteToToken(b));
            }
        }

        private void TryAddBigram(int left, int right)
        {
            if (left == -1 || right == -1)
            {
                return;
            }
            var l = _symbols[left];
            var r = _symbols[right];
            var piece = text.AsSpan(l.Start, l.Length + r.Length);
            if (vocab.Lookup(piece) is not { } id)
            {
                return;
            }
            _queue.Enqueue((left, right, piece.Length), (vocab._scores[id], left));
            _revMerge[piece.ToString()] = (left, right);
        }
    }

    /// <summary>Highest score first; on equal scores the leftmost pair.</summary>
    private sealed class SpmOrder : IComparer<(float Score, int Left)>
    {
        public static readonly SpmOrder Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y)
        {
            var c = y.Score.CompareTo(x.Score);
            return c != 0 ? c : x.Left.CompareTo(y.Left);
        }
    }

    /// <summary>llama.cpp's BPE session over one pre-tokenized, byte-encoded word: the lowest-ranked merge applies first.</summary>
    private sealed class BpeSession(Tokenizer vocab, string word)
    {
        private readonly List<Symbol> _symbols = [];
        private readonly PriorityQueue<(int Left, int Right, string Text), (int Rank, int Left)> _queue = new();

        public void Tokenize(List<int> output)
        {
            if (vocab._ignoreMerges && vocab.Lookup(word) is { } whole)
            {
                output.Add(whole);
                return;
            }
            for (var i = 0; i < word.Length; i++)
            {
                _symbols.Add(new Symbol { Start = i, Length = 1, Prev = i - 1, Next = i + 1 == word.Length ? -1 : i + 1 });
            }
            for (var i = 1; i < _symbols.Count; i++)
            {
                AddBigram(i - 1, i);
            }
            while (_queue.TryDequeue(out var bigram, out _))
            {
                var left = _symbols[bigram.Left];
                var right = _symbols[bigram.Right];
                if (left.Length == 0 || right.Length == 0)
                {
                    continue;
                }
                if (left.Start + left.Length != right.Start
                    || !word.AsSpan(left.Start, left.Length + right.Length).SequenceEqual(bigram.Text))
                {
                    continue;
                }
                left.Length += right.Length;
                right.Length = 0;
                left.Next = right.Next;
                if (right.Next >= 0)
                {
                    var next = _symbols[right.Next];
                    next.Prev = bigram.Left;
                    _symbols[right.Next] = next;
                }
                _symbols[bigram.Left] = left;
                _symbols[bigram.Right] = right;
                AddBigram(left.Prev, bigram.Left);
                AddBigram(bigram.Left, left.Next);
            }
            foreach (var symbol in _symbols)
            {
                if (symbol.Length == 0)
                {
                    continue;
                }
                var piece = word.AsSpan(symbol.Start, symbol.Length);
                if (vocab.Lookup(piece) is { } id)
                {
                    output.Add(id);
                    continue;
                }
                // No token for the merged text: llama.cpp tries each UTF-8 byte of it as a one-byte token text.
                foreach (var b in Encoding.UTF8.GetBytes(piece.ToString()))
                {
                    if (b < 0x80 && vocab.Lookup(((char)b).ToString()) is { } single)
                    {
                        output.Add(single);
                    }
                }
            }
        }

        private void AddBigram(int left, int right)
        {
            if (left == -1 || right == -1)
            {
                return;
            }
            var l = _symbols[left];
            var r = _symbols[right];
            var rank = vocab.MergeRank(word.AsSpan(l.Start, l.Length), word.AsSpan(r.Start, r.Length));
            if (rank < 0)
            {
                return;
            }
            _queue.Enqueue((left, right, word.Substring(l.Start, l.Length + r.Length)), (rank, left));
        }
    }

    // llama.cpp's three clean-up passes over the detokenized bytes.
    private static byte[] CleanUpSpaces(byte[] text)
    {
        var t = (byte[])text.Clone();
        var total = t.Length;

        var total1 = total;
        total = total > 0 ? 1 : 0;
        for (var i = 1; i < total1; i++)
        {
            var x = t[i];
            if (t[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',')
            {
                total--;
            }
            t[total++] = x;
        }

        var total2 = total;
        total = total > 0 ? 1 : 0;
        for (var i = 1; i < total2; i++)
        {
            var x = t[i];
            if (x == '\'' && i + 1 < total2 && t[i - 1] == ' ' && t[i + 1] == ' ')
            {
                total--;
                t[++i] = 0;
            }
            t[total++] = x;
        }

        var total3 = total;
        total = total > 0 ? 1 : 0;
        for (var i = 1; i < total3; i++)
        {
            var x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                var x1 = t[i + 1];
                if (x1 is (byte)'s' or (byte)'m')
                {
                    total--;
                }
                else if (x1 is not ((byte)'t' or (byte)'d') && i + 2 < total3)
                {
                    var x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
                    {
                        total--;
                    }
                }
            }
            t[total++] = x;
        }
        return t[..total];
    }
}
