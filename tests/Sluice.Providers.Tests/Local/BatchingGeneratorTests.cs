using System.Collections.Concurrent;
using Sluice.Engine;
using Sluice.Engine.Gguf;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;
using Sluice.Providers.Local;

namespace Sluice.Providers.Tests.Local;

/// <summary>Random-weight models of two weight types for <see cref="BatchingGeneratorTests"/>.</summary>
public sealed class BatchingModels : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("sluice-batching-").FullName;

    public BatchingModels()
    {
        Q8 = Path.Combine(_directory, "llama-q8.gguf");
        SyntheticModel.Write(Q8, new SyntheticModelSpec { Architecture = "llama", WeightType = GgmlType.Q8_0, Seed = 21 });
        Q4K = Path.Combine(_directory, "qwen2-q4k.gguf");
        SyntheticModel.Write(Q4K, new SyntheticModelSpec { Architecture = "qwen2", WeightType = GgmlType.Q4_K, AttentionBiases = true, Seed = 22 });
    }

    public string Q8 { get; }

    public string Q4K { get; }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}

/// <summary>
/// The batching scheduler: concurrent generations give exactly the tokens they give alone (greedy and seeded), really
/// share passes, a late request joins the running batch, cancellation, failures, slow consumers, the sequence limit
/// and prefix reuse. Ordering is asserted on the scheduler's own steps (recorded by an evaluation hook), not on timing.
/// </summary>
public sealed class BatchingGeneratorTests(BatchingModels models) : IClassFixture<BatchingModels>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static readonly int[][] Prompts =
    [
        [1, 40, 290, 7, 99, 260, 3, 17, 42, 200, 201, 5],
        [1, 11, 12],
        [1, 300, 301, 302, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95],
        [1, 150, 151, 152, 153, 154, 155],
    ];

    private LocalModel Load(string? path = null, int context = 256) =>
        LocalModel.Load(path ?? models.Q8, new LocalModelOptions { ThreadCount = 1, ContextSize = context, PrefetchWeights = false });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Four_concurrent_greedy_generations_match_each_run_alone(bool q4k)
    {
        using var model = Load(q4k ? models.Q4K : models.Q8);
        var requests = Prompts.Select(p => Request(p, 24)).ToArray();
        var alone = await AloneAsync(model, requests);

        // An independent path (the engine's session, one pass per token) agrees with the generator alone.
        Assert.Equal(model.CreateSession().Generate(Prompts[0], new GenerationOptions { MaxTokens = 24, StopTokens = [] }).ToList(), alone[0]);

        var log = new StepLog();
        using var generator = new BatchingGenerator(model, 4, null, null, log.Wrap(model), 64);
        var together = await Task.WhenAll(requests.Select(r => Task.Run(() => CollectAsync(generator, r))));

        Assert.Equal(alone, together);
        Assert.Contains(log.Steps, s => s.Count >= 2);
    }

    [Fact]
    public async Task Four_concurrent_seeded_sampled_generations_match_each_run_alone()
    {
        using var model = Load();
        var requests = Prompts.Select((p, i) => Request(p, 24) with
        {
            Sampling = new SamplingOptions { Temperature = 1.1f, TopK = 0, TopP = 1, MinP = 0, RepetitionPenalty = 1.2f, Seed = (ulong)(40 + i) },
        }).ToArray();
        var alone = await AloneAsync(model, requests);

        using var generator = new BatchingGenerator(model, 4);
        var stats = requests.Select(_ => new LocalGenerationStats()).ToArray();
        var together = await Task.WhenAll(requests.Select((r, i) => Task.Run(() => CollectAsync(generator, r, stats[i]))));

        Assert.Equal(alone, together);
        Assert.Equal([40UL, 41UL, 42UL, 43UL], stats.Select(s => s.Seed));
        Assert.All(stats, s => Assert.Equal((GenerationStopReason.MaxTokens, 24), (s.StopReason, s.GeneratedTokens)));
        Assert.NotEqual(alone[0], alone[1]);
    }

    [Fact]
    public async Task Four_concurrent_decoders_share_each_step()
    {
        using var model = Load();
        BatchingGenerator? generator = null;
        var log = new StepLog
        {
            // Hold the first pass until the others are in it or wait to be admitted, so the rest of the run has all of them decoding.
            // (Holding a sequence is not enough: on a loaded machine one was preempted before it queued and joined 20 steps late.)
            BeforeFirst = first => SpinWait.SpinUntil(() => first.Count + generator!.Joining == 4, Patience),
        };
        generator = new BatchingGenerator(model, 4, null, null, log.Wrap(model), 64);
        using (generator)
        {
            var requests = Prompts.Select(p => Request(p, 16)).ToArray();
            var together = await Task.WhenAll(requests.Select(r => Task.Run(() => CollectAsync(generator, r))));
            Assert.Equal(await AloneAsync(model, requests), together);
        }

        // 4 × 16 tokens; each generation takes part in 16 passes (its prompt, then 15 decode steps). Decoding together,
        // the steps with four one-token entries are most of them; one at a time there would be none.
        var fourDecoders = log.Steps.Count(s => s.Count == 4 && s.All(e => e.Tokens == 1));
        Assert.True(fourDecoders >= 12, $"{fourDecoders} steps decoded 4 sequences; steps: {log.Describe()}");
        Assert.True(log.Steps.Count <= 20, $"{log.Steps.Count} passes for 4 × 16 tokens; steps: {log.Describe()}");
        Assert.Equal(log.Steps.Count, generator.Steps);
    }

    [Fact]
    public async Task A_request_arriving_while_three_decode_joins_their_batch_and_finishes_first()
    {
        using var model = Load();
        int[] late = [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        BatchingGenerator? generator = null;
        var log = new StepLog
        {
            // Hold the first pass until the others are in it or wait to be admitted: on a loaded machine the third once joined 20
            // steps behind the first (it held a sequence, but was preempted before it queued), which then ended too
            // early for the three to decode on together.
            BeforeFirst = first => SpinWait.SpinUntil(() => first.Count + generator!.Joining == 3, Patience),
        };
        log.Before = steps =>
        {
            // At the first step where the three decode together, wait for the late request to queue for the next step.
            if (!log.Held && steps.Count == 3 && steps.All(e => e.Tokens == 1))
            {
                log.Held = true;
                SpinWait.SpinUntil(() => generator!.Joining == 1, Patience);
            }
        };
        generator = new BatchingGenerator(model, 4, null, null, log.Wrap(model), 64);
        using (generator)
        {
            var early = Prompts[..3].Select(p => Request(p, 40)).ToArray();
            var firstTokens = early.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
            var running = early.Select((r, i) => Task.Run(() => CollectAsync(generator, r, onToken: _ => firstTokens[i].TrySetResult()))).ToArray();
            await Task.WhenAll(firstTokens.Select(t => t.Task)).WaitAsync(Patience);

            var lateTokens = await CollectAsync(generator, Request(late, 5));
            var earlyTokens = await Task.WhenAll(running);

            var alone = await AloneAsync(model, [.. early, Request(late, 5)]);
            Assert.Equal(alone, [.. earlyTokens, lateTokens]);
        }

        // The late prompt went into a pass with the three decoders; its 4 decode steps too; the three went on after it ended.
        var steps = log.Steps;
        var joined = steps.FindIndex(s => s.Any(e => e.Tokens == late.Length));
        Assert.True(joined > 0, log.Describe());
        Assert.Equal(4, steps[joined].Count);
        var lateSequence = steps[joined].Single(e => e.Tokens == late.Length).Sequence;
        var lateSteps = steps.Select((s, i) => (s, i)).Where(x => x.s.Any(e => e.Sequence == lateSequence)).Select(x => x.i).ToList();
        Assert.Equal(5, lateSteps.Count);
        Assert.All(lateSteps, i => Assert.Equal(4, steps[i].Count));
        var othersAfter = steps.Skip(lateSteps[^1] + 1).Count(s => s.Count == 3);
        Assert.True(othersAfter >= 20, $"the three decoded {othersAfter} steps after the late request ended; steps: {log.Describe()}");
    }

    [Fact]
    public async Task Cancelling_one_generation_leaves_the_others_exact_and_frees_its_sequence()
    {
        using var model = Load();
        var requests = Prompts.Select(p => Request(p, 30)).ToArray();
        var alone = await AloneAsync(model, requests);
        using var generator = new BatchingGenerator(model, 4);
        using var cancel = new CancellationTokenSource();
        var seen = new List<int>();
        var cancelled = Task.Run(async () =>
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (var token in generator.GenerateAsync(requests[1], null, cancel.Token))
                {
                    seen.Add(token);
                    if (seen.Count == 3)
                    {
                        await cancel.CancelAsync();
                    }
                }
            });
        });
        var others = new[] { 0, 2, 3 }.Select(i => Task.Run(() => CollectAsync(generator, requests[i]))).ToArray();

        await cancelled.WaitAsync(Patience);
        var results = await Task.WhenAll(others).WaitAsync(Patience);
        Assert.Equal([alone[0], alone[2], alone[3]], results);
        Assert.Equal(alone[1][..3], seen);
        Assert.True(SpinWait.SpinUntil(() => generator.Running == 0, Patience));

        // Its sequence is back in the pool: the next request uses it and gets its own answer.
        Assert.Equal(alone[1], await CollectAsync(generator, requests[1]));
        Assert.True(generator.AllocatedSequences <= 4);
    }

    [Fact]
    public async Task A_failing_pass_fails_only_the_generation_whose_entry_fails()
    {
        using var model = Load();
        const int poison = 299;
        int[] poisoned = [1, 20, 21, poison, 22];
        var log = new StepLog
        {
            Before = steps =>
            {
                if (steps.Any(e => e.Poisoned))
                {
                    throw new InvalidOperationException("poisoned batch");
                }
            },
            Poison = poison,
        };
        var requests = Prompts[..3].Select(p => Request(p, 12)).ToArray();
        var alone = await AloneAsync(model, requests);
        using var generator = new BatchingGenerator(model, 4, null, null, log.Wrap(model), 64);

        var failing = Task.Run(() => CollectAsync(generator, Request(poisoned, 12)));
        var others = requests.Select(r => Task.Run(() => CollectAsync(generator, r))).ToArray();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => failing.WaitAsync(Patience));
        Assert.Equal("poisoned batch", error.Message);
        Assert.Equal(alone, await Task.WhenAll(others).WaitAsync(Patience));
        Assert.True(SpinWait.SpinUntil(() => generator.Running == 0, Patience));

        // The generator goes on serving.
        Assert.Equal(alone[0], await CollectAsync(generator, requests[0]));
    }

    [Fact]
    public async Task A_consumer_that_stops_reading_sits_out_without_holding_back_the_others()
    {
        using var model = Load();
        var requests = Prompts[..3].Select(p => Request(p, 20)).ToArray();
        var alone = await AloneAsync(model, requests);
        var log = new StepLog();
        using var generator = new BatchingGenerator(model, 3, null, null, log.Wrap(model), tokenBuffer: 2);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slowSeen = new List<int>();
        var slow = Task.Run(async () =>
        {
            await foreach (var token in generator.GenerateAsync(requests[0], null, CancellationToken.None))
            {
                slowSeen.Add(token);
                if (slowSeen.Count == 1)
                {
                    await release.Task;
                }
            }

            return slowSeen;
        });

        var fast = await Task.WhenAll(requests[1..].Select(r => Task.Run(() => CollectAsync(generator, r)))).WaitAsync(Patience);
        Assert.Equal(alone[1..], fast);
        Assert.False(slow.IsCompleted);
        Assert.Single(slowSeen);

        // The loop evaluated at most 1 (read) + 2 (buffered) tokens' worth for it: prompt + 2 decode steps.
        var slowSequence = log.Steps.First(s => s.Any(e => e.Tokens == requests[0].Prompt.Count)).First(e => e.Tokens == requests[0].Prompt.Count).Sequence;
        Assert.Equal(3, log.Steps.Count(s => s.Any(e => e.Sequence == slowSequence)));

        release.SetResult();
        Assert.Equal(alone[0], await slow.WaitAsync(Patience));
    }

    [Fact]
    public async Task Max_sequences_are_respected_and_further_requests_queue()
    {
        using var model = Load();
        var requests = Prompts[..3].Select(p => Request(p, 10)).ToArray();
        var alone = await AloneAsync(model, requests);
        var log = new StepLog();
        using var generator = new BatchingGenerator(model, 2, null, null, log.Wrap(model), 64);
        var stats = requests.Select(_ => new LocalGenerationStats()).ToArray();

        var results = await Task.WhenAll(requests.Select((r, i) => Task.Run(() => CollectAsync(generator, r, stats[i])))).WaitAsync(Patience);

        Assert.Equal(alone, results);
        Assert.Equal(2, generator.AllocatedSequences);
        Assert.All(log.Steps, s => Assert.True(s.Count <= 2, log.Describe()));

        // Each takes part in 10 passes (prompt + 9 decode steps); the queued one's prompt comes after one of the first two ended.
        var promptSteps = log.Steps.SelectMany((s, i) => s.Where(e => e.Tokens > 1).Select(_ => i)).ToList();
        Assert.Equal(3, promptSteps.Count);
        Assert.True(promptSteps[2] >= 10, log.Describe());
        Assert.All(stats, s => Assert.Equal(GenerationStopReason.MaxTokens, s.StopReason));
    }

    [Fact]
    public async Task A_cached_prefix_is_reused_and_only_the_new_tokens_are_evaluated()
    {
        using var model = Load();
        var log = new StepLog();
        using var generator = new BatchingGenerator(model, 1, null, null, log.Wrap(model), 64);
        var first = await CollectAsync(generator, Request(Prompts[0], 6));

        // The cache holds the prompt and the first 5 answer tokens (the 6th was never evaluated).
        int[] next = [.. Prompts[0], .. first[..3], first[3] == 7 ? 8 : 7];
        var stats = new LocalGenerationStats();
        var steps = log.Steps.Count;
        var second = await CollectAsync(generator, Request(next, 6), stats);

        Assert.Equal(Prompts[0].Length + 3, stats.ReusedPromptTokens);
        Assert.Equal(1, log.Steps[steps].Single().Tokens);
        Assert.Equal(1, generator.AllocatedSequences);
        using var fresh = new BatchingGenerator(model, 1);
        Assert.Equal(await CollectAsync(fresh, Request(next, 6)), second);
    }

    [Fact]
    public async Task Stop_tokens_max_tokens_and_a_full_context_end_a_generation_with_their_reason()
    {
        using var model = Load();
        using var generator = new BatchingGenerator(model, 2, contextSize: Prompts[0].Length + 3);
        var free = await CollectAsync(generator, Request(Prompts[0], 3));
        var stop = free[1];

        var stats = new LocalGenerationStats();
        var stopped = await CollectAsync(generator, Request(Prompts[0], 3) with { StopTokens = new HashSet<int> { stop } }, stats);
        Assert.Equal(free.TakeWhile(t => t != stop), stopped);
        Assert.Equal(GenerationStopReason.StopToken, stats.StopReason);

        stats = new LocalGenerationStats();
        Assert.Equal(4, (await CollectAsync(generator, Request(Prompts[0], 50), stats)).Count);
        Assert.Equal(GenerationStopReason.ContextFull, stats.StopReason);

        stats = new LocalGenerationStats();
        Assert.Empty(await CollectAsync(generator, Request(Prompts[0], 0), stats));
        Assert.Equal(GenerationStopReason.MaxTokens, stats.StopReason);

        Assert.Throws<ArgumentOutOfRangeException>(() => generator.GenerateAsync(Request([1, 320], 3), null, CancellationToken.None));
        Assert.Throws<ArgumentException>(() => generator.GenerateAsync(Request(new int[Prompts[0].Length + 4], 3), null, CancellationToken.None));
    }

    [Fact]
    public async Task Disposing_ends_running_and_queued_generations()
    {
        using var model = Load();
        var generator = new BatchingGenerator(model, 1);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var resume = new ManualResetEventSlim();
        var running = Task.Run(() => CollectAsync(generator, Request(Prompts[0], 200), onToken: _ =>
        {
            // Holds its sequence (the loop parks it once its buffer is full) until the generator is gone.
            started.TrySetResult();
            resume.Wait(Patience);
        }));
        await started.Task.WaitAsync(Patience);
        var queued = Task.Run(() => CollectAsync(generator, Request(Prompts[1], 5)));
        Assert.True(SpinWait.SpinUntil(() => generator.Running == 1 && !queued.IsCompleted, Patience));

        generator.Dispose();
        resume.Set();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => running.WaitAsync(Patience));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queued.WaitAsync(Patience));
        Assert.Throws<ObjectDisposedException>(() => generator.GenerateAsync(Request(Prompts[0], 1), null, CancellationToken.None));
    }

    private static LocalGenerationRequest Request(IReadOnlyList<int> prompt, int maxTokens) => new()
    {
        Prompt = prompt,
        MaxTokens = maxTokens,
        Sampling = SamplingOptions.Greedy,
        StopTokens = new HashSet<int>(),
    };

    /// <summary>Each request on a generator of its own, one after another.</summary>
    private static async Task<List<int>[]> AloneAsync(LocalModel model, IReadOnlyList<LocalGenerationRequest> requests)
    {
        var results = new List<int>[requests.Count];
        for (var i = 0; i < requests.Count; i++)
        {
            using var generator = new BatchingGenerator(model, 1);
            results[i] = await CollectAsync(generator, requests[i]);
        }

        return results;
    }

    private static async Task<List<int>> CollectAsync(BatchingGenerator generator, LocalGenerationRequest request, LocalGenerationStats? stats = null, Action<int>? onToken = null)
    {
        var tokens = new List<int>();
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (var token in generator.GenerateAsync(request, stats, timeout.Token))
        {
            tokens.Add(token);
            onToken?.Invoke(token);
        }

        return tokens;
    }

    /// <summary>One batch entry as the hook saw it.</summary>
    private sealed record EntryRecord(InferenceSequence Sequence, int Tokens, bool Poisoned);

    /// <summary>Records every pass the generator runs (its entries) and lets a test hold or fail one.</summary>
    private sealed class StepLog
    {
        private readonly List<List<EntryRecord>> _steps = [];

        public Action<List<EntryRecord>>? BeforeFirst { get; init; }

        public Action<List<EntryRecord>>? Before { get; set; }

        public int Poison { get; init; } = -1;

        public bool Held { get; set; }

        /// <summary>The successful passes (a failed one, and the retries of its entries one by one, are not counted).</summary>
        public List<List<EntryRecord>> Steps
        {
            get
            {
                lock (_steps)
                {
                    return [.. _steps];
                }
            }
        }

        public Func<IReadOnlyList<BatchEntry>, CancellationToken, float[][]> Wrap(LocalModel model) => (batch, cancellationToken) =>
        {
            var entries = batch.Select(e => new EntryRecord(e.Sequence, e.Tokens.Length, e.Tokens.Span.Contains(Poison))).ToList();
            bool first;
            lock (_steps)
            {
                first = _steps.Count == 0;
            }

            if (first)
            {
                BeforeFirst?.Invoke(entries);
            }

            Before?.Invoke(entries);
            var result = model.Evaluate(batch, cancellationToken);
            if (batch.Count > 1 || !entries[0].Poisoned)
            {
                lock (_steps)
                {
                    _steps.Add(entries);
                }
            }

            return result;
        };

        public string Describe() => string.Join(" | ", Steps.Select(s => string.Join(",", s.Select(e => e.Tokens))));
    }
}
