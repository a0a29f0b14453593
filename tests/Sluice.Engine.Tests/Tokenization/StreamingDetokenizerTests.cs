using System.Text;
using Sluice.Engine.Tests.Reference;
using Sluice.Engine.Tokenization;

namespace Sluice.Engine.Tests.Tokenization;

public sealed class StreamingDetokenizerTests
{
    public static TheoryData<string> Families => [.. TestVocabularies.Families];

    private static List<string> Stream(Tokenizer tokenizer, IEnumerable<int> ids, bool? stripLeadingSpace = null)
    {
        var detokenizer = tokenizer.CreateStreamingDetokenizer(stripLeadingSpace: stripLeadingSpace);
        var chunks = ids.Select(detokenizer.Push).ToList();
        chunks.Add(detokenizer.Flush());
        return chunks;
    }

    private static bool HasLoneSurrogate(string s)
    {
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(s[i]))
            {
                return true;
            }
        }
        return false;
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Streaming_the_corpus_never_emits_half_a_character_and_adds_up_to_the_decoded_text(string family)
    {
        var tokenizer = TestVocabularies.Tokenizer(family);
        var heldBack = 0;
        foreach (var text in TokenizerCorpus.Strings)
        {
            var ids = tokenizer.Encode(text, addSpecial: false);
            var chunks = Stream(tokenizer, ids);
            Assert.Equal(tokenizer.Decode(ids, cleanSpaces: false), string.Concat(chunks));
            foreach (var chunk in chunks)
            {
                // A half character would show as U+FFFD (or a lone surrogate); the corpus has U+FFFD in only two strings.
                Assert.False(HasLoneSurrogate(chunk));
                if (!text.Contains('\ufffd', StringComparison.Ordinal))
                {
                    Assert.DoesNotContain('\ufffd', chunk);
                }
            }
            heldBack += chunks.Count(c => c.Length == 0);
        }
        // Characters really were split across tokens somewhere in the corpus (byte fallback, byte-level pieces).
        Assert.True(heldBack > 0);
    }

    [Fact]
    public void A_four_byte_character_in_sentencepiece_byte_fallback_appears_only_with_its_last_byte()
    {
        var tokenizer = TestVocabularies.Tokenizer("llama2");
        var ids = tokenizer.Encode("𐍈", addSpecial: false);
        // "▁" then four <0xXX> byte tokens: F0 90 8D 88.
        Assert.Equal(["▁", "<0xF0>", "<0x90>", "<0x8D>", "<0x88>"], ids.Select(tokenizer.GetTokenText));
        var chunks = Stream(tokenizer, ids);
        Assert.Equal(["", "", "", "", "𐍈", ""], chunks);
    }

    [Fact]
    public void An_emoji_split_over_byte_level_tokens_is_emitted_whole()
    {
        var tokenizer = TestVocabularies.Tokenizer("qwen3");
        var text = "I 🫠 it";
        var ids = tokenizer.Encode(text, addSpecial: false);
        var chunks = Stream(tokenizer, ids);
        Assert.Equal(text, string.Concat(chunks));
        Assert.Contains(chunks, c => c.Contains("🫠", StringComparison.Ordinal));
        Assert.All(chunks, c => Assert.DoesNotContain('\ufffd', c));
        // The emoji needed more than one token, so some push emitted nothing.
        Assert.True(ids.Length > 4, $"expected the emoji to be split, got {ids.Length} tokens");
        Assert.Contains("", chunks[..^1]);
    }

    [Fact]
    public void Sentencepiece_drops_the_dummy_prefix_space_of_the_first_generated_word_only()
    {
        var tokenizer = TestVocabularies.Tokenizer("llama2");
        var ids = tokenizer.Encode("Hello world", addSpecial: false);
        Assert.Equal("▁Hello", tokenizer.GetTokenText(ids[0]));
        Assert.Equal("Hello world", string.Concat(Stream(tokenizer, ids)));
        Assert.Equal(" Hello world", string.Concat(Stream(tokenizer, ids, stripLeadingSpace: false)));
        // Byte-level BPE has no dummy prefix: a generated leading space is real.
        var qwen = TestVocabularies.Tokenizer("qwen3");
        Assert.Equal(" Hello world", string.Concat(Stream(qwen, qwen.Encode(" Hello world", addSpecial: false))));
    }

    [Fact]
    public void Stop_string_split_across_tokens_is_caught_and_not_emitted()
    {
        var tokenizer = TestVocabularies.Tokenizer("qwen3");
        var ids = tokenizer.Encode("The answer is 42.\nUser: what else?", addSpecial: false);
        var stream = new TokenTextStream(tokenizer, ["\nUser:"]);
        var emitted = new StringBuilder();
        var pushed = 0;
        foreach (var id in ids)
        {
            emitted.Append(stream.Push(id));
            pushed++;
            if (stream.Stopped)
            {
                break;
            }
            Assert.DoesNotContain("\nUser", emitted.ToString(), StringComparison.Ordinal);
        }
        emitted.Append(stream.Flush());
        Assert.True(stream.Stopped);
        Assert.Equal("\nUser:", stream.MatchedStopString);
        Assert.Equal("The answer is 42.", emitted.ToString());
        Assert.True(pushed < ids.Length, "the stream should stop before the end of the ids");
    }

    [Fact]
    public void Text_that_only_looked_like_a_stop_string_is_released()
    {
        var tokenizer = TestVocabularies.Tokenizer("llama3");
        var text = "Use\nUser-friendly\nUsers: fine";
        var stream = new TokenTextStream(tokenizer, ["\nUser:"]);
        var emitted = new StringBuilder();
        foreach (var id in tokenizer.Encode(text, addSpecial: false))
        {
            emitted.Append(stream.Push(id));
        }
        emitted.Append(stream.Flush());
        Assert.False(stream.Stopped);
        Assert.Equal(text, emitted.ToString());
    }

    [Fact]
    public void A_stop_string_made_of_a_character_split_into_byte_tokens_is_caught()
    {
        var tokenizer = TestVocabularies.Tokenizer("llama2");
        var stream = new TokenTextStream(tokenizer, ["𐍈"]);
        var emitted = new StringBuilder();
        foreach (var id in tokenizer.Encode("abc 𐍈 def", addSpecial: false))
        {
            emitted.Append(stream.Push(id));
        }
        emitted.Append(stream.Flush());
        Assert.True(stream.Stopped);
        Assert.Equal("abc ", emitted.ToString());
    }

    [Fact]
    public void Stop_matcher_holds_back_only_a_possible_stop_start()
    {
        var m = new StopStringMatcher(["</answer>", "STOP"]);
        Assert.Equal("The result", m.Push("The result"));
        Assert.Equal(" is ", m.Push(" is </ans"));
        Assert.Equal("</ans", m.HeldText);
        Assert.Equal("", m.Push("w"));
        Assert.Equal("</answer!", m.Push("er!"));
        Assert.False(m.Stopped);
        var m2 = new StopStringMatcher(["</answer>"]);
        Assert.Equal("a ", m2.Push("a </ans"));
        Assert.Equal("</ansX", m2.Push("X"));
        Assert.Equal("b", m2.Push("b</answer>c"));
        Assert.True(m2.Stopped);
        Assert.Equal("", m2.Push("more"));
        Assert.Equal("", m2.Flush());
        var m3 = new StopStringMatcher(["ST", "STOP"]);
        Assert.Equal("x", m3.Push("xS"));
        Assert.Equal("", m3.Push("TOP"));
        Assert.Equal("ST", m3.MatchedStopString);
    }

    [Fact]
    public void Control_tokens_render_only_when_asked()
    {
        var tokenizer = TestVocabularies.Tokenizer("qwen3");
        var ids = tokenizer.Encode("<|im_start|>assistant\nHi<|im_end|>", addSpecial: false, parseSpecial: true);
        var plain = tokenizer.CreateStreamingDetokenizer();
        Assert.Equal("assistant\nHi", string.Concat(ids.Select(plain.Push)) + plain.Flush());
        var special = tokenizer.CreateStreamingDetokenizer(renderSpecial: true);
        Assert.Equal("<|im_start|>assistant\nHi<|im_end|>", string.Concat(ids.Select(special.Push)) + special.Flush());
        Assert.True(tokenizer.IsEndOfGeneration(ids[^1]));
    }
}
