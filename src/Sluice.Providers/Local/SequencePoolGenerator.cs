using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Sluice.Engine;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;

namespace Sluice.Providers.Local;

/// <summary>
/// An <see cref="ILocalGenerator"/> over a pool of sequences: each generation takes a free sequence (its own key/value
/// cache), at most <see cref="MaxSequences"/> at once; further requests wait for one. The sequence whose cached tokens
/// share the longest prefix with the new prompt is preferred and that prefix is not evaluated again, so a conversation
/// that resends its history only pays for the new turn. Forward passes of one model are serialized by the engine, so
/// concurrent generations take turns token by token.
/// </summary>
public sealed class SequencePoolGenerator : ILocalGenerator, IDisposable
{
    private readonly LocalModel _model;
    private readonly SemaphoreSlim _free;
    private readonly Lock _gate = new();
    private readonly List<Slot> _idle = [];
    private int _created;

    /// <summary>Creates the pool; sequences are allocated the first time they are needed.</summary>
    /// <param name="model">The loaded model (not owned: dispose it yourself, after the pool).</param>
    /// <param name="maxSequences">Most generations at once.</param>
    /// <param name="contextSize">Positions per sequence; null uses the model's default context size.</param>
    public SequencePoolGenerator(LocalModel model, int maxSequences = 1, int? contextSize = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequences, 1);
        _model = model;
        MaxSequences = maxSequences;
        ContextSize = contextSize ?? model.DefaultContextSize;
        ArgumentOutOfRangeException.ThrowIfLessThan(ContextSize, 1, nameof(contextSize));
        _free = new SemaphoreSlim(maxSequences, maxSequences);
    }

    /// <inheritdoc />
    public int ContextSize { get; }

    /// <summary>Most generations at once.</summary>
    public int MaxSequences { get; }

    /// <summary>Sequences allocated so far (each holds <see cref="LocalModel.KvCacheBytes"/> of cache).</summary>
    public int AllocatedSequences => Volatile.Read(ref _created);

    /// <summary>Generations running now.</summary>
    public int Running => MaxSequences - _free.CurrentCount;

    /// <inheritdoc />
    public IAsyncEnumerable<int> GenerateAsync(LocalGenerationRequest request, LocalGenerationStats? stats, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.Sampling.Validate();
        ArgumentOutOfRangeException.ThrowIfNegative(request.MaxTokens, nameof(request));
        if (request.Prompt.Count == 0)
        {
            throw new ArgumentException("the prompt is empty: a generation needs at least one token (e.g. BOS)", nameof(request));
        }

        if (request.Prompt.Count > ContextSize)
        {
            throw new ArgumentException($"the prompt has {request.Prompt.Count} tokens, more than the {ContextSize}-position context", nameof(request));
        }

        return RunAsync(request, stats ?? new LocalGenerationStats(), cancellationToken);
    }

    /// <summary>Releases the pool's wait handle; call it when no generation runs (sequences are plain memory).</summary>
    public void Dispose() => _free.Dispose();

    private async IAsyncEnumerable<int> RunAsync(LocalGenerationRequest request, LocalGenerationStats stats, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var prompt = request.Prompt as int[] ?? [.. request.Prompt];
        var queued = Stopwatch.GetTimestamp();
        await _free.WaitAsync(cancellationToken);
        Slot? slot = null;
        try
        {
            slot = Take(prompt);
            stats.QueueTime = Stopwatch.GetElapsedTime(queued);
            var sampler = new TokenSampler(request.Sampling);
            stats.Seed = sampler.Seed;

            // Keep the cached prefix the prompt shares, but evaluate at least its last token: its logits choose the first answer token.
            var reuse = Math.Min(CommonPrefix(slot.Tokens, prompt), prompt.Length - 1);
            slot.Truncate(reuse);
            stats.ReusedPromptTokens = reuse;
            var started = Stopwatch.GetTimestamp();
            var logits = await Task.Run(() => slot.Evaluate(_model, prompt.AsMemory(reuse), cancellationToken), cancellationToken);
            stats.PromptTime = Stopwatch.GetElapsedTime(started);

            var working = TimeSpan.Zero;
            while (true)
            {
                if (stats.GeneratedTokens >= request.MaxTokens)
                {
                    stats.StopReason = GenerationStopReason.MaxTokens;
                    break;
                }

                cancellationToken.ThrowIfCancellationRequested();
                started = Stopwatch.GetTimestamp();
                var token = sampler.Sample(logits, CollectionsMarshal.AsSpan(slot.Tokens));
                working += Stopwatch.GetElapsedTime(started);
                stats.GenerationTime = working;
                if (request.StopTokens.Contains(token))
                {
                    stats.StopReason = GenerationStopReason.StopToken;
                    break;
                }

                stats.GeneratedTokens++;
                yield return token;

                // The last token allowed is not evaluated: nothing would read its logits.
                if (stats.GeneratedTokens >= request.MaxTokens)
                {
                    stats.StopReason = GenerationStopReason.MaxTokens;
                    break;
                }

                if (slot.Sequence.Length >= slot.Sequence.ContextSize)
                {
                    stats.StopReason = GenerationStopReason.ContextFull;
                    break;
                }

                started = Stopwatch.GetTimestamp();
                var next = new[] { token };
                logits = await Task.Run(() => slot.Evaluate(_model, next, cancellationToken), cancellationToken);
                working += Stopwatch.GetElapsedTime(started);
                stats.GenerationTime = working;
            }
        }
        finally
        {
            if (stats.StopReason == GenerationStopReason.None)
            {
                // Cancelled, failed, or the caller stopped reading (a stop string matched).
                stats.StopReason = GenerationStopReason.Cancelled;
            }

            if (slot is not null)
            {
                Return(slot);
            }

            _free.Release();
        }
    }

    /// <summary>
    /// A free sequence for <paramref name="prompt"/>: the idle one sharing the longest prefix with it; a new one when no
    /// idle sequence shares anything and the pool may still grow; otherwise the idle one that shares most.
    /// </summary>
    private Slot Take(int[] prompt)
    {
        lock (_gate)
        {
            var best = -1;
            var bestLength = -1;
            for (var i = 0; i < _idle.Count; i++)
            {
                var length = CommonPrefix(_idle[i].Tokens, prompt);
                if (length > bestLength)
                {
                    best = i;
                    bestLength = length;
                }
            }

            if (best >= 0 && (bestLength > 0 || _created >= MaxSequences))
            {
                var slot = _idle[best];
                _idle.RemoveAt(best);
                return slot;
            }

            _created++;
        }

        try
        {
            // Allocated outside the lock: a sequence's cache can be hundreds of megabytes.
            return new Slot(_model.CreateSequence(ContextSize));
        }
        catch
        {
            lock (_gate)
            {
                _created--;
            }

            throw;
        }
    }

    private void Return(Slot slot)
    {
        lock (_gate)
        {
            _idle.Add(slot);
        }
    }

    private static int CommonPrefix(List<int> cached, int[] prompt)
    {
        var n = Math.Min(cached.Count, prompt.Length);
        return CollectionsMarshal.AsSpan(cached)[..n].CommonPrefixLength(prompt.AsSpan(0, n));
    }

    /// <summary>A sequence and the tokens its cache holds, kept in step.</summary>
    private sealed class Slot(InferenceSequence sequence)
    {
        public InferenceSequence Sequence { get; } = sequence;

        /// <summary>The tokens in the cache, in order (also the sampler's history for repetition penalties).</summary>
        public List<int> Tokens { get; } = [];

        public void Truncate(int length)
        {
            Sequence.Truncate(length);
            Tokens.RemoveRange(length, Tokens.Count - length);
        }

        /// <summary>Appends <paramref name="tokens"/>; when cancelled part way, the tokens of the chunks already evaluated stay.</summary>
        public float[] Evaluate(LocalModel model, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken)
        {
            var before = Sequence.Length;
            try
            {
                return model.Evaluate(Sequence, tokens, cancellationToken);
            }
            finally
            {
                var evaluated = Sequence.Length - before;
                Tokens.AddRange(tokens.Span[..evaluated]);
            }
        }
    }
}
