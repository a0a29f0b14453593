using Sluice.Engine.Gguf;
using Sluice.Engine.Tests.Reference;
using Sluice.Engine.Tokenization;

namespace Sluice.Engine.Tests.Tokenization;

/// <summary>The vocabulary read back through the engine's GGUF reader tokenizes exactly like the data it was written from.</summary>
public sealed class GgufVocabularyTests
{
    public static TheoryData<string> Families => [.. TestVocabularies.Families];

    [Theory]
    [MemberData(nameof(Families))]
    public void Tokenizer_from_the_gguf_file_equals_the_one_from_its_metadata(string family)
    {
        using var file = GgufFile.Open(TestVocabularies.GgufPath(family));
        var data = VocabularyData.FromGguf(file);
        var fromFile = Tokenizer.Create(data);
        var expected = TestVocabularies.Tokenizer(family);
        Assert.Equal(expected.VocabularySize, fromFile.VocabularySize);
        Assert.Equal(expected.Kind, fromFile.Kind);
        Assert.Equal(expected.BosTokenId, fromFile.BosTokenId);
        Assert.Equal(expected.AddBos, fromFile.AddBos);
        Assert.Equal(TestVocabularies.Data(family).ChatTemplate, data.ChatTemplate);
        foreach (var text in TokenizerCorpus.Strings)
        {
            Assert.Equal(expected.Encode(text, parseSpecial: true), fromFile.Encode(text, parseSpecial: true));
        }
    }

    [Fact]
    public void Unsupported_tokenizer_models_and_pre_tokenizers_are_named()
    {
        var e = Assert.Throws<NotSupportedException>(() => Tokenizer.Create(new VocabularyData { Model = "t5", Tokens = ["a"] }));
        Assert.Contains("'t5'", e.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<NotSupportedException>(() =>
            Tokenizer.Create(new VocabularyData { Model = "gpt2", Pre = "deepseek-coder", Tokens = ["a"], Merges = [] }));
        Assert.Contains("'deepseek-coder'", e2.Message, StringComparison.Ordinal);
    }
}
