using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Sluice.Engine;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;

namespace Sluice.Providers.Local;

/// <summary>
/// An <see cref="ILocalGenerator"/> that batches concurrent generations of one model: a single loop owns the forward
/// pass and, at every step, evaluates the next token of every decoding generation (and a chunk of every new prompt) in
/// one pass, so each read of the weights serves all of them. A request that arrives while others run joins the batch at
/// the next step. Each generation has its own sequence (key/value cache) from a pool of at most
/// <see cref="MaxSequences"/>; further requests wait for one. The sequence whose cached tokens share the longest prefix
/// with the new prompt is preferred and that prefix is not evaluated again, so a conversation that resends its history
/// only pays for the new turn.
/// </summary>
/// <remarks>
/// <para>The loop (one thread per generator, <c>Loop</c>; the steps are marked in the code):</para>
/// <list type="number">
/// <item>Admit: generations that got a sequence since the last step join the active list (arrival order).</item>
/// <item>Retire: generations whose caller cancelled or stopped reading leave; their sequences go back to the pool.</item>
/// <item>
/// Collect: a decoding generation contributes its last sampled token, unless its token buffer (bounded, 16 tokens) is
/// full: then its consumer is not reading and it sits out steps, without holding the others back, until the consumer
/// reads again (which wakes the loop). A generation still on its prompt contributes the next chunk: prompt tokens per
/// step are capped at the model's <see cref="LocalModelOptions.MaxBatchTokens"/> when nobody decodes, and at
/// <see cref="PromptChunk"/> while others decode, so a long new prompt delays the running streams by one chunk's pass
/// per step instead of the whole prompt's. Prompts are served in arrival order.
/// </item>
/// <item>
/// Evaluate: one forward pass over the batch. When it throws, each entry is evaluated again on its own (a failed pass
/// leaves every sequence as it was), so the exception reaches only the generations whose entry fails alone; the others
/// get the same logits they would have had in the batch (the kernels give bit-identical results for any batch).
/// </item>
/// <item>
/// Sample and hand out: each generation samples with its own sampler (seed, penalties over its own history); the token
/// goes to its buffer, and a stop token, <see cref="LocalGenerationRequest.MaxTokens"/> or a full context ends it (its
/// sequence returns to the pool before its consumer sees the end, so the next request can reuse the prefix).
/// </item>
/// <item>Idle: with nothing to evaluate the loop sleeps until a request joins, a parked consumer reads, a generation is cancelled, or the generator is disposed.</item>
/// </list>
/// <para>
/// Cancellation of one generation removes it at the next step boundary; a running pass is not interrupted for it (the
/// others are in the same pass), so it stops within one step. Results do not depend on what else is in the batch:
/// a generation's tokens are the ones it gets when it runs alone.
/// </para>
/// </remarks>
public sealed class BatchingGenerator : ILocalGenerator, IDisposable
{
    /// <summary>Tokens a generation may have sampled but its consumer not yet read before it sits out steps.</summary>
    public const int DefaultTokenBuffer = 16;

    /// <summary>Prompt tokens per step while other generations decode, unless the constructor says otherwise.</summary>
    public const int DefaultPromptChunk = 128;

    private readonly LocalModel _model;
    private readonly Func<IReadOnlyList<BatchEntry>, CancellationToken, float[][]> _evaluate;
    private readonly int _tokenBuffer;
    private readonly int _maxPromptTokens;
    private readonly SemaphoreSlim _free;
    private readonly Lock _gate = new();
    private readonly List<Slot> _idle = [];
    private readonly ConcurrentQueue<Generation> _joining = new();
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Thread _thread;
    private int _created;
    private int _disposed;
    private long _steps;

    /// <summary>Creates the generator and starts its loop; sequences are allocated the first time they are needed.</summary>
    /// <param name="model">The loaded model (not owned: dispose it yourself, after the generator).</param>
    /// <param name="maxSequences">Most generations at once (the largest batch of decode steps).</param>
    /// <param name="contextSize">Positions per sequence; null uses the model's default context size.</param>
    /// <param name="promptChunk">Prompt tokens one step takes while other generations decode; null uses <see cref="DefaultPromptChunk"/>.</param>
    public BatchingGenerator(LocalModel model, int maxSequences = 1, int? contextSize = null, int? promptChunk = null)
        : this(model, maxSequences, contextSize, promptChunk, null, DefaultTokenBuffer)
    {
    }

    /// <summary>The constructor tests use: <paramref name="evaluate"/> replaces the model's batch evaluation (to count or fail passes).</summary>
    internal BatchingGenerator(
        LocalModel model,
        int maxSequences,
        int? contextSize,
        int? promptChunk,
        Func<IReadOnlyList<BatchEntry>, CancellationToken, float[][]>? evaluate,
        int tokenBuffer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequences, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokenBuffer, 1);
        _model = model;
        MaxSequences = maxSequences;
        ContextSize = contextSize ?? model.DefaultContextSize;
        ArgumentOutOfRangeException.ThrowIfLessThan(ContextSize, 1, nameof(contextSize));
        _maxPromptTokens = Math.Max(1, model.Options.MaxBatchTokens);
        PromptChunk = Math.Min(promptChunk ?? DefaultPromptChunk, _maxPromptTokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(PromptChunk, 1, nameof(promptChunk));
        _evaluate = evaluate ?? model.Evaluate;
        _tokenBuffer = tokenBuffer;
        _free = new SemaphoreSlim(maxSequences, maxSequences);
        _thread = new Thread(Loop) { IsBackground = true, Name = "sluice-batch" };
        _thread.Start();
    }

    /// <inheritdoc />
    public int ContextSize { get; }

    /// <summary>Most generations at once.</summary>
    public int MaxSequences { get; }

    /// <summary>Prompt tokens one step takes while other generations decode.</summary>
    public int PromptChunk { get; }

    /// <summary>Sequences allocated so far (each holds <see cref="LocalModel.KvCacheBytes"/> of cache).</summary>
    public int AllocatedSequences => Volatile.Read(ref _created);

    /// <summary>Generations holding a sequence now (running, or finished but not yet retired by the loop).</summary>
    public int Running => MaxSequences - _free.CurrentCount;

    /// <summary>Generations that hold a sequence and wait for the loop to admit them at its next step (tests hold a pass on it).</summary>
    internal int Joining => _joining.Count;

    /// <summary>Forward passes run so far (one per step).</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <inheritdoc />
    public IAsyncEnumerable<int> GenerateAsync(LocalGenerationRequest request, LocalGenerationStats? stats, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
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

        // Checked here, not in the shared pass: one request's bad token must not fail the batch it would join.
        var prompt = request.Prompt.ToArray();
        var vocabulary = _model.Info.VocabularySize;
        foreach (var token in prompt)
        {
            if ((uint)token >= (uint)vocabulary)
            {
                throw new ArgumentOutOfRangeException(nameof(request), token, $"prompt token id outside the vocabulary of {vocabulary}");
            }
        }

        return RunAsync(request, prompt, stats ?? new LocalGenerationStats(), cancellationToken);
    }

    /// <summary>
    /// Stops the loop: running and queued generations end with <see cref="ObjectDisposedException"/>. Waits for the
    /// running pass to finish (dispose the model after this).
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        _wake.Set();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }

        // Joined after the loop's last look at the queue: their consumers wake through the cancelled token anyway.
        while (_joining.TryDequeue(out var late))
        {
            Finish(late, GenerationStopReason.Cancelled, new ObjectDisposedException(nameof(BatchingGenerator)));
        }
    }

    private async IAsyncEnumerable<int> RunAsync(LocalGenerationRequest request, int[] prompt, LocalGenerationStats stats, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        var token = linked.Token;
        var queued = Stopwatch.GetTimestamp();
        try
        {
            await _free.WaitAsync(token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ObjectDisposedException(nameof(BatchingGenerator));
        }

        Generation generation;
        try
        {
            var slot = Take(prompt);

            // Keep the cached prefix the prompt shares, but evaluate at least its last token: its logits choose the first answer token.
            var reuse = Math.Min(CommonPrefix(slot.Tokens, prompt), prompt.Length - 1);
            slot.Truncate(reuse);
            generation = new Generation(request, prompt, reuse, slot, new TokenSampler(request.Sampling), _tokenBuffer, token);
            stats.QueueTime = Stopwatch.GetElapsedTime(queued);
            stats.ReusedPromptTokens = reuse;
            stats.Seed = generation.Sampler.Seed;
        }
        catch
        {
            _free.Release();
            throw;
        }

        if (request.MaxTokens == 0)
        {
            // Nothing to sample, so nothing to evaluate.
            stats.StopReason = GenerationStopReason.MaxTokens;
            Return(generation.Slot);
            _free.Release();
            yield break;
        }

        // From here on the loop owns the sequence and releases it (Finish).
        generation.Registration = token.UnsafeRegister(static s => ((BatchingGenerator)s!).Signal(), this);
        _joining.Enqueue(generation);
        Signal();
        var completed = false;
        try
        {
            var reader = generation.Channel.Reader;
            while (true)
            {
                bool more;
                try
                {
                    more = await reader.WaitToReadAsync(token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && _stopping.IsCancellationRequested)
                {
                    throw new ObjectDisposedException(nameof(BatchingGenerator));
                }

                if (!more)
                {
                    // A generation the loop retired because the caller cancelled is a cancellation, not an end: the
                    // channel's completion can wake this wait before the token's registration does, and ending normally
                    // then made an abandoned call look completed (a usage record "completed" with a cut answer).
                    if (generation.StopReason == GenerationStopReason.Cancelled)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        ObjectDisposedException.ThrowIf(_stopping.IsCancellationRequested, this);
                    }

                    break;
                }

                while (true)
                {
                    // Buffered tokens are not handed out after a cancellation: it stops the stream at once.
                    cancellationToken.ThrowIfCancellationRequested();
                    ObjectDisposedException.ThrowIf(_stopping.IsCancellationRequested, this);
                    if (!reader.TryRead(out var next))
                    {
                        break;
                    }

                    // TryRead took the channel's lock (a full fence), so a loop that parked this generation is seen here.
                    if (Volatile.Read(ref generation.Parked) != 0)
                    {
                        Signal();
                    }

                    stats.GeneratedTokens++;
                    stats.PromptTime = Stopwatch.GetElapsedTime(0, Volatile.Read(ref generation.PromptTicks));
                    stats.GenerationTime = Stopwatch.GetElapsedTime(0, Volatile.Read(ref generation.GenerationTicks));
                    yield return next;
                }
            }

            completed = true;
            stats.StopReason = generation.StopReason;
        }
        finally
        {
            stats.PromptTime = Stopwatch.GetElapsedTime(0, Volatile.Read(ref generation.PromptTicks));
            stats.GenerationTime = Stopwatch.GetElapsedTime(0, Volatile.Read(ref generation.GenerationTicks));
            if (!completed)
            {
                // Cancelled, failed, or the caller stopped reading (a stop string matched): the loop retires it.
                stats.StopReason = GenerationStopReason.Cancelled;
                generation.Abandoned = true;
                Signal();
            }
        }
    }

    private void Signal() => _wake.Set();

    /// <summary>The scheduler: one step (one forward pass over every ready generation) per iteration. See the remarks.</summary>
    private void Loop()
    {
        var active = new List<Generation>();
        var batch = new List<BatchEntry>();
        var members = new List<Generation>();
        var stopping = _stopping.Token;
        while (true)
        {
            // Reset before looking at the state: a signal from here on keeps the wait below from sleeping.
            _wake.Reset();

            // Step 1 — admit.
            while (_joining.TryDequeue(out var joined))
            {
                active.Add(joined);
            }

            if (stopping.IsCancellationRequested)
            {
                foreach (var generation in active)
                {
                    Finish(generation, GenerationStopReason.Cancelled, new ObjectDisposedException(nameof(BatchingGenerator)));
                }

                return;
            }

            // Step 2 — retire generations nobody waits for.
            foreach (var generation in active)
            {
                if (generation.Abandoned || generation.Token.IsCancellationRequested)
                {
                    Finish(generation, GenerationStopReason.Cancelled, null);
                }
            }

            active.RemoveAll(static g => g.Ended);

            // Step 3 — collect: decode tokens first, then prompt chunks within the step's prompt budget.
            batch.Clear();
            members.Clear();
            var decoding = active.Exists(static g => g.Decoding);
            var budget = decoding ? PromptChunk : _maxPromptTokens;
            foreach (var generation in active)
            {
                if (generation.Decoding)
                {
                    // Parked before the look at the buffer (a full fence): a consumer reading after the look sees the flag and wakes us.
                    Interlocked.Exchange(ref generation.Parked, 1);
                    if (generation.Channel.Reader.Count >= _tokenBuffer)
                    {
                        continue; // Its consumer is behind: it sits out until it reads.
                    }

                    Volatile.Write(ref generation.Parked, 0);
                    batch.Add(new BatchEntry(generation.Slot.Sequence, generation.Next, LogitsRequest.Last, generation.Slot.Logits));
                    members.Add(generation);
                }
                else if (budget > 0)
                {
                    var n = Math.Min(budget, generation.Prompt.Length - generation.Evaluated);
                    budget -= n;
                    var last = generation.Evaluated + n == generation.Prompt.Length;
                    if (generation.PromptStarted == 0)
                    {
                        generation.PromptStarted = Stopwatch.GetTimestamp();
                    }

                    batch.Add(new BatchEntry(generation.Slot.Sequence, generation.Prompt.AsMemory(generation.Evaluated, n), last ? LogitsRequest.Last : LogitsRequest.None, generation.Slot.Logits));
                    members.Add(generation);
                }
            }

            if (batch.Count == 0)
            {
                // Step 6 — idle until something changes.
                _wake.Wait();
                continue;
            }

            // Step 4 — one forward pass for the whole batch.
            var started = Stopwatch.GetTimestamp();
            float[][] logits;
            Exception?[]? failures;
            try
            {
                logits = Evaluate(batch, out failures, stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                continue; // Disposed mid-pass: the next iteration ends every generation.
            }

            var passTicks = Stopwatch.GetTimestamp() - started;
            Interlocked.Increment(ref _steps);

            // Step 5 — sample per generation and hand the tokens out.
            for (var i = 0; i < members.Count; i++)
            {
                var generation = members[i];
                if (failures?[i] is { } failure)
                {
                    Finish(generation, GenerationStopReason.None, failure);
                    continue;
                }

                try
                {
                    Advance(generation, batch[i], logits[i], passTicks);
                }
                catch (Exception ex)
                {
                    // A sampler failure is this generation's alone.
                    Finish(generation, GenerationStopReason.None, ex);
                }
            }

            active.RemoveAll(static g => g.Ended);
        }
    }

    /// <summary>Runs the pass; when it fails with several entries, runs each alone so that only the failing ones fail.</summary>
    private float[][] Evaluate(List<BatchEntry> batch, out Exception?[]? failures, CancellationToken stopping)
    {
        failures = null;
        try
        {
            return _evaluate(batch, stopping);
        }
        catch (Exception) when (batch.Count > 1 && !stopping.IsCancellationRequested)
        {
            // A failed pass changes no sequence (lengths advance only at its end), so each entry can be run again.
            var results = new float[batch.Count][];
            for (var i = 0; i < batch.Count; i++)
            {
                try
                {
                    results[i] = _evaluate([batch[i]], stopping)[0];
                }
                catch (Exception ex) when (!stopping.IsCancellationRequested)
                {
                    (failures ??= new Exception?[batch.Count])[i] = ex;
                    results[i] = [];
                }
            }

            return results;
        }
        catch (Exception ex) when (!stopping.IsCancellationRequested)
        {
            failures = [ex];
            return [[]];
        }
    }

    /// <summary>Records what the pass evaluated for <paramref name="generation"/> and, when it produced logits, samples its next token.</summary>
    private void Advance(Generation generation, BatchEntry entry, float[] logits, long passTicks)
    {
        generation.Slot.Tokens.AddRange(entry.Tokens.Span);
        if (!generation.Decoding)
        {
            generation.Evaluated += entry.Tokens.Length;
            if (entry.Logits == LogitsRequest.None)
            {
                return;
            }

            Volatile.Write(ref generation.PromptTicks, Stopwatch.GetTimestamp() - generation.PromptStarted);
        }
        else
        {
            Volatile.Write(ref generation.GenerationTicks, generation.GenerationTicks + passTicks);
        }

        var started = Stopwatch.GetTimestamp();
        var token = generation.Sampler.Sample(logits, CollectionsMarshal.AsSpan(generation.Slot.Tokens));
        Volatile.Write(ref generation.GenerationTicks, generation.GenerationTicks + (Stopwatch.GetTimestamp() - started));
        if (generation.Request.StopTokens.Contains(token))
        {
            Finish(generation, GenerationStopReason.StopToken, null);
            return;
        }

        // Room is certain: the generation took part only because its buffer had some, and only this loop writes.
        var written = generation.Channel.Writer.TryWrite(token);
        Debug.Assert(written, "a generation took part in a step with a full token buffer");
        generation.Produced++;
        if (generation.Produced >= generation.Request.MaxTokens)
        {
            // The last token allowed is not evaluated: nothing would read its logits.
            Finish(generation, GenerationStopReason.MaxTokens, null);
        }
        else if (generation.Slot.Sequence.Length >= generation.Slot.Sequence.ContextSize)
        {
            Finish(generation, GenerationStopReason.ContextFull, null);
        }
        else
        {
            generation.Decoding = true;
            generation.Next[0] = token;
        }
    }

    /// <summary>Ends a generation: sequence back to the pool first (so the consumer's next request can reuse it), then the end for the consumer.</summary>
    private void Finish(Generation generation, GenerationStopReason reason, Exception? failure)
    {
        if (generation.Ended)
        {
            return;
        }

        generation.Ended = true;
        generation.StopReason = reason;
        generation.Registration.Unregister();
        Return(generation.Slot);
        _free.Release();
        generation.Channel.Writer.TryComplete(failure);
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
            return new Slot(_model.CreateSequence(ContextSize), _model.Info.VocabularySize);
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
    private sealed class Slot(InferenceSequence sequence, int vocabulary)
    {
        public InferenceSequence Sequence { get; } = sequence;

        /// <summary>The tokens in the cache, in order (also the sampler's history for repetition penalties).</summary>
        public List<int> Tokens { get; } = [];

        /// <summary>
        /// Where each pass writes this slot's logits (sampled before the next pass): a new vocabulary-sized array per
        /// token would be a large-object-heap allocation per token and per stream.
        /// </summary>
        public float[] Logits { get; } = new float[vocabulary];

        public void Truncate(int length)
        {
            Sequence.Truncate(length);
            Tokens.RemoveRange(length, Tokens.Count - length);
        }
    }

    /// <summary>
    /// One generation's state. The loop thread owns everything but <see cref="Abandoned"/> and <see cref="Parked"/>
    /// (shared with the consumer) and the tick counters (read by the consumer for its stats).
    /// </summary>
    private sealed class Generation(LocalGenerationRequest request, int[] prompt, int evaluated, Slot slot, TokenSampler sampler, int buffer, CancellationToken token)
    {
        public readonly LocalGenerationRequest Request = request;
        public readonly int[] Prompt = prompt;
        public readonly Slot Slot = slot;
        public readonly TokenSampler Sampler = sampler;
        public readonly CancellationToken Token = token;

        /// <summary>The consumer's buffer: bounded, written only by the loop, which checks for room before a step.</summary>
        public readonly Channel<int> Channel = System.Threading.Channels.Channel.CreateBounded<int>(new BoundedChannelOptions(buffer)
        {
            SingleReader = true,
            SingleWriter = true,

            // The loop must never run a consumer's continuation inline.
            AllowSynchronousContinuations = false,
        });

        /// <summary>The token to evaluate at the next step (decoding).</summary>
        public readonly int[] Next = new int[1];

        public CancellationTokenRegistration Registration;

        /// <summary>Prompt tokens in the cache (the reused prefix and the chunks evaluated).</summary>
        public int Evaluated = evaluated;

        public bool Decoding;
        public int Produced;
        public bool Ended;
        public GenerationStopReason StopReason;
        public long PromptStarted;
        public long PromptTicks;
        public long GenerationTicks;

        /// <summary>1 while the loop leaves the generation out because its buffer is full.</summary>
        public int Parked;

        /// <summary>The consumer has gone (cancelled, failed, or stopped reading).</summary>
        public volatile bool Abandoned;
    }
}
