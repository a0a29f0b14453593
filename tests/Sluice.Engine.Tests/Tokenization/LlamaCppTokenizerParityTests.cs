using System.Text;
using System.Text.Json.Nodes;
using Sluice.Engine.Tests.Reference;
using Sluice.Engine.Tokenization;
using Xunit.Abstractions;

namespace Sluice.Engine.Tests.Tokenization;

/// <summary>
/// Token ids equal llama.cpp's (node-llama-cpp 3.22.1, <c>model.tokenize(text)</c> and <c>model.tokenize(text, true)</c>) on
/// the whole corpus, for real Llama 2 (SPM), Llama 3 (BPE llama-bpe) and Qwen3 (BPE qwen2) vocabularies in GGUF files
/// llama.cpp loads; detokenization equals llama.cpp's and gives the text back.
/// </summary>
public sealed class LlamaCppTokenizerParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> Families => [.. TestVocabularies.Families];

    public static TheoryData<string> FamiliesAndVariants => [.. TestVocabularies.Families, .. TestVocabularies.PreTokenizerVariants];

    [Theory]
    [MemberData(nameof(FamiliesAndVariants))]
    public void Token_ids_and_detokenization_match_llama_cpp(string family)
    {
        var corpus = TokenizerCorpus.Strings;
        Assert.True(corpus.Length >= 200, $"corpus has {corpus.Length} strings");
        var tokenizer = TestVocabularies.Tokenizer(family);
        var input = new JsonObject
        {
            ["modelPath"] = TestVocabularies.GgufPath(family),
            ["texts"] = new JsonArray([.. corpus.Select(s => (JsonNode)JsonValue.Create(s))]),
        };
        var reference = NodeReference.RunNode("tokenize.mjs", input, TimeSpan.FromMinutes(3));
        var results = reference["results"]!.AsArray();
        Assert.Equal(corpus.Length, results.Count);

        var failures = new List<string>();
        int idsCompared = 0, roundTrips = 0, totalIds = 0;
        for (var i = 0; i < corpus.Length; i++)
        {
            var text = corpus[i];
            var r = results[i]!;
            var expectedPlain = r["plain"]!.AsArray().Select(n => (int)n!).ToArray();
            var expectedSpecial = r["special"]!.AsArray().Select(n => (int)n!).ToArray();
            var plain = tokenizer.Encode(text, addSpecial: false, parseSpecial: false);
            var special = tokenizer.Encode(text, addSpecial: false, parseSpecial: true);
            idsCompared += 2;
            if (!plain.SequenceEqual(expectedPlain))
            {
                failures.Add($"#{i} {Show(text)} plain: expected [{string.Join(',', expectedPlain)}] got [{string.Join(',', plain)}]");
            }
            if (!special.SequenceEqual(expectedSpecial))
            {
                failures.Add($"#{i} {Show(text)} special: expected [{string.Join(',', expectedSpecial)}] got [{string.Join(',', special)}]");
            }

            var detok = tokenizer.Decode(expectedPlain, removeSpecial: false, unparseSpecial: false);
            if (detok != (string)r["detok"]!)
            {
                failures.Add($"#{i} {Show(text)} detokenize: expected {Show((string)r["detok"]!)} got {Show(detok)}");
            }
            var detokSpecial = tokenizer.Decode(expectedSpecial, removeSpecial: false, unparseSpecial: true);
            if (detokSpecial != (string)r["detokSpecial"]!)
            {
                failures.Add($"#{i} {Show(text)} detokenize specials: expected {Show((string)r["detokSpecial"]!)} got {Show(detokSpecial)}");
            }

            // Lossless (llama.cpp's space clean-up aside, which is off here), except that SentencePiece cannot tell a ▁ in the
            // text from the ▁ it writes for a space.
            var back = tokenizer.Decode(plain, cleanSpaces: false);
            var expectedBack = tokenizer.Kind == TokenizerKind.SentencePiece ? text.Replace('\u2581', ' ') : text;
            roundTrips++;
            totalIds += plain.Length + special.Length;
            if (back != expectedBack)
            {
                failures.Add($"#{i} {Show(text)} round trip gave {Show(back)}");
            }
        }
        output.WriteLine($"{family}: {corpus.Length} strings, {idsCompared} tokenizations ({totalIds} ids) compared, {roundTrips} round trips, {failures.Count} failures");
        Assert.True(totalIds > 5 * corpus.Length, $"suspiciously few ids: {totalIds}");
        foreach (var f in failures.Take(40))
        {
            output.WriteLine(f);
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches with llama.cpp for {family}:\n" + string.Join('\n', failures.Take(40)));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Special_token_ids_match_llama_cpp(string family)
    {
        var tokenizer = TestVocabularies.Tokenizer(family);
        var input = new JsonObject { ["modelPath"] = TestVocabularies.GgufPath(family), ["texts"] = new JsonArray() };
        var info = NodeReference.RunNode("tokenize.mjs", input, TimeSpan.FromMinutes(2))["info"]!;
        Assert.Equal((int?)info["bos"], tokenizer.BosTokenId);
        Assert.Equal((int?)info["eos"], tokenizer.EosTokenId);
        Assert.Equal((int?)info["eot"], tokenizer.EotTokenId);
    }

    private static string Show(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (var c in s.Length > 80 ? s[..80] + "…" : s)
        {
            sb.Append(c is < ' ' or '\u007f' or '\u0085' or '\u2028' or '\u2029' ? $"\\u{(int)c:x4}" : c.ToString());
        }
        return sb.Append('"').ToString();
    }
}
