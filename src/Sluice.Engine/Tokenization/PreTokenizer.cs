namespace Sluice.Engine.Tokenization;

/// <summary>The pre-tokenizer families of byte-level BPE vocabularies (GGUF <c>tokenizer.ggml.pre</c>).</summary>
public enum PreTokenizerKind
{
    /// <summary>No or "default" pre-tokenizer: llama.cpp's fallback chain (punctuation runs, the GPT-2 rules, number runs, digit triples).</summary>
    Default,

    /// <summary>GPT-2's regex: <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>.</summary>
    Gpt2,

    /// <summary>Llama 3 (<c>llama-bpe</c>): case-insensitive contractions, numbers in groups of up to three digits.</summary>
    Llama3,

    /// <summary>Qwen2/Qwen2.5/Qwen3 (<c>qwen2</c>): as Llama 3, but every digit stands alone.</summary>
    Qwen2,

    /// <summary>SmolLM / StarCoder: every digit stands alone, then the GPT-2 rules.</summary>
    SmolLm,
}

/// <summary>
/// Splits text into the words BPE merges within, exactly as llama.cpp's hand-written splitters (unicode.cpp) do,
/// including their reading of the regexes at segment ends. Works on codepoints; segments are codepoint counts.
/// </summary>
internal static class PreTokenizer
{
    public static PreTokenizerKind Parse(string? pre) => pre switch
    {
        null or "" or "default" => PreTokenizerKind.Default,
        "gpt-2" or "phi-2" or "jina-es" or "jina-de" or "gigachat" or "jina-v2-es" or "jina-v2-de" or "a.x-4.0" or "mellum"
            or "mpt" or "olmo" or "jais" or "trillion" or "granite-docling" => PreTokenizerKind.Gpt2,
        "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1" or "pixtral" or "midm-2.0" or "lfm2" or "dbrx"
            or "smaug-bpe" or "chatglm-bpe" or "glm4" => PreTokenizerKind.Llama3,
        "qwen2" or "deepseek-r1-qwen" or "stablelm2" or "megrez" or "hunyuan" or "kormo" or "f2llmv2" => PreTokenizerKind.Qwen2,
        "smollm" or "starcoder" or "refact" or "command-r" or "codeshell" or "exaone" or "minerva-7b" => PreTokenizerKind.SmolLm,
        _ => throw new NotSupportedException(
            $"Pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported; supported: default, gpt-2, llama-bpe (Llama 3), qwen2, smollm and their aliases."),
    };

    /// <summary>Whether llama.cpp takes a whole word that is itself a token without merging (<c>ignore_merges</c>).</summary>
    public static bool IgnoresMerges(string? pre) => pre is "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "falcon-h1"
        or "pixtral" or "midm-2.0" or "lfm2";

    /// <summary>Whether llama.cpp cleans spaces before punctuation when detokenizing (<c>clean_spaces</c>).</summary>
    public static bool CleansSpaces(string? pre) => pre is not ("qwen2" or "deepseek-r1-qwen" or "kormo" or "f2llmv2" or "smollm"
        or "command-r" or "chameleon" or "megrez" or "hunyuan");

    /// <summary>Splits <paramref name="cpts"/> into words; returns their codepoint counts.</summary>
    public static List<int> Split(int[] cpts, PreTokenizerKind kind)
    {
        List<int> segments = cpts.Length == 0 ? [] : [cpts.Length];
        switch (kind)
        {
            case PreTokenizerKind.Gpt2:
                return SplitEach(cpts, segments, SplitGpt2);
            case PreTokenizerKind.Llama3:
                return SplitEach(cpts, segments, (c, s, e, o) => SplitLlama3(c, s, e, o, 3));
            case PreTokenizerKind.Qwen2:
                return SplitEach(cpts, segments, (c, s, e, o) => SplitLlama3(c, s, e, o, 1));
            case PreTokenizerKind.SmolLm:
                segments = SplitEach(cpts, segments, (c, s, e, o) => SplitClassRuns(c, s, e, o, IsNumberClass, single: true));
                return SplitEach(cpts, segments, SplitGpt2);
            default:
                segments = SplitEach(cpts, segments, (c, s, e, o) => SplitClassRuns(c, s, e, o, IsDefaultPunctuationClass, single: false));
                segments = SplitEach(cpts, segments, SplitGpt2);
                segments = SplitEach(cpts, segments, (c, s, e, o) => SplitClassRuns(c, s, e, o, IsNumberClass, single: false));
                return SplitEach(cpts, segments, SplitDigitTriples);
        }
    }

    private delegate void SegmentSplitter(int[] cpts, int start, int end, List<int> output);

    private static List<int> SplitEach(int[] cpts, List<int> segments, SegmentSplitter splitter)
    {
        var output = new List<int>(segments.Count + 8);
        var start = 0;
        foreach (var length in segments)
        {
            splitter(cpts, start, start + length, output);
            start += length;
        }
        return output;
    }

    // llama.cpp runs these through std::regex over a "collapsed" text where each non-ASCII codepoint stands for its
    // class; a class run is a maximal run of member codepoints, and the text between runs is kept as its own word.
    private static void SplitClassRuns(int[] cpts, int start, int end, List<int> output, Func<int, bool> member, bool single)
    {
        var gapStart = start;
        var pos = start;
        while (pos < end)
        {
            if (!member(cpts[pos]))
            {
                pos++;
                continue;
            }
            if (pos > gapStart)
            {
                output.Add(pos - gapStart);
            }
            var runStart = pos;
            pos++;
            if (!single)
            {
                while (pos < end && member(cpts[pos]))
                {
                    pos++;
                }
            }
            output.Add(pos - runStart);
            gapStart = pos;
        }
        if (end > gapStart)
        {
            output.Add(end - gapStart);
        }
    }

    // [0-9][0-9][0-9]: leftmost, non-overlapping triples of ASCII digits.
    private static void SplitDigitTriples(int[] cpts, int start, int end, List<int> output)
    {
        var gapStart = start;
        var pos = start;
        while (pos + 2 < end)
        {
            if (IsAsciiDigit(cpts[pos]) && IsAsciiDigit(cpts[pos + 1]) && IsAsciiDigit(cpts[pos + 2]))
            {
                if (pos > gapStart)
                {
                    output.Add(pos - gapStart);
                }
                output.Add(3);
                pos += 3;
                gapStart = pos;
            }
            else
            {
                pos++;
            }
        }
        if (end > gapStart)
        {
            output.Add(end - gapStart);
        }
    }

    private static bool IsAsciiDigit(int cp) => cp is >= '0' and <= '9';

    // \p{N} in the collapsed text: ASCII digits, or a non-ASCII codepoint of the number class that is not whitespace.
    private static bool IsNumberClass(int cp) => cp < 128
        ? IsAsciiDigit(cp)
        : (Codepoints.Flags(cp) & (CodepointFlags.Categories | CodepointFlags.Whitespace)) == CodepointFlags.Number;

    // [\p{P}\$\+<=>\^~\|] in the collapsed text: llama.cpp's ASCII stand-ins for \p{P} (no backtick) plus $+<=>^~|,
    // or a non-ASCII punctuation codepoint.
    private static bool IsDefaultPunctuationClass(int cp) => cp < 128
        ? cp is (>= 0x21 and <= 0x2F) or (>= 0x3A and <= 0x40) or (>= 0x5B and <= 0x5F) or (>= 0x7B and <= 0x7E)
        : (Codepoints.Flags(cp) & (CodepointFlags.Categories | CodepointFlags.Whitespace)) == CodepointFlags.Punctuation;

    /// <summary>Reads one segment with the helpers every splitter shares: out-of-segment positions have no class.</summary>
    private ref struct Cursor(int[] cpts, int start, int end, List<int> output)
    {
        private readonly int[] _cpts = cpts;
        private readonly List<int> _output = output;
        private int _prevEnd = start;

        public readonly int Start = start;
        public readonly int End = end;

        public readonly int Cpt(int pos) => pos >= Start && pos < End ? _cpts[pos] : Codepoints.OutOfRange;

        public readonly CodepointFlags Flags(int pos) => pos >= Start && pos < End ? Codepoints.Flags(_cpts[pos]) : CodepointFlags.None;

        public void Add(int end)
        {
            if (end > _prevEnd)
            {
                _output.Add(end - _prevEnd);
            }
            _prevEnd = end;
        }
    }

    private const CodepointFlags WordClasses = CodepointFlags.Whitespace | CodepointFlags.Letter | CodepointFlags.Number;

    private static bool TryContraction(ref Cursor c, ref int pos, bool ignoreCase)
    {
        if (c.Cpt(pos) != '\'' || pos + 1 >= c.End)
        {
            return false;
        }
        var next = c.Cpt(pos + 1);
        if (ignoreCase)
        {
            next = Codepoints.ToLowerAscii(next);
        }
        if (next is 's' or 't' or 'm' or 'd')
        {
            pos += 2;
            c.Add(pos);
            return true;
        }
        if (pos + 2 < c.End)
        {
            var next2 = c.Cpt(pos + 2);
            if (ignoreCase)
            {
                next2 = Codepoints.ToLowerAscii(next2);
            }
            if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') || (next == 'l' && next2 == 'l'))
            {
                pos += 3;
                c.Add(pos);
                return true;
            }
        }
        return false;
    }

    /// <summary>\s+(?!\S)|\s+ (and, when <paramref name="newlines"/>, \s*[\r\n]+ first); false when no whitespace starts here.</summary>
    private static bool TryWhitespace(ref Cursor c, ref int pos, bool newlines)
    {
        var count = 0;
        var lastNewlineEnd = -1;
        while (c.Flags(pos + count).Has(CodepointFlags.Whitespace))
        {
            if (newlines && c.Cpt(pos + count) is '\r' or '\n')
            {
                lastNewlineEnd = pos + count + 1;
            }
            count++;
        }
        if (lastNewlineEnd >= 0)
        {
            pos = lastNewlineEnd;
            c.Add(pos);
            return true;
        }
        if (count > 1 && c.Cpt(pos + count) != Codepoints.OutOfRange)
        {
            pos += count - 1;
            c.Add(pos);
            return true;
        }
        if (count > 0)
        {
            pos += count;
            c.Add(pos);
            return true;
        }
        return false;
    }

    private static void SplitGpt2(int[] cpts, int start, int end, List<int> output)
    {
        var c = new Cursor(cpts, start, end, output);
        var pos = start;
        while (pos < end)
        {
            if (TryContraction(ref c, ref pos, ignoreCase: false))
            {
                continue;
            }
            var cpt = c.Cpt(pos);
            var flags2 = cpt == ' ' ? c.Flags(pos + 1) : c.Flags(pos);
            if (flags2.Has(CodepointFlags.Letter) || flags2.Has(CodepointFlags.Number))
            {
                // ' ?\p{L}+' or ' ?\p{N}+'
                var cls = flags2.Has(CodepointFlags.Letter) ? CodepointFlags.Letter : CodepointFlags.Number;
                pos += cpt == ' ' ? 1 : 0;
                while (c.Flags(pos).Has(cls))
                {
                    pos++;
                }
                c.Add(pos);
                continue;
            }
            if (!flags2.Has(WordClasses) && flags2 != CodepointFlags.None)
            {
                // ' ?[^\s\p{L}\p{N}]+'
                pos += cpt == ' ' ? 1 : 0;
                while (c.Flags(pos) is var f && !f.Has(WordClasses) && f != CodepointFlags.None)
                {
                    pos++;
                }
                c.Add(pos);
                continue;
            }
            if (TryWhitespace(ref c, ref pos, newlines: false))
            {
                continue;
            }
            pos++;
            c.Add(pos);
        }
    }

    // Llama 3 and Qwen2 differ only in the longest digit group: \p{N}{1,3} against \p{N}.
    private static void SplitLlama3(int[] cpts, int start, int end, List<int> output, int digitGroup)
    {
        var c = new Cursor(cpts, start, end, output);
        var pos = start;
        while (pos < end)
        {
            if (TryContraction(ref c, ref pos, ignoreCase: true))
            {
                continue;
            }
            var cpt = c.Cpt(pos);
            var flags = c.Flags(pos);

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (!(cpt is '\r' or '\n' || flags.Has(CodepointFlags.Number))
                && (flags.Has(CodepointFlags.Letter) || c.Flags(pos + 1).Has(CodepointFlags.Letter)))
            {
                pos++;
                while (c.Flags(pos).Has(CodepointFlags.Letter))
                {
                    pos++;
                }
                c.Add(pos);
                continue;
            }

            // \p{N}{1,3} (Llama 3) or \p{N} (Qwen2)
            if (flags.Has(CodepointFlags.Number))
            {
                var groupStart = pos;
                while (c.Flags(pos).Has(CodepointFlags.Number))
                {
                    pos++;
                    if (pos - groupStart >= digitGroup)
                    {
                        c.Add(pos);
                        groupStart = pos;
                    }
                }
                c.Add(pos);
                continue;
            }

            // ' ?[^\s\p{L}\p{N}]+[\r\n]*' — llama.cpp tests the first codepoint's own flags for "in the segment".
            var flags2 = cpt == ' ' ? c.Flags(pos + 1) : flags;
            if (!flags2.Has(WordClasses) && flags != CodepointFlags.None)
            {
                pos += cpt == ' ' ? 1 : 0;
                while (c.Flags(pos) is var f && !f.Has(WordClasses) && f != CodepointFlags.None)
                {
                    pos++;
                }
                while (c.Cpt(pos) is '\r' or '\n')
                {
                    pos++;
                }
                c.Add(pos);
                continue;
            }

            if (TryWhitespace(ref c, ref pos, newlines: true))
            {
                continue;
            }
            pos++;
            c.Add(pos);
        }
    }
}
