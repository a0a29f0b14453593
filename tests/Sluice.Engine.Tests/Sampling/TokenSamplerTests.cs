using Sluice.Engine.Sampling;

namespace Sluice.Engine.Tests.Sampling;

public sealed class TokenSamplerTests
{
    private static float[] RandomLogits(int n, int seed)
    {
        var rng = new Random(seed);
        var logits = new float[n];
        for (var i = 0; i < n; i++)
        {
            logits[i] = (float)(rng.NextDouble() * 8 - 4);
        }

        return logits;
    }

    /// <summary>Logits whose softmax is exactly the given probabilities.</summary>
    private static float[] FromProbabilities(params double[] p) => p.Select(x => (float)Math.Log(x)).ToArray();

    private static int[] Draw(SamplingOptions options, float[] logits, int count)
    {
        var sampler = new TokenSampler(options);
        return Enumerable.Range(0, count).Select(_ => sampler.Sample(logits, [])).ToArray();
    }

    [Fact]
    public void The_same_seed_gives_the_same_tokens_and_another_seed_other_tokens()
    {
        var logits = RandomLogits(1000, 1);
        var options = new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = 42 };
        var a = Draw(options, logits, 200);
        var b = Draw(options, logits, 200);
        var c = Draw(options with { Seed = 43 }, logits, 200);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.True(a.Distinct().Count() > 20, "a flat distribution at temperature 1.5 should give varied tokens");
        Assert.Equal(42UL, new TokenSampler(options).Seed);
    }

    [Fact]
    public void Without_a_seed_one_is_drawn_and_reported()
    {
        var first = new TokenSampler(new SamplingOptions());
        var second = new TokenSampler(new SamplingOptions());
        Assert.NotEqual(first.Seed, second.Seed);
        var logits = RandomLogits(500, 2);
        var replay = Draw(new SamplingOptions { Seed = first.Seed }, logits, 50);
        var original = Enumerable.Range(0, 50).Select(_ => first.Sample(logits, [])).ToArray();
        Assert.Equal(replay, original);
    }

    [Fact]
    public void Temperature_zero_is_greedy_with_the_lowest_id_on_ties()
    {
        var logits = new float[] { 1, 5, 3, 5, -2 };
        Assert.All(Draw(SamplingOptions.Greedy, logits, 10), t => Assert.Equal(1, t));
        Assert.Equal(1, Draw(new SamplingOptions { Temperature = -1 }, logits, 1)[0]);
    }

    [Fact]
    public void Top_k_keeps_only_the_k_most_likely()
    {
        var logits = RandomLogits(300, 3);
        var top = logits.Select((l, i) => (l, i)).OrderByDescending(x => x.l).Take(5).Select(x => x.i).ToHashSet();
        var draws = Draw(new SamplingOptions { Temperature = 5, TopK = 5, TopP = 1, MinP = 0, Seed = 1 }, logits, 2000);
        Assert.All(draws, t => Assert.Contains(t, top));
        Assert.Equal(5, draws.Distinct().Count());
        Assert.All(Draw(new SamplingOptions { Temperature = 5, TopK = 1, TopP = 1, MinP = 0, Seed = 2 }, logits, 50), t => Assert.Equal(top.First(), t));
    }

    [Fact]
    public void Top_p_keeps_the_smallest_set_reaching_p()
    {
        var logits = FromProbabilities(0.5, 0.3, 0.15, 0.05);
        var draws = Draw(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.7f, MinP = 0, Seed = 3 }, logits, 4000);
        Assert.Equal(new[] { 0, 1 }, draws.Distinct().Order());

        // Renormalized over the kept set: 0.5/0.8 and 0.3/0.8.
        var share = draws.Count(t => t == 0) / 4000.0;
        Assert.InRange(share, 0.625 - 0.03, 0.625 + 0.03);
        Assert.Equal(new[] { 0, 1, 2 }, Draw(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.81f, MinP = 0, Seed = 4 }, logits, 4000).Distinct().Order());
    }

    [Fact]
    public void Min_p_drops_tokens_below_a_share_of_the_best()
    {
        var logits = FromProbabilities(0.5, 0.3, 0.15, 0.05);
        Assert.Equal(new[] { 0, 1 }, Draw(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0.4f, Seed = 5 }, logits, 3000).Distinct().Order());
        Assert.Equal(new[] { 0, 1, 2 }, Draw(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0.25f, Seed = 6 }, logits, 3000).Distinct().Order());
    }

    [Fact]
    public void Unfiltered_draws_follow_the_softmax_at_the_temperature()
    {
        var logits = FromProbabilities(0.6, 0.25, 0.1, 0.05);
        const int n = 20000;
        var draws = Draw(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = 7 }, logits, n);
        double[] expected = [0.6, 0.25, 0.1, 0.05];
        for (var t = 0; t < 4; t++)
        {
            var share = draws.Count(x => x == t) / (double)n;
            var sigma = Math.Sqrt(expected[t] * (1 - expected[t]) / n);
            Assert.InRange(share, expected[t] - (5 * sigma), expected[t] + (5 * sigma));
        }

        // Temperature 0.5 squares the odds: 0.36 : 0.0625 : 0.01 : 0.0025.
        var cold = Draw(new SamplingOptions { Temperature = 0.5f, TopK = 0, TopP = 1, MinP = 0, Seed = 8 }, logits, n);
        var coldShare = cold.Count(x => x == 0) / (double)n;
        Assert.InRange(coldShare, (0.36 / 0.435) - 0.02, (0.36 / 0.435) + 0.02);
    }

    [Fact]
    public void Repetition_penalty_follows_llama_cpp()
    {
        // Positive logits are divided by the penalty, negative ones multiplied: token 0 (2.0 → 1.0) loses to token 1 (1.5).
        var logits = new float[] { 2.0f, 1.5f, -1f, -0.5f };
        var greedyPenalized = SamplingOptions.Greedy with { RepetitionPenalty = 2f };
        Assert.Equal(1, new TokenSampler(greedyPenalized).Sample(logits, [0]));
        Assert.Equal(0, new TokenSampler(SamplingOptions.Greedy).Sample(logits, [0]));

        // Outside the window the history does not count.
        Assert.Equal(0, new TokenSampler(greedyPenalized with { PenaltyWindow = 2 }).Sample(logits, [0, 3, 3]));

        // Negative: -0.5 × 2 = -1.0 ties with token 2 and neither beats token 1.
        Assert.Equal(1, new TokenSampler(greedyPenalized).Sample(logits, [0, 3]));

        // Frequency and presence penalties subtract per occurrence / once.
        var frequency = SamplingOptions.Greedy with { FrequencyPenalty = 0.3f };
        Assert.Equal(0, new TokenSampler(frequency).Sample(logits, [0]));
        Assert.Equal(1, new TokenSampler(frequency).Sample(logits, [0, 0]));
        Assert.Equal(1, new TokenSampler(SamplingOptions.Greedy with { PresencePenalty = 0.6f }).Sample(logits, [0]));
    }

    [Fact]
    public void Invalid_options_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new SamplingOptions { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new SamplingOptions { MinP = 1.5f }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new SamplingOptions { RepetitionPenalty = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new SamplingOptions { Temperature = float.NaN }));
    }
}
