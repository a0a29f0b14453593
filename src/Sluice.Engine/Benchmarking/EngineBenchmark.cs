using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Sluice.Engine.Models;
using Sluice.Engine.Sampling;

namespace Sluice.Engine.Benchmarking;

/// <summary>Options of <see cref="EngineBenchmark.Run"/>.</summary>
public sealed record EngineBenchmarkOptions
{
    /// <summary>Prompt tokens evaluated in one batch (prompt processing, like <c>llama-bench -p</c>).</summary>
    public int PromptTokens { get; init; } = 128;

    /// <summary>Tokens generated one at a time after the prompt (like <c>llama-bench -n</c>, but after the prompt).</summary>
    public int GenerateTokens { get; init; } = 64;

    /// <summary>Measured repetitions (each on a fresh sequence).</summary>
    public int Repetitions { get; init; } = 3;

    /// <summary>Unmeasured runs first (page faults, JIT, buffer growth).</summary>
    public int Warmup { get; init; } = 1;

    /// <summary>Seed of the random prompt token ids.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>
    /// Simultaneous generations of the concurrent figure (<see cref="EngineBenchmark.RunAsync"/>): each repetition also
    /// starts this many streams at once, each with its own random prompt, and measures their aggregate generation speed.
    /// 1 measures one stream only.
    /// </summary>
    public int Parallel { get; init; } = 1;
}

/// <summary>
/// One generation for the concurrent figure: greedy tokens after <paramref name="prompt"/>, exactly
/// <paramref name="maxTokens"/> of them (no stop token), on whatever scheduler the caller measures.
/// </summary>
public delegate IAsyncEnumerable<int> BenchmarkStream(int[] prompt, int maxTokens, CancellationToken cancellationToken);

/// <summary>One measured repetition.</summary>
/// <param name="PromptTokensPerSecond">Prompt tokens / time of the prompt's forward pass (logits of the last token included).</param>
/// <param name="GenerateTokensPerSecond">Generated tokens / time of their forward passes and greedy sampling.</param>
/// <param name="TimeToFirstTokenMs">Prompt evaluation plus the first sample, in milliseconds.</param>
/// <param name="ParallelGenerateTokensPerSecond">
/// Aggregate generation speed of <see cref="EngineBenchmarkOptions.Parallel"/> simultaneous streams: tokens of all
/// streams while all of them decode / that time (0 when not measured).
/// </param>
/// <param name="GenerateTokensPerCpuSecond">Generated tokens / the process's CPU time while generating them (steadier than wall-clock time on a shared machine).</param>
/// <param name="ParallelGenerateTokensPerCpuSecond">The concurrent figure over the process's CPU time in the same window (0 when not measured).</param>
public readonly record struct EngineBenchmarkSample(
    double PromptTokensPerSecond,
    double GenerateTokensPerSecond,
    double TimeToFirstTokenMs,
    double ParallelGenerateTokensPerSecond = 0,
    double GenerateTokensPerCpuSecond = 0,
    double ParallelGenerateTokensPerCpuSecond = 0);

/// <summary>The result of <see cref="EngineBenchmark.Run"/>: every repetition and the best of each figure.</summary>
public sealed record EngineBenchmarkResult
{
    /// <summary>The measured repetitions in order.</summary>
    public required IReadOnlyList<EngineBenchmarkSample> Samples { get; init; }

    /// <summary>The options the run used.</summary>
    public required EngineBenchmarkOptions Options { get; init; }

    /// <summary>Threads of the model's forward passes.</summary>
    public required int Threads { get; init; }

    /// <summary>True when the weights were memory-mapped, false when read into memory (<see cref="LocalModelOptions.MemoryMap"/>).</summary>
    public bool MemoryMapped { get; init; } = true;

    /// <summary>The KV cache's element type (<see cref="LocalModelOptions.KvCache"/>).</summary>
    public KvCacheType KvCache { get; init; } = KvCacheType.F32;

    /// <summary>Best prompt-processing speed, tokens per second.</summary>
    public double PromptTokensPerSecond => Samples.Max(s => s.PromptTokensPerSecond);

    /// <summary>Best generation speed, tokens per second.</summary>
    public double GenerateTokensPerSecond => Samples.Max(s => s.GenerateTokensPerSecond);

    /// <summary>Best time to first token, milliseconds.</summary>
    public double TimeToFirstTokenMs => Samples.Min(s => s.TimeToFirstTokenMs);

    /// <summary>Best aggregate generation speed of <see cref="EngineBenchmarkOptions.Parallel"/> streams, tokens per second (0 when not measured).</summary>
    public double ParallelGenerateTokensPerSecond => Samples.Max(s => s.ParallelGenerateTokensPerSecond);

    /// <summary>
    /// <see cref="ParallelGenerateTokensPerSecond"/> / <see cref="GenerateTokensPerSecond"/>: what the other streams add
    /// (1 would mean they only take turns; <see cref="EngineBenchmarkOptions.Parallel"/> is the ideal). 0 when not measured.
    /// </summary>
    public double ParallelRatio => GenerateTokensPerSecond > 0 ? ParallelGenerateTokensPerSecond / GenerateTokensPerSecond : 0;

    /// <summary>
    /// The median over the repetitions of each one's concurrent / single ratio in CPU time: the steadiest form of the
    /// ratio on a shared machine, where wall-clock figures swing with the neighbours' load. 0 when not measured.
    /// </summary>
    public double ParallelCpuRatio
    {
        get
        {
            var ratios = Samples.Where(s => s.GenerateTokensPerCpuSecond > 0 && s.ParallelGenerateTokensPerCpuSecond > 0)
                .Select(s => s.ParallelGenerateTokensPerCpuSecond / s.GenerateTokensPerCpuSecond).Order().ToList();
            return ratios.Count == 0 ? 0 : ratios.Count % 2 == 1 ? ratios[ratios.Count / 2] : (ratios[(ratios.Count / 2) - 1] + ratios[ratios.Count / 2]) / 2;
        }
    }

    /// <summary>
    /// <c>{"pp_tok_s":…,"tg_tok_s":…,"ttft_ms":…,"pp_tokens":…,"tg_tokens":…,"threads":…,"repetitions":…,"runs":[…]}</c>
    /// (best of the repetitions first, then every run); with <see cref="EngineBenchmarkOptions.Parallel"/> N &gt; 1 also
    /// <c>"parallel": N, "tgN_tok_s": …, "tgN_ratio": …</c> (and <c>tgN_tok_s</c> in every run).
    /// </summary>
    public string ToJson(ModelInfo? model = null)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteNumber("pp_tok_s", Math.Round(PromptTokensPerSecond, 2));
            json.WriteNumber("tg_tok_s", Math.Round(GenerateTokensPerSecond, 2));
            json.WriteNumber("ttft_ms", Math.Round(TimeToFirstTokenMs, 2));
            var parallel = Options.Parallel > 1 ? $"tg{Options.Parallel}_tok_s" : null;
            if (parallel is not null)
            {
                json.WriteNumber("parallel", Options.Parallel);
                json.WriteNumber(parallel, Math.Round(ParallelGenerateTokensPerSecond, 2));
                json.WriteNumber($"tg{Options.Parallel}_ratio", Math.Round(ParallelRatio, 3));
                json.WriteNumber($"tg{Options.Parallel}_cpu_ratio", Math.Round(ParallelCpuRatio, 3));
            }

            json.WriteNumber("pp_tokens", Options.PromptTokens);
            json.WriteNumber("tg_tokens", Options.GenerateTokens);
            json.WriteNumber("threads", Threads);
            json.WriteBoolean("mmap", MemoryMapped);
            json.WriteString("kv_cache", KvCache == KvCacheType.F16 ? "f16" : "f32");
            json.WriteNumber("repetitions", Samples.Count);
            if (model is not null)
            {
                json.WriteString("model", Path.GetFileName(model.FilePath));
                json.WriteString("architecture", model.Architecture);
                json.WriteNumber("parameters", model.ParameterCount);
                json.WriteNumber("weight_bytes", model.WeightBytes);
            }

            json.WriteStartArray("runs");
            foreach (var s in Samples)
            {
                json.WriteStartObject();
                json.WriteNumber("pp_tok_s", Math.Round(s.PromptTokensPerSecond, 2));
                json.WriteNumber("tg_tok_s", Math.Round(s.GenerateTokensPerSecond, 2));
                json.WriteNumber("ttft_ms", Math.Round(s.TimeToFirstTokenMs, 2));
                json.WriteNumber("tg_tok_cpu_s", Math.Round(s.GenerateTokensPerCpuSecond, 2));
                if (parallel is not null)
                {
                    json.WriteNumber(parallel, Math.Round(s.ParallelGenerateTokensPerSecond, 2));
                    json.WriteNumber($"tg{Options.Parallel}_tok_cpu_s", Math.Round(s.ParallelGenerateTokensPerCpuSecond, 2));
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}

/// <summary>
/// A <c>llama-bench</c>-like measurement of a loaded model: a random prompt of <see cref="EngineBenchmarkOptions.PromptTokens"/>
/// tokens evaluated as one batch, then <see cref="EngineBenchmarkOptions.GenerateTokens"/> greedy tokens one forward pass
/// each, repeated on fresh sequences. Wall-clock time; on a shared machine run several repetitions.
/// </summary>
public static class EngineBenchmark
{
    /// <summary>Runs the benchmark (one stream); <paramref name="progress"/> gets one line per run.</summary>
    public static EngineBenchmarkResult Run(LocalModel model, EngineBenchmarkOptions? options = null, IProgress<string>? progress = null,
        CancellationToken cancellationToken = default)
    {
        options ??= new EngineBenchmarkOptions();
        if (options.Parallel > 1)
        {
            throw new ArgumentException("the concurrent figure needs a scheduler to measure: use RunAsync with a stream", nameof(options));
        }

        // Nothing in the single-stream path awaits: the task is complete when RunAsync returns.
        return RunAsync(model, options, null, progress, cancellationToken).GetAwaiter().GetResult();
    }

    /// <summary>
    /// Runs the benchmark; with <see cref="EngineBenchmarkOptions.Parallel"/> N &gt; 1 each repetition also starts N
    /// generations through <paramref name="stream"/> at once (the single-stream run and the concurrent one alternate, so
    /// a noisy neighbour perturbs both). <paramref name="progress"/> gets one line per run.
    /// </summary>
    public static async Task<EngineBenchmarkResult> RunAsync(LocalModel model, EngineBenchmarkOptions? options, BenchmarkStream? stream,
        IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new EngineBenchmarkOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PromptTokens, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.GenerateTokens, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Repetitions, 1, nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Parallel, 1, nameof(options));
        if (options.Parallel > 1 && (stream is null || options.GenerateTokens < 2))
        {
            throw new ArgumentException("the concurrent figure needs a stream and at least 2 generated tokens", nameof(options));
        }

        var prompt = RandomPrompt(model.Info, options.PromptTokens, options.Seed);
        var sequence = model.CreateSequence(options.PromptTokens + options.GenerateTokens + 1);
        var samples = new List<EngineBenchmarkSample>();
        for (var run = 0; run < options.Warmup + options.Repetitions; run++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            sequence.Truncate(0);
            var sample = Once(model, sequence, prompt, options.GenerateTokens, cancellationToken);
            if (options.Parallel > 1)
            {
                // Fresh prompts every run, so a scheduler that keeps cached prefixes cannot skip them.
                var (wall, cpu) = await ParallelOnceAsync(model.Info, stream!, options, options.Seed + 1 + (run * options.Parallel), cancellationToken).ConfigureAwait(false);
                sample = sample with { ParallelGenerateTokensPerSecond = wall, ParallelGenerateTokensPerCpuSecond = cpu };
            }

            var warm = run < options.Warmup;
            var concurrent = options.Parallel > 1
                ? $", tg ×{options.Parallel} streams {sample.ParallelGenerateTokensPerSecond:F1} tok/s ({sample.ParallelGenerateTokensPerSecond / sample.GenerateTokensPerSecond:F2}×; per CPU-second {sample.ParallelGenerateTokensPerCpuSecond / sample.GenerateTokensPerCpuSecond:F2}×)"
                : string.Empty;
            progress?.Report($"{(warm ? "warmup" : $"run {run - options.Warmup + 1}/{options.Repetitions}")}: pp {sample.PromptTokensPerSecond:F1} tok/s, tg {sample.GenerateTokensPerSecond:F1} tok/s, ttft {sample.TimeToFirstTokenMs:F0} ms{concurrent}");
            if (!warm)
            {
                samples.Add(sample);
            }
        }

        return new EngineBenchmarkResult { Samples = samples, Options = options, Threads = model.ThreadCount, MemoryMapped = !model.WeightsInMemory, KvCache = model.Options.KvCache };
    }

    /// <summary>Prompt token ids drawn from the vocabulary above the first 3 (specials in most vocabularies).</summary>
    public static int[] RandomPrompt(ModelInfo info, int length, int seed)
    {
        ArgumentNullException.ThrowIfNull(info);
        var rng = new Random(seed);
        var low = Math.Min(3, info.VocabularySize - 1);
        var prompt = new int[length];
        for (var i = 0; i < length; i++)
        {
            prompt[i] = rng.Next(low, info.VocabularySize);
        }

        return prompt;
    }

    /// <summary>
    /// <see cref="EngineBenchmarkOptions.Parallel"/> streams started together, each a first token then
    /// <see cref="EngineBenchmarkOptions.GenerateTokens"/> more. Counted: the tokens every stream received between the
    /// moment the last stream got its first token (all prompts done, all decoding) and the moment the first stream
    /// ended, over that time — so prompt processing and a ragged end do not dilute the figure.
    /// </summary>
    private static async Task<(double Wall, double Cpu)> ParallelOnceAsync(ModelInfo info, BenchmarkStream stream, EngineBenchmarkOptions options, int seed, CancellationToken cancellationToken)
    {
        var count = options.GenerateTokens + 1;
        var stamps = new long[options.Parallel][];
        var cpu = new TimeSpan[options.Parallel][];
        var tasks = new Task[options.Parallel];
        for (var i = 0; i < options.Parallel; i++)
        {
            var prompt = RandomPrompt(info, options.PromptTokens, seed + i);
            var mine = stamps[i] = new long[count];
            var mineCpu = cpu[i] = new TimeSpan[count];
            tasks[i] = Task.Run(async () =>
            {
                var n = 0;
                await foreach (var _ in stream(prompt, count, cancellationToken).ConfigureAwait(false))
                {
                    mineCpu[n] = Environment.CpuUsage.TotalTime;
                    mine[n++] = Stopwatch.GetTimestamp();
                }

                if (n != count)
                {
                    throw new InvalidOperationException($"a benchmark stream gave {n} tokens, not {count}");
                }
            }, cancellationToken);
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        var first = Enumerable.Range(0, options.Parallel).MaxBy(i => stamps[i][0]);
        var last = Enumerable.Range(0, options.Parallel).MinBy(i => stamps[i][^1]);
        var start = stamps[first][0];
        var end = stamps[last][^1];
        var tokens = stamps.Sum(s => s.Count(t => t > start && t <= end));
        var seconds = Stopwatch.GetElapsedTime(start, end).TotalSeconds;
        var cpuSeconds = (cpu[last][^1] - cpu[first][0]).TotalSeconds;
        return (seconds > 0 ? tokens / seconds : 0, cpuSeconds > 0 ? tokens / cpuSeconds : 0);
    }

    private static EngineBenchmarkSample Once(LocalModel model, InferenceSequence sequence, int[] prompt, int generate, CancellationToken cancellationToken)
    {
        var sampler = new TokenSampler(SamplingOptions.Greedy);
        var start = Stopwatch.GetTimestamp();
        // One logits buffer, as the generators use (GenerationSession, BatchingGenerator).
        var buffer = new float[model.Info.VocabularySize];
        var logits = model.Evaluate([new BatchEntry(sequence, prompt, LogitsRequest.Last, buffer)], cancellationToken)[0];
        var promptDone = Stopwatch.GetTimestamp();
        var token = sampler.Sample(logits, []);
        var first = Stopwatch.GetTimestamp();
        var firstCpu = Environment.CpuUsage.TotalTime;
        var one = new int[1];
        for (var i = 0; i < generate; i++)
        {
            one[0] = token;
            logits = model.Evaluate([new BatchEntry(sequence, one, LogitsRequest.Last, buffer)], cancellationToken)[0];
            token = sampler.Sample(logits, []);
        }

        var end = Stopwatch.GetTimestamp();
        var cpu = (Environment.CpuUsage.TotalTime - firstCpu).TotalSeconds;
        var pp = Stopwatch.GetElapsedTime(start, promptDone).TotalSeconds;
        var tg = Stopwatch.GetElapsedTime(first, end).TotalSeconds;
        return new EngineBenchmarkSample(
            prompt.Length / pp,
            generate == 0 ? 0 : generate / tg,
            Stopwatch.GetElapsedTime(start, first).TotalMilliseconds,
            GenerateTokensPerCpuSecond: generate == 0 || cpu <= 0 ? 0 : generate / cpu);
    }
}
