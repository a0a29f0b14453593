using System.Runtime.InteropServices;
using Sluice.Engine.Gguf;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;

namespace Sluice.Engine.Tests.Models;

public sealed class LocalModelTests(ModelFixture models) : IClassFixture<ModelFixture>
{
    private static readonly int[] Prompt = [1, 40, 290, 7, 99, 260, 3, 17, 42, 200, 201, 5];

    private static LocalModel Load(string path, int threads = 1, int context = 128, KvCacheType cache = KvCacheType.F32) =>
        LocalModel.Load(path, new LocalModelOptions { ThreadCount = threads, ContextSize = context, PrefetchWeights = false, KvCache = cache });

    [Fact]
    public void Info_comes_from_the_metadata_and_tensors()
    {
        using var model = Load(models.Qwen3K);
        var info = model.Info;
        Assert.Equal("qwen3", info.Architecture);
        Assert.Equal(256, info.EmbeddingLength);
        Assert.Equal(2, info.BlockCount);
        Assert.Equal(4, info.HeadCount);
        Assert.Equal(2, info.KvHeadCount);
        Assert.Equal(128, info.HeadDimension);
        Assert.Equal(512, info.QueryLength);
        Assert.Equal(RopeStyle.Neox, info.RopeStyle);
        Assert.Equal(320, info.VocabularySize);
        Assert.True(info.TiedOutput);
        Assert.Equal(1, info.BosTokenId);
        Assert.Equal(2, info.EosTokenId);
        Assert.Equal(GgmlType.Q4_K, info.TensorTypes.Keys.First(t => t != GgmlType.F32));
        Assert.Equal(new FileInfo(models.Qwen3K).Length, info.FileSize);

        using var llama = Load(models.LlamaQ8);
        Assert.Equal(RopeStyle.Normal, llama.Info.RopeStyle);
        Assert.False(llama.Info.TiedOutput);
        Assert.Equal(64, llama.Info.HeadDimension);
    }

    [Fact]
    public void Kv_cache_is_sized_from_the_context_and_reported()
    {
        using var model = Load(models.LlamaQ8, context: 100);
        var sequence = model.CreateSequence();
        Assert.Equal(100, sequence.ContextSize);

        // 2 (K and V) × 2 layers × 100 positions × (2 KV heads × 64) × 4 bytes.
        Assert.Equal(2L * 2 * 100 * 128 * 4, sequence.KvCacheBytes);
        Assert.Equal(sequence.KvCacheBytes, model.KvCacheBytes(100));
        Assert.Equal(40, model.CreateSequence(40).ContextSize);
    }

    [Fact]
    public void A_prompt_batch_gives_the_same_logits_as_token_by_token_decoding()
    {
        using var model = Load(models.LlamaQ8);
        var batched = model.CreateSequence();
        var all = model.Evaluate([new BatchEntry(batched, Prompt, LogitsRequest.All)])[0];
        var single = model.CreateSequence();
        var vocab = model.Info.VocabularySize;
        for (var i = 0; i < Prompt.Length; i++)
        {
            var row = model.Evaluate(single, new[] { Prompt[i] });
            Assert.Equal(all.AsSpan(i * vocab, vocab).ToArray(), row);
        }

        Assert.Equal(Prompt.Length, batched.Length);
        Assert.Equal(Prompt.Length, single.Length);
    }

    [Theory]
    [InlineData(nameof(ModelFixture.LlamaQ8))]
    [InlineData(nameof(ModelFixture.Qwen3K))]
    [InlineData(nameof(ModelFixture.Qwen2F16))]
    public void Sequences_batched_together_get_the_logits_they_get_alone(string which)
    {
        var path = (string)typeof(ModelFixture).GetProperty(which)!.GetValue(models)!;
        using var model = Load(path, threads: 3);
        var a = model.CreateSequence();
        var b = model.CreateSequence();
        var c = model.CreateSequence();
        model.Evaluate(c, new[] { 9, 8, 7 });

        // Different lengths and positions in one pass: a prompt for a, another for b, one decode step for c.
        var together = model.Evaluate([
            new BatchEntry(a, Prompt, LogitsRequest.Last),
            new BatchEntry(b, Prompt[..5], LogitsRequest.All),
            new BatchEntry(c, new[] { 6 }, LogitsRequest.Last),
        ]);

        using var reference = Load(path, threads: 1);
        var ra = reference.CreateSequence();
        var rb = reference.CreateSequence();
        var rc = reference.CreateSequence();
        reference.Evaluate(rc, new[] { 9, 8, 7 });
        Assert.Equal(reference.Evaluate(ra, Prompt), together[0]);
        Assert.Equal(reference.Evaluate([new BatchEntry(rb, Prompt[..5], LogitsRequest.All)])[0], together[1]);
        Assert.Equal(reference.Evaluate(rc, new[] { 6 }), together[2]);
        Assert.Equal(5 * model.Info.VocabularySize, together[1].Length);
        Assert.Equal((Prompt.Length, 5, 4), (a.Length, b.Length, c.Length));
    }

    [Fact]
    public void Logits_go_into_a_given_buffer_of_the_right_length_and_a_wrong_length_gets_a_new_array()
    {
        using var model = Load(models.LlamaQ8);
        var vocab = model.Info.VocabularySize;
        var expected = model.Evaluate(model.CreateSequence(), Prompt);

        var buffer = new float[vocab];
        var a = model.CreateSequence();
        var first = model.Evaluate(a, Prompt, buffer);
        Assert.Same(buffer, first);
        Assert.Equal(expected, first);

        // The next pass overwrites the same buffer with the next step's logits.
        var next = model.Evaluate(a, new[] { 7 }, buffer);
        Assert.Same(buffer, next);
        Assert.Equal(model.Evaluate(model.CreateSequence(), (int[])[.. Prompt, 7]), next);

        // A buffer that does not fit (or several rows asked for) is left alone.
        var small = new float[vocab - 1];
        var other = model.Evaluate([new BatchEntry(model.CreateSequence(), Prompt, LogitsRequest.All, buffer)])[0];
        Assert.NotSame(buffer, other);
        Assert.Equal(Prompt.Length * vocab, other.Length);
        Assert.NotSame(small, model.Evaluate(model.CreateSequence(), Prompt, small));
        Assert.All(small, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Long_prompts_are_evaluated_in_chunks_with_the_same_result()
    {
        using var whole = Load(models.LlamaQ8);
        using var chunked = LocalModel.Load(models.LlamaQ8, new LocalModelOptions { ThreadCount = 1, ContextSize = 128, PrefetchWeights = false, MaxBatchTokens = 5 });
        var a = whole.CreateSequence();
        var b = chunked.CreateSequence();
        Assert.Equal(whole.Evaluate(a, Prompt), chunked.Evaluate(b, Prompt));
        Assert.Equal(Prompt.Length, b.Length);
    }

    [Fact]
    public void Truncating_a_sequence_lets_it_be_reused()
    {
        using var model = Load(models.Qwen3K);
        var sequence = model.CreateSequence();
        var first = model.Evaluate(sequence, Prompt);
        model.Evaluate(sequence, new[] { 50, 51 });
        sequence.Truncate(Prompt.Length - 1);
        Assert.Equal(first, model.Evaluate(sequence, new[] { Prompt[^1] }));
        Assert.Throws<ArgumentOutOfRangeException>(() => sequence.Truncate(sequence.Length + 1));
    }

    [Fact]
    public void Bad_batches_are_refused_before_anything_changes()
    {
        using var model = Load(models.LlamaQ8, context: 8);
        var sequence = model.CreateSequence();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Evaluate(sequence, new[] { 1, 320 }));
        Assert.Contains("do not fit", Assert.Throws<InvalidOperationException>(() => model.Evaluate(sequence, new int[9])).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => model.Evaluate([new BatchEntry(sequence, new[] { 1 }), new BatchEntry(sequence, new[] { 2 })]));
        using var other = Load(models.LlamaQ8);
        Assert.Throws<ArgumentException>(() => other.Evaluate(sequence, new[] { 1 }));
        Assert.Equal(0, sequence.Length);
    }

    [Fact]
    public void Cancellation_stops_a_pass_and_leaves_the_sequence_unchanged()
    {
        using var model = Load(models.LlamaQ8);
        var sequence = model.CreateSequence();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => model.Evaluate(sequence, Prompt, cts.Token));
        Assert.Equal(0, sequence.Length);
    }

    /// <summary>
    /// The blocked attention (a KV head's query heads together over blocks of positions, 4 scores at a time, vector
    /// exponentials, weighted sums in registers for heads of 64 and 128) gives the bits of the one-position-at-a-time
    /// definition, for every position count from 1 to 106 (several blocks of positions, blocks of 4 and of 8 and their
    /// tails). F32 weights: their activations are not rounded, so any difference in attention reaches the logits. With an
    /// f16 cache too (widened once per KV head, then the same loops), with 2 threads so items split across them.
    /// </summary>
    [Theory]
    [InlineData("llama", 64, KvCacheType.F32)]
    [InlineData("qwen3", 128, KvCacheType.F32)]
    [InlineData("llama", 48, KvCacheType.F32)]
    [InlineData("llama", 64, KvCacheType.F16)]
    [InlineData("qwen3", 128, KvCacheType.F16)]
    [InlineData("llama", 48, KvCacheType.F16)]
    public void Blocked_attention_gives_the_bits_of_the_reference_loops(string architecture, int headDimension, KvCacheType cache)
    {
        var path = models.Write($"attention-{architecture}-{headDimension}", new SyntheticModelSpec
        {
            Architecture = architecture, WeightType = GgmlType.F32, HeadDimension = headDimension, Seed = 21,
        });
        using var model = Load(path, threads: cache == KvCacheType.F16 ? 2 : 1, cache: cache);
        var prompt = Enumerable.Range(0, 100).Select(i => (Prompt[i % Prompt.Length] + i) % 300).ToArray();
        float[][] Run()
        {
            var sequence = model.CreateSequence();
            var logits = new List<float[]> { model.Evaluate([new BatchEntry(sequence, prompt, LogitsRequest.All)])[0] };
            for (var i = 0; i < 6; i++)
            {
                logits.Add(model.Evaluate(sequence, new[] { 5 + i }));
            }

            return [.. logits];
        }

        var saved = ForwardPass.UseReferenceAttention;
        try
        {
            ForwardPass.UseReferenceAttention = false;
            var blocked = Run();
            ForwardPass.UseReferenceAttention = true;
            var reference = Run();
            Assert.Equal(reference.Length, blocked.Length);
            for (var i = 0; i < reference.Length; i++)
            {
                Assert.True(MemoryMarshal.AsBytes(reference[i].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(blocked[i].AsSpan())), $"logits of pass {i} differ");
            }
        }
        finally
        {
            ForwardPass.UseReferenceAttention = saved;
        }
    }

    /// <summary>
    /// An f16 cache: half the bytes (reported at load), logits within f16's rounding of the f32 cache's over a prompt
    /// and generated tokens (keys and values are rounded once, to 11 significant bits), the same greedy tokens, and a
    /// batch of several sequences giving each the logits it gets alone.
    /// </summary>
    [Theory]
    [InlineData(nameof(ModelFixture.LlamaQ8))]
    [InlineData(nameof(ModelFixture.Qwen3K))]
    public void An_f16_cache_takes_half_the_bytes_and_stays_within_its_rounding_of_the_f32_cache(string which)
    {
        var path = (string)typeof(ModelFixture).GetProperty(which)!.GetValue(models)!;
        using var exact = Load(path);
        var reports = new List<ModelLoadProgress>();
        using var half = LocalModel.Load(path, new LocalModelOptions { ThreadCount = 2, ContextSize = 128, PrefetchWeights = false, KvCache = KvCacheType.F16 }, new SyncProgress(reports));
        Assert.Equal(exact.KvCacheBytes(128) / 2, half.KvCacheBytes(128));
        Assert.Equal(half.KvCacheBytes(128), half.CreateSequence().KvCacheBytes);
        Assert.Equal(KvCacheType.F16, half.CreateSequence().CacheType);
        Assert.Contains($"f16 KV cache {half.KvCacheBytes(128) >> 20} MiB per 128-position sequence", reports[^1].Message, StringComparison.Ordinal);

        var a = exact.CreateSequence();
        var b = half.CreateSequence();
        var la = exact.Evaluate([new BatchEntry(a, Prompt, LogitsRequest.All)])[0];
        var lb = half.Evaluate([new BatchEntry(b, Prompt, LogitsRequest.All)])[0];
        var vocab = exact.Info.VocabularySize;
        var worst = 0.0;
        var changed = false;
        for (var step = 0; step < 12; step++)
        {
            var spread = la.Max() - la.Min();
            for (var i = 0; i < la.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(la[i] - lb[i]) / spread);
                changed |= la[i] != lb[i];
            }

            var greedy = new TokenSampler(SamplingOptions.Greedy);
            var next = greedy.Sample(la.AsSpan(la.Length - vocab), []);
            Assert.Equal(next, greedy.Sample(lb.AsSpan(lb.Length - vocab), []));
            la = exact.Evaluate(a, new[] { next });
            lb = half.Evaluate(b, new[] { next });
        }

        Assert.True(changed, "the f16 cache changed no logit: is it used?");
        Assert.True(worst < 0.05, $"logits moved by {worst:P3} of their spread");

        // Batched with another sequence, each gets what it gets alone.
        var c = half.CreateSequence();
        var d = half.CreateSequence();
        var alone = half.Evaluate([new BatchEntry(half.CreateSequence(), Prompt)])[0];
        var together = half.Evaluate([new BatchEntry(c, Prompt), new BatchEntry(d, Prompt[..5])]);
        Assert.Equal(alone, together[0]);
    }

    [Theory]
    [InlineData(nameof(ModelFixture.LlamaQ8))]
    [InlineData(nameof(ModelFixture.Qwen3K))]
    [InlineData(nameof(ModelFixture.Qwen2F16))]
    public void Weights_read_into_memory_give_the_logits_of_mapped_weights_and_say_so(string which)
    {
        var path = (string)typeof(ModelFixture).GetProperty(which)!.GetValue(models)!;
        using var mapped = Load(path);
        var reports = new List<ModelLoadProgress>();
        using var inMemory = LocalModel.Load(path, new LocalModelOptions { ThreadCount = 1, ContextSize = 128, MemoryMap = false }, new SyncProgress(reports));
        Assert.False(mapped.WeightsInMemory);
        Assert.True(inMemory.WeightsInMemory);

        // Read with progress (the whole file, in order), no page-cache prefetch, and the load line names the storage.
        var reading = reports.Where(r => r.Stage == ModelLoadStage.Reading).ToList();
        Assert.NotEmpty(reading);
        Assert.Contains($"read {new FileInfo(path).Length >> 20} of", reading[^1].Message, StringComparison.Ordinal);
        Assert.DoesNotContain(reports, r => r.Stage == ModelLoadStage.Prefetching);
        Assert.Contains("weights in memory", reports[^1].Message, StringComparison.Ordinal);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.Fraction <= p.Second.Fraction));

        var a = mapped.Evaluate([new BatchEntry(mapped.CreateSequence(), Prompt, LogitsRequest.All)])[0];
        var b = inMemory.Evaluate([new BatchEntry(inMemory.CreateSequence(), Prompt, LogitsRequest.All)])[0];
        Assert.Equal(a, b);
    }

    [Fact]
    public void Loading_reports_progress_and_prefetches()
    {
        var reports = new List<ModelLoadProgress>();
        using var model = LocalModel.Load(models.LlamaQ8, new LocalModelOptions { ThreadCount = 1 }, new SyncProgress(reports));
        Assert.Equal(ModelLoadStage.Opening, reports[0].Stage);
        Assert.Contains(reports, r => r.Stage == ModelLoadStage.Prefetching);
        Assert.Equal(ModelLoadStage.Ready, reports[^1].Stage);
        Assert.Equal(1.0, reports[^1].Fraction);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.First.Fraction <= p.Second.Fraction));
        Assert.Equal(Math.Min(2048, 4096), model.DefaultContextSize);
    }

    [Fact]
    public void Unsupported_architectures_are_refused_naming_the_supported_ones()
    {
        var path = Path.Combine(models.Directory, "gemma.gguf");
        var writer = new GgufWriter();
        writer.AddString("general.architecture", "gemma3");
        writer.WriteTo(path);
        var ex = Assert.Throws<ModelLoadException>(() => LocalModel.Load(path));
        Assert.Equal($"{path}: architecture 'gemma3' is not supported; supported architectures: llama, qwen2, qwen3", ex.Message);
    }

    [Fact]
    public void Missing_keys_tensors_and_wrong_shapes_are_named()
    {
        // Drop the block count key.
        var writer = SyntheticModel.CreateWriter(new SyntheticModelSpec());
        var noKey = Rewrite(writer, "no-key", dropKey: "llama.block_count");
        Assert.Contains("metadata key 'llama.block_count' is missing", Assert.Throws<GgufFormatException>(() => LocalModel.Load(noKey)).Message, StringComparison.Ordinal);

        var noTensor = Rewrite(SyntheticModel.CreateWriter(new SyntheticModelSpec()), "no-tensor", dropTensor: "blk.1.ffn_up.weight");
        Assert.Contains("tensor 'blk.1.ffn_up.weight' is missing", Assert.Throws<ModelLoadException>(() => LocalModel.Load(noTensor)).Message, StringComparison.Ordinal);

        var patched = Rewrite(SyntheticModel.CreateWriter(new SyntheticModelSpec { FeedForwardLength = 512 }), "ff-key", overrideFeedForward: 640);
        Assert.Contains("tensor 'blk.0.ffn_gate.weight' has shape [256, 512], expected [256, 640]", Assert.Throws<ModelLoadException>(() => LocalModel.Load(patched)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Generation_is_greedy_and_deterministic_and_stops_at_max_tokens()
    {
        using var model = Load(models.Qwen3K);
        var session = model.CreateSession();
        var tokens = session.Generate(Prompt, new GenerationOptions { MaxTokens = 10, StopTokens = [] }).ToList();
        Assert.Equal(10, tokens.Count);
        Assert.Equal(GenerationStopReason.MaxTokens, session.StopReason);
        Assert.Equal(Prompt.Length + 10, session.History.Count);
        Assert.Equal(Prompt.Length + 10, session.Sequence.Length);

        // Greedy equals the argmax of the logits, step by step.
        var sequence = model.CreateSequence();
        var logits = model.Evaluate(sequence, Prompt);
        foreach (var token in tokens)
        {
            Assert.Equal(Array.IndexOf(logits, logits.Max()), token);
            logits = model.Evaluate(sequence, new[] { token });
        }

        // Seeded sampling repeats itself.
        var sampled = new SamplingOptions { Temperature = 1.2f, Seed = 99 };
        var one = model.CreateSession().Generate(Prompt, new GenerationOptions { MaxTokens = 12, Sampling = sampled, StopTokens = [] }).ToList();
        var two = model.CreateSession().Generate(Prompt, new GenerationOptions { MaxTokens = 12, Sampling = sampled, StopTokens = [] }).ToList();
        Assert.Equal(one, two);
    }

    [Fact]
    public void Generation_stops_at_a_stop_token_without_yielding_it()
    {
        using var model = Load(models.LlamaQ8);
        var free = model.CreateSession().Generate(Prompt, new GenerationOptions { MaxTokens = 8, StopTokens = [] }).ToList();
        var stop = free[3];
        var session = model.CreateSession();
        var tokens = session.Generate(Prompt, new GenerationOptions { MaxTokens = 8, StopTokens = [stop] }).ToList();
        Assert.Equal(free.TakeWhile(t => t != stop), tokens);
        Assert.Equal(GenerationStopReason.StopToken, session.StopReason);
    }

    [Fact]
    public void Generation_stops_when_the_context_is_full()
    {
        using var model = Load(models.LlamaQ8, context: Prompt.Length + 3);
        var session = model.CreateSession();
        var tokens = session.Generate(Prompt, new GenerationOptions { MaxTokens = 50, StopTokens = [] }).ToList();
        Assert.Equal(4, tokens.Count);
        Assert.Equal(GenerationStopReason.ContextFull, session.StopReason);
        Assert.Equal(Prompt.Length + 3, session.Sequence.Length);
    }

    [Fact]
    public void Cancellation_stops_generation_at_once()
    {
        using var model = Load(models.LlamaQ8);
        var session = model.CreateSession();
        using var cts = new CancellationTokenSource();
        var seen = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var token in session.Generate(Prompt, new GenerationOptions { MaxTokens = 100, StopTokens = [] }, cts.Token))
            {
                seen.Add(token);
                if (seen.Count == 3)
                {
                    cts.Cancel();
                }
            }
        });
        Assert.Equal(3, seen.Count);
        Assert.Equal(GenerationStopReason.Cancelled, session.StopReason);

        // The cache holds exactly the history, so the session can go on.
        Assert.Equal(session.History.Count, session.Sequence.Length);
        Assert.Equal(Prompt.Length + 2, session.History.Count);
    }

    [Fact]
    public async Task Async_generation_yields_the_same_tokens_and_observes_cancellation()
    {
        using var model = Load(models.Qwen2F16);
        var expected = model.CreateSession().Generate(Prompt, new GenerationOptions { MaxTokens = 6, StopTokens = [] }).ToList();
        var session = model.CreateSession();
        var tokens = new List<int>();
        await foreach (var token in session.GenerateAsync(Prompt, new GenerationOptions { MaxTokens = 6, StopTokens = [] }))
        {
            tokens.Add(token);
        }

        Assert.Equal(expected, tokens);
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in model.CreateSession().GenerateAsync(Prompt, cancellationToken: cts.Token))
            {
            }
        });
    }

    [Fact]
    public void A_second_generation_continues_the_history()
    {
        using var model = Load(models.LlamaQ8);
        var options = new GenerationOptions { MaxTokens = 4, StopTokens = [] };
        var session = model.CreateSession();
        var first = session.Generate(Prompt, options).ToList();
        var second = session.Generate([77, 78], options).ToList();

        var oneShot = model.CreateSession();
        var combined = Prompt.Concat(first).Concat([77, 78]).ToArray();
        Assert.Equal(second, oneShot.Generate(combined, options).ToList());

        // An empty prompt continues straight from the history.
        var more = session.Generate([], options).ToList();
        Assert.Equal(4, more.Count);
        session.Reset();
        Assert.Empty(session.History);
        Assert.Equal(0, session.Sequence.Length);
    }

    [Fact]
    public void Thread_count_does_not_change_results()
    {
        using var one = Load(models.Qwen2F16, threads: 1);
        using var four = Load(models.Qwen2F16, threads: 4);
        Assert.Equal(one.Evaluate(one.CreateSequence(), Prompt), four.Evaluate(four.CreateSequence(), Prompt));
    }

    private string Rewrite(GgufWriter source, string name, string? dropKey = null, string? dropTensor = null, int? overrideFeedForward = null)
    {
        // Round-trip the synthetic model through a file, then copy it with one change.
        var original = Path.Combine(models.Directory, name + "-src.gguf");
        source.WriteTo(original);
        var target = Path.Combine(models.Directory, name + ".gguf");
        using (var file = GgufFile.Open(original))
        {
            var writer = new GgufWriter();
            foreach (var key in file.MetadataKeys)
            {
                if (key == dropKey)
                {
                    continue;
                }

                writer.Add(key, key == "llama.feed_forward_length" && overrideFeedForward is { } ff ? GgufValue.FromUInt32((uint)ff) : file.GetValue(key));
            }

            foreach (var tensor in file.Tensors)
            {
                if (tensor.Name != dropTensor)
                {
                    writer.AddTensor(tensor.Name, tensor.Type, tensor.Dimensions.ToArray(), file.GetTensorData(tensor).ToArray());
                }
            }

            writer.WriteTo(target);
        }

        return target;
    }

    private sealed class SyncProgress(List<ModelLoadProgress> reports) : IProgress<ModelLoadProgress>
    {
        public void Report(ModelLoadProgress value) => reports.Add(value);
    }
}
