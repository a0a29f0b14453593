using System.Runtime.CompilerServices;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;

namespace Sluice.Engine;

/// <summary>Why a generation ended.</summary>
public enum GenerationStopReason
{
    /// <summary>Still running, or never started.</summary>
    None,

    /// <summary>The model produced a stop token (end of sequence); the stop token is not yielded.</summary>
    StopToken,

    /// <summary><see cref="GenerationOptions.MaxTokens"/> tokens were produced.</summary>
    MaxTokens,

    /// <summary>The sequence's context is full.</summary>
    ContextFull,

    /// <summary>The caller stopped enumerating, or cancelled.</summary>
    Cancelled,
}

/// <summary>Options of one <see cref="GenerationSession.Generate"/> call.</summary>
public sealed record GenerationOptions
{
    /// <summary>How tokens are chosen.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Most tokens to produce.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>Token ids that end generation; null means the model's end-of-sequence token.</summary>
    public IReadOnlyCollection<int>? StopTokens { get; init; }
}

/// <summary>
/// Prompt-then-generate over one <see cref="InferenceSequence"/>. The history accumulates: a second
/// <see cref="Generate"/> call continues after the first (multi-turn reuse of the cache). Token ids in, token ids
/// out; detokenization and stop strings belong to the caller's tokenizer. Not thread-safe.
/// </summary>
public sealed class GenerationSession
{
    private readonly LocalModel _model;
    private readonly List<int> _history = [];

    internal GenerationSession(LocalModel model, InferenceSequence sequence)
    {
        _model = model;
        Sequence = sequence;
    }

    /// <summary>The sequence (and cache) this session extends.</summary>
    public InferenceSequence Sequence { get; }

    /// <summary>Every token evaluated so far: prompts and generated tokens, in order.</summary>
    public IReadOnlyList<int> History => _history;

    /// <summary>Why the last generation ended.</summary>
    public GenerationStopReason StopReason { get; private set; }

    /// <summary>The sampler seed of the last generation (the drawn one when none was given).</summary>
    public ulong LastSeed { get; private set; }

    /// <summary>Clears the history and the cache.</summary>
    public void Reset()
    {
        _history.Clear();
        Sequence.Truncate(0);
        StopReason = GenerationStopReason.None;
    }

    /// <summary>
    /// Evaluates <paramref name="prompt"/> after the history (one batched pass), then yields generated token ids one at
    /// a time until a stop token, <see cref="GenerationOptions.MaxTokens"/>, a full context, or cancellation (checked
    /// before every token and between layers; throws <see cref="OperationCanceledException"/>). Each token is
    /// evaluated lazily, when the caller asks for the next one.
    /// </summary>
    public IEnumerable<int> Generate(IReadOnlyList<int> prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        options.Sampling.Validate();
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxTokens, nameof(options));
        if (prompt.Count == 0 && _history.Count == 0)
        {
            throw new ArgumentException("the first generation needs a prompt", nameof(prompt));
        }

        return Run(prompt, options, cancellationToken);
    }

    /// <summary>The asynchronous form of <see cref="Generate"/>: each forward pass runs on the thread pool.</summary>
    public async IAsyncEnumerable<int> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var tokens = Generate(prompt, options, cancellationToken).GetEnumerator();
        while (await Task.Run(tokens.MoveNext, cancellationToken).ConfigureAwait(false))
        {
            yield return tokens.Current;
        }
    }

    private IEnumerable<int> Run(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken)
    {
        StopReason = GenerationStopReason.None;
        var sampler = new TokenSampler(options.Sampling);
        LastSeed = sampler.Seed;
        var stops = options.StopTokens ?? (_model.Info.EosTokenId is { } eos ? [eos] : []);
        var finished = false;

        // One logits buffer for the whole generation: each token is sampled before the next pass overwrites it.
        var logitsBuffer = new float[_model.Info.VocabularySize];
        try
        {
            float[] logits;
            if (prompt.Count > 0)
            {
                var tokens = prompt.ToArray();
                if (Sequence.Length + tokens.Length > Sequence.ContextSize)
                {
                    throw new InvalidOperationException($"the prompt of {tokens.Length} tokens does not fit: {Sequence.Length} of {Sequence.ContextSize} positions are used");
                }

                var before = Sequence.Length;
                try
                {
                    logits = _model.Evaluate(Sequence, tokens, logitsBuffer, cancellationToken);
                }
                catch
                {
                    // A long prompt goes in chunks: drop the chunks already evaluated so cache and history agree.
                    Sequence.Truncate(before);
                    throw;
                }

                _history.AddRange(tokens);
            }
            else
            {
                // Continue from the history: re-evaluate its last token to get fresh logits.
                var last = _history[^1];
                Sequence.Truncate(Sequence.Length - 1);
                logits = _model.Evaluate(Sequence, new[] { last }, logitsBuffer, cancellationToken);
            }

            for (var produced = 0; ; produced++)
            {
                if (produced >= options.MaxTokens)
                {
                    StopReason = GenerationStopReason.MaxTokens;
                    break;
                }

                cancellationToken.ThrowIfCancellationRequested();
                var token = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history));
                if (stops.Contains(token))
                {
                    StopReason = GenerationStopReason.StopToken;
                    break;
                }

                yield return token;
                if (Sequence.Length >= Sequence.ContextSize)
                {
                    // The token was produced but cannot be evaluated: keep it out of the history.
                    StopReason = GenerationStopReason.ContextFull;
                    break;
                }

                cancellationToken.ThrowIfCancellationRequested();
                logits = _model.Evaluate(Sequence, new[] { token }, logitsBuffer, cancellationToken);
                _history.Add(token);
            }

            finished = true;
        }
        finally
        {
            if (!finished)
            {
                StopReason = GenerationStopReason.Cancelled;
            }
        }
    }
}
