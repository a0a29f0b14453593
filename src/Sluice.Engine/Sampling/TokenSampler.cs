namespace Sluice.Engine.Sampling;

/// <summary>
/// Picks tokens from logits according to <see cref="SamplingOptions"/>. Holds the seeded random state, so one
/// sampler serves one generation; the same seed gives the same draws. Not thread-safe.
/// </summary>
public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly Dictionary<int, int> _counts = [];
    private ulong _s0, _s1, _s2, _s3;
    private Candidate[] _candidates = [];
    private float[] _penalized = [];

    /// <summary>Creates a sampler; a null seed draws one from the system's random source.</summary>
    public TokenSampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        var seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        Seed = seed;

        // SplitMix64 spreads the seed over xoshiro256**'s state (never all zero).
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    /// <summary>The seed in use (the given one, or the one drawn when none was given).</summary>
    public ulong Seed { get; }

    /// <summary>
    /// Chooses the next token from <paramref name="logits"/> (one per vocabulary entry) given the tokens so far
    /// (<paramref name="history"/>, for the penalties).
    /// </summary>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("no logits", nameof(logits));
        }

        var scores = ApplyPenalties(logits, history);
        if (_options.Temperature <= 0)
        {
            return ArgMax(scores);
        }

        var n = scores.Length;
        if (_candidates.Length < n)
        {
            _candidates = new Candidate[n];
        }

        var candidates = _candidates.AsSpan(0, n);
        var count = 0;
        for (var i = 0; i < n; i++)
        {
            if (!float.IsNegativeInfinity(scores[i]) && !float.IsNaN(scores[i]))
            {
                candidates[count++] = new Candidate(i, scores[i]);
            }
        }

        if (count == 0)
        {
            return ArgMax(scores);
        }

        candidates = candidates[..count];

        // Top-k: keep the k best (ties by lower id), sorted best first.
        var k = _options.TopK > 0 ? Math.Min(_options.TopK, count) : count;
        if (k < count)
        {
            SelectTop(candidates, k);
            candidates = candidates[..k];
        }

        candidates.Sort(static (a, b) => b.Logit != a.Logit ? b.Logit.CompareTo(a.Logit) : a.Id.CompareTo(b.Id));

        // Probabilities at temperature 1 for top-p and min-p, as llama.cpp computes them.
        Softmax(candidates, 1f);
        if (_options.TopP < 1)
        {
            double cumulative = 0;
            var keep = candidates.Length;
            for (var i = 0; i < candidates.Length; i++)
            {
                cumulative += candidates[i].Probability;
                if (cumulative >= _options.TopP)
                {
                    keep = i + 1;
                    break;
                }
            }

            candidates = candidates[..keep];
        }

        if (_options.MinP > 0)
        {
            var threshold = candidates[0].Probability * _options.MinP;
            var keep = 1;
            while (keep < candidates.Length && candidates[keep].Probability >= threshold)
            {
                keep++;
            }

            candidates = candidates[..keep];
        }

        Softmax(candidates, _options.Temperature);
        var draw = NextDouble();
        double acc = 0;
        for (var i = 0; i < candidates.Length; i++)
        {
            acc += candidates[i].Probability;
            if (draw < acc)
            {
                return candidates[i].Id;
            }
        }

        return candidates[^1].Id;
    }

    private ReadOnlySpan<float> ApplyPenalties(ReadOnlySpan<float> logits, ReadOnlySpan<int> history)
    {
        var o = _options;
        var window = o.PenaltyWindow < 0 ? history.Length : Math.Min(o.PenaltyWindow, history.Length);
        if (window == 0 || (o.RepetitionPenalty == 1 && o.FrequencyPenalty == 0 && o.PresencePenalty == 0))
        {
            return logits;
        }

        if (_penalized.Length < logits.Length)
        {
            _penalized = new float[logits.Length];
        }

        var scores = _penalized.AsSpan(0, logits.Length);
        logits.CopyTo(scores);
        _counts.Clear();
        foreach (var token in history[^window..])
        {
            if ((uint)token < (uint)scores.Length)
            {
                _counts[token] = _counts.GetValueOrDefault(token) + 1;
            }
        }

        foreach (var (token, occurrences) in _counts)
        {
            var s = scores[token];
            s = s <= 0 ? s * o.RepetitionPenalty : s / o.RepetitionPenalty;
            s -= (occurrences * o.FrequencyPenalty) + o.PresencePenalty;
            scores[token] = s;
        }

        return scores;
    }

    private static int ArgMax(ReadOnlySpan<float> scores)
    {
        var best = 0;
        for (var i = 1; i < scores.Length; i++)
        {
            if (scores[i] > scores[best])
            {
                best = i;
            }
        }

        return best;
    }

    private static void Softmax(Span<Candidate> candidates, float temperature)
    {
        var max = float.NegativeInfinity;
        foreach (var c in candidates)
        {
            max = Math.Max(max, c.Logit / temperature);
        }

        double sum = 0;
        for (var i = 0; i < candidates.Length; i++)
        {
            var p = Math.Exp((candidates[i].Logit / temperature) - max);
            candidates[i].Probability = p;
            sum += p;
        }

        for (var i = 0; i < candidates.Length; i++)
        {
            candidates[i].Probability /= sum;
        }
    }

    /// <summary>Moves the <paramref name="k"/> best candidates to the front (quickselect, O(n)).</summary>
    private static void SelectTop(Span<Candidate> items, int k)
    {
        int lo = 0, hi = items.Length - 1;
        while (lo < hi)
        {
            var pivot = items[lo + ((hi - lo) / 2)];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (Better(items[i], pivot))
                {
                    i++;
                }

                while (Better(pivot, items[j]))
                {
                    j--;
                }

                if (i <= j)
                {
                    (items[i], items[j]) = (items[j], items[i]);
                    i++;
                    j--;
                }
            }

            if (k - 1 <= j)
            {
                hi = j;
            }
            else if (k - 1 >= i)
            {
                lo = i;
            }
            else
            {
                return;
            }
        }
    }

    private static bool Better(Candidate a, Candidate b) => a.Logit > b.Logit || (a.Logit == b.Logit && a.Id < b.Id);

    private double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>xoshiro256**.</summary>
    private ulong NextUInt64()
    {
        var result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    private static ulong SplitMix(ref ulong state)
    {
        var z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private struct Candidate(int id, float logit)
    {
        public readonly int Id = id;
        public readonly float Logit = logit;
        public double Probability;
    }
}
