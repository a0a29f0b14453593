namespace Sluice.Engine.Sampling;

/// <summary>
/// How the next token is chosen from the logits. Filters apply in llama.cpp's default order: penalties, top-k,
/// top-p, min-p, then temperature and a seeded draw. A temperature of 0 (or less) is greedy: the highest logit
/// after penalties, lowest token id on ties.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Greedy decoding: temperature 0, no penalties.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Softmax temperature; 0 or less means greedy.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep the k most likely tokens; 0 or less keeps all.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Keep the smallest set of most likely tokens whose probabilities add up to at least this; 1 keeps all.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Drop tokens whose probability is below this fraction of the most likely token's; 0 keeps all.</summary>
    public float MinP { get; init; } = 0.05f;

    /// <summary>
    /// llama.cpp's repetition penalty over the last <see cref="PenaltyWindow"/> tokens: positive logits are divided
    /// by it, negative ones multiplied; 1 disables it.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Subtracted from a token's logit once per occurrence in the window.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>Subtracted from a token's logit when it occurs in the window at all.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>How many recent tokens the penalties look at (0: none; -1: the whole history).</summary>
    public int PenaltyWindow { get; init; } = 64;

    /// <summary>Seed of the draw: the same seed, logits and options give the same tokens. Null picks a random seed.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for values outside their ranges.</summary>
    public void Validate()
    {
        if (float.IsNaN(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be a number");
        }

        if (TopP is <= 0 or > 1 || float.IsNaN(TopP))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top-p must be in (0, 1]");
        }

        if (MinP is < 0 or > 1 || float.IsNaN(MinP))
        {
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "min-p must be in [0, 1]");
        }

        if (RepetitionPenalty <= 0 || float.IsNaN(RepetitionPenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "the repetition penalty must be positive");
        }

        if (PenaltyWindow < -1)
        {
            throw new ArgumentOutOfRangeException(nameof(PenaltyWindow), PenaltyWindow, "the penalty window is -1 (all), 0 (none) or a token count");
        }
    }
}
