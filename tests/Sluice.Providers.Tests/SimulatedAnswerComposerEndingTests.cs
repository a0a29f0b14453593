using Sluice.Providers.Simulation;

namespace Sluice.Providers.Tests;

public sealed class SimulatedAnswerComposerEndingTests
{
    [Fact]
    public void Answers_of_every_length_end_on_a_clean_full_stop()
    {
        for (var length = 1; length <= 200; length++)
        {
            var tokens = SimulatedAnswerComposer.ComposeTokens("Tell me about rivers and bridges", length, new Random(length));
            Assert.Equal(length, tokens.Count);
            Assert.Equal(".", tokens[^1]);
            var text = string.Concat(tokens);
            Assert.DoesNotContain(",.", text, StringComparison.Ordinal);
            Assert.DoesNotContain(";.", text, StringComparison.Ordinal);
            Assert.DoesNotContain(":.", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void No_sentence_follows_itself()
    {
        for (var seed = 0; seed < 300; seed++)
        {
            var text = string.Concat(SimulatedAnswerComposer.ComposeTokens("Tell me about rivers", 400, new Random(seed)));
            var sentences = text.Split(". ", StringSplitOptions.RemoveEmptyEntries);
            for (var i = 1; i < sentences.Length; i++)
            {
                Assert.True(sentences[i] != sentences[i - 1], $"seed {seed}: \"{sentences[i]}\" twice in a row");
            }
        }
    }
}
