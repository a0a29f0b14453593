using Sluice.Protocol.Events;

namespace Sluice.Providers.Simulation;

/// <summary>
/// Plausible log probabilities for the simulated model's tokens: most tokens likely (p 0.55–0.99), some less so, the
/// alternatives below the chosen token and summing with it to less than 1, most likely first — the shape real models
/// return, not a model's real belief. Draws from its own sequence, so asking for logprobs never changes the text.
/// </summary>
internal sealed class SimulatedLogprobs(Random random, int top, List<string> topics)
{
    private static readonly string[] Common = [" the", " a", " and", " of", " to", " in", " is", " that", ",", ".", " it", " for"];

    /// <summary>The logprob entry for <paramref name="token"/>, with <c>top</c> alternatives.</summary>
    public IReadOnlyList<TokenLogprob> For(string token)
    {
        var p = random.Next(5) == 0 ? 0.2 + (random.NextDouble() * 0.35) : 0.55 + (random.NextDouble() * 0.44);
        var alternatives = new List<TopLogprob>(top);
        if (top > 0)
        {
            alternatives.Add(new TopLogprob(token, Math.Log(p)));
            // Each alternative takes a share of the probability left, and is less likely than the one before.
            var left = 1 - p;
            var previous = p;
            var used = new HashSet<string>(StringComparer.Ordinal) { token };
            for (var i = 1; i < top; i++)
            {
                var candidate = Candidate(token, i, used);
                var share = Math.Min(previous * 0.9, left * (0.35 + (random.NextDouble() * 0.3)));
                left -= share;
                previous = share;
                alternatives.Add(new TopLogprob(candidate, Math.Log(Math.Max(share, 1e-9))));
            }
        }

        return [new TokenLogprob(token, Math.Log(p), alternatives)];
    }

    private string Candidate(string token, int i, HashSet<string> used)
    {
        var space = token.StartsWith(' ') ? " " : string.Empty;
        for (var attempt = 0; attempt < 4; attempt++)
        {
            var word = random.Next(3) == 0 ? space + topics[random.Next(topics.Count)] : Common[random.Next(Common.Length)];
            if (used.Add(word))
            {
                return word;
            }
        }

        var fallback = $"{space}alt{i}";
        used.Add(fallback);
        return fallback;
    }
}
