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
}
