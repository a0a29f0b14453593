using Sluice.Engine;
using Sluice.Engine.Sampling;

namespace Sluice.Providers.Local;

/// <summary>
/// Turns prompt token ids into generated token ids for a loaded model. The seam between the chat side (templates,
/// tokenizer, events, usage) and how forward passes are scheduled: <see cref="BatchingGenerator"/> gives each request
/// its own sequence and merges the decode steps of concurrent requests into one pass; the chat side does not know.
/// </summary>
public interface ILocalGenerator
{
    /// <summary>Positions one generation can use: its prompt plus its answer.</summary>
    int ContextSize { get; }

    /// <summary>
    /// Evaluates the prompt, then yields sampled token ids one at a time until a stop token (not yielded),
    /// <see cref="LocalGenerationRequest.MaxTokens"/>, a full context, or cancellation (which stops the running
    /// forward pass between layers and throws <see cref="OperationCanceledException"/>). Stopping the enumeration
    /// early ends the generation too. Safe to call concurrently.
    /// </summary>
    /// <param name="request">The prompt and how to sample.</param>
    /// <param name="stats">Filled in as the generation runs (times, reused prompt tokens, why it ended); may be null.</param>
    /// <param name="cancellationToken">Stops the generation.</param>
    IAsyncEnumerable<int> GenerateAsync(LocalGenerationRequest request, LocalGenerationStats? stats, CancellationToken cancellationToken);
}

/// <summary>One generation: prompt token ids and how to continue them.</summary>
public sealed record LocalGenerationRequest
{
    /// <summary>The prompt, exactly as it is fed to the model (BOS and template tokens included).</summary>
    public required IReadOnlyList<int> Prompt { get; init; }

    /// <summary>How tokens are chosen.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Most tokens to generate.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>Tokens that end the generation (end of sequence, end of turn); they are not yielded.</summary>
    public IReadOnlySet<int> StopTokens { get; init; } = new HashSet<int>();
}

/// <summary>What happened during one generation, filled in by an <see cref="ILocalGenerator"/> as it runs.</summary>
public sealed class LocalGenerationStats
{
    /// <summary>Time spent waiting for a free sequence before the prompt could be evaluated.</summary>
    public TimeSpan QueueTime { get; set; }

    /// <summary>Prompt tokens whose cache entries were kept from an earlier generation (a shared prefix), not evaluated again.</summary>
    public int ReusedPromptTokens { get; set; }

    /// <summary>Time spent evaluating the prompt (the tokens not reused), from its first pass to its last (passes shared with other generations included).</summary>
    public TimeSpan PromptTime { get; set; }

    /// <summary>Tokens generated (yielded).</summary>
    public int GeneratedTokens { get; set; }

    /// <summary>
    /// Time spent sampling generated tokens and in the passes that evaluated them (shared with the other generations of
    /// those passes; the caller's time between tokens and steps sat out are not counted).
    /// </summary>
    public TimeSpan GenerationTime { get; set; }

    /// <summary>The sampler's seed (the drawn one when the request gave none).</summary>
    public ulong Seed { get; set; }

    /// <summary>Why the generation ended (<see cref="GenerationStopReason.None"/> while it runs).</summary>
    public GenerationStopReason StopReason { get; set; }
}
