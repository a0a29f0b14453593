using Sluice.Engine.Gguf;
using Sluice.Engine.Kernels;
using Sluice.Engine.Models;

namespace Sluice.Engine;

/// <summary>Options for <see cref="LocalModel.Load"/>.</summary>
public sealed record LocalModelOptions
{
    /// <summary>Threads for the forward pass (the caller's included); null uses every core.</summary>
    public int? ThreadCount { get; init; }

    /// <summary>
    /// Default context size (positions per sequence) of sequences and sessions; null uses the model's training
    /// context capped at 4096. Each position costs 2 × layers × KV width × 4 bytes of cache.
    /// </summary>
    public int? ContextSize { get; init; }

    /// <summary>Read every page of the weights at load (with progress), so the first token is not slowed by page faults.</summary>
    public bool PrefetchWeights { get; init; } = true;

    /// <summary>
    /// True (the default) maps the file: no copy, pages shared with other processes and kept by the system's page
    /// cache. False reads the whole file into process memory at load (llama.cpp's <c>--no-mmap</c>): its size in
    /// resident memory, but weights that stay at memory speed where reads through a mapping do not (docs/engine.md,
    /// "Memory-mapped or in memory").
    /// </summary>
    public bool MemoryMap { get; init; } = true;

    /// <summary>
    /// Most tokens one forward pass takes when a single sequence's prompt is evaluated (longer prompts go in chunks of
    /// this size); bounds the work buffers, which grow with the batch (about 4 × (3·d + 2·ff) bytes per token).
    /// </summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>
    /// Element type of each sequence's key/value cache. <see cref="KvCacheType.F32"/> (the default) keeps attention
    /// exact against llama.cpp run with an f32 cache; <see cref="KvCacheType.F16"/> halves the cache (twice the context or
    /// streams in the same memory, and half the bytes attention streams per token), as llama.cpp's default does.
    /// </summary>
    public KvCacheType KvCache { get; init; } = KvCacheType.F32;
}

/// <summary>Element type of a sequence's key/value cache (<see cref="LocalModelOptions.KvCache"/>).</summary>
public enum KvCacheType
{
    /// <summary>32-bit floats: keys and values exactly as computed.</summary>
    F32,

    /// <summary>
    /// 16-bit floats (IEEE half, rounded to nearest even; values beyond ±65,504 stored as ±65,504): half the memory,
    /// arithmetic still in f32.
    /// </summary>
    F16,
}

/// <summary>Stages of <see cref="LocalModel.Load"/>.</summary>
public enum ModelLoadStage
{
    /// <summary>Opening and mapping the file, parsing its header and metadata.</summary>
    Opening,

    /// <summary>Checking the architecture, hyper-parameters and tensor shapes.</summary>
    Validating,

    /// <summary>Reading the weights into the page cache.</summary>
    Prefetching,

    /// <summary>The model is ready.</summary>
    Ready,

    /// <summary>Reading the whole file into process memory (<see cref="LocalModelOptions.MemoryMap"/> false).</summary>
    Reading,
}

/// <summary>Progress of <see cref="LocalModel.Load"/>.</summary>
/// <param name="Stage">Current stage.</param>
/// <param name="Fraction">Overall progress, 0 to 1.</param>
/// <param name="Message">What is happening, for people.</param>
public readonly record struct ModelLoadProgress(ModelLoadStage Stage, double Fraction, string Message);

/// <summary>
/// A GGUF model (llama, qwen2, qwen3) loaded for inference in pure C#: weights memory-mapped and never copied, or
/// read once into process memory when <see cref="LocalModelOptions.MemoryMap"/> is false.
/// Evaluate token batches for one or more <see cref="InferenceSequence"/>s with <see cref="Evaluate(IReadOnlyList{BatchEntry}, CancellationToken)"/>, or use a
/// <see cref="GenerationSession"/> for prompt-then-sample generation. Forward passes are serialized: calls from
/// several threads take turns (batch sequences into one <see cref="Evaluate(IReadOnlyList{BatchEntry}, CancellationToken)"/> call to share a pass over the weights).
/// </summary>
public sealed class LocalModel : IDisposable
{
    private readonly GgufFile _file;
    private readonly WorkerPool _pool;
    private readonly ForwardPass _forward;
    private readonly Lock _gate = new();
    private bool _disposed;

    private LocalModel(GgufFile file, TransformerWeights weights, LocalModelOptions options, int threads, int contextSize)
    {
        _file = file;
        Info = weights.Info;
        Options = options;
        ThreadCount = threads;
        DefaultContextSize = contextSize;
        _pool = new WorkerPool(threads);
        _forward = new ForwardPass(weights, _pool);
    }

    /// <summary>The model's hyper-parameters and file details.</summary>
    public ModelInfo Info { get; }

    /// <summary>The options the model was loaded with.</summary>
    public LocalModelOptions Options { get; }

    /// <summary>Threads used by forward passes.</summary>
    public int ThreadCount { get; }

    /// <summary>True when the weights were read into process memory, false when they are memory-mapped.</summary>
    public bool WeightsInMemory => _file.IsInMemory;

    /// <summary>Context size of new sequences when none is given.</summary>
    public int DefaultContextSize { get; }

    /// <summary>Bytes of key/value cache one sequence of <paramref name="contextSize"/> positions takes.</summary>
    public long KvCacheBytes(int contextSize) => 2L * Info.BlockCount * contextSize * Info.KvLength * InferenceSequence.ElementSize(Options.KvCache);

    /// <summary>
    /// Opens <paramref name="path"/>, checks it is a supported model and maps its weights.
    /// </summary>
    /// <exception cref="GgufFormatException">The file is not a valid GGUF file.</exception>
    /// <exception cref="ModelLoadException">The file is GGUF but not a model this engine runs (the message says why).</exception>
    public static LocalModel Load(string path, LocalModelOptions? options = null, IProgress<ModelLoadProgress>? progress = null)
    {
        options ??= new LocalModelOptions();
        var threads = options.ThreadCount ?? Environment.ProcessorCount;
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1, nameof(options));
        progress?.Report(new ModelLoadProgress(ModelLoadStage.Opening, 0, $"opening {path}"));
        var file = options.MemoryMap
            ? GgufFile.Open(path)
            : GgufFile.OpenInMemory(path, progress is null ? null : ReadProgress(progress));
        try
        {
            progress?.Report(new ModelLoadProgress(ModelLoadStage.Validating, file.IsInMemory ? 0.95 : 0.02, "checking architecture and tensors"));
            var weights = TransformerWeights.Load(file);
            var contextSize = options.ContextSize ?? Math.Min(weights.Info.TrainingContextLength, 4096);
            if (contextSize < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(options), contextSize, "the context size must be positive");
            }

            if (options.PrefetchWeights && !file.IsInMemory)
            {
                Prefetch(file, progress);
            }

            var model = new LocalModel(file, weights, options, threads, contextSize);
            var storage = file.IsInMemory ? $"weights in memory ({file.FileLength >> 20} MiB)" : "weights memory-mapped";
            storage += $", {options.KvCache.ToString().ToLowerInvariant()} KV cache {model.KvCacheBytes(contextSize) >> 20} MiB per {contextSize}-position sequence";
            progress?.Report(new ModelLoadProgress(ModelLoadStage.Ready, 1, $"{weights.Info.Architecture} ready: {weights.Info.BlockCount} layers, {weights.Info.ParameterCount:N0} parameters, {storage}, {threads} threads"));
            return model;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>A new empty sequence with its own key/value cache.</summary>
    public InferenceSequence CreateSequence(int? contextSize = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var size = contextSize ?? DefaultContextSize;
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1, nameof(contextSize));
        return new InferenceSequence(this, size, Info.BlockCount, Info.KvLength, Info.KvHeadCount, Options.KvCache);
    }

    /// <summary>A generation session over a new sequence.</summary>
    public GenerationSession CreateSession(int? contextSize = null) => new(this, CreateSequence(contextSize));

    /// <summary>
    /// Evaluates a batch: each entry's tokens are appended to its sequence (one pass over the weights for the whole
    /// batch). Returns, per entry, the requested logits as rows of <see cref="ModelInfo.VocabularySize"/> values.
    /// Cancellation is checked between layers; a cancelled call leaves the sequences as they were.
    /// </summary>
    public float[][] Evaluate(IReadOnlyList<BatchEntry> batch, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.Count == 0)
        {
            return [];
        }

        foreach (var entry in batch)
        {
            if (!ReferenceEquals(entry.Sequence?.Owner, this))
            {
                throw new ArgumentException("every sequence must come from this model's CreateSequence", nameof(batch));
            }
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            cancellationToken.ThrowIfCancellationRequested();
            return _forward.Run(batch, cancellationToken);
        }
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> for one sequence (in passes of at most <see cref="LocalModelOptions.MaxBatchTokens"/>)
    /// and returns the logits of its last token. A cancelled call keeps the chunks already evaluated.
    /// </summary>
    public float[] Evaluate(InferenceSequence sequence, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default) =>
        Evaluate(sequence, tokens, null, cancellationToken);

    /// <summary>
    /// Evaluates <paramref name="tokens"/> for one sequence and writes the logits of its last token into
    /// <paramref name="into"/> when it has <see cref="ModelInfo.VocabularySize"/> elements (and returns it), so a
    /// generation loop can reuse one buffer; otherwise returns a new array.
    /// </summary>
    public float[] Evaluate(InferenceSequence sequence, ReadOnlyMemory<int> tokens, float[]? into, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (sequence.Length + tokens.Length > sequence.ContextSize)
        {
            throw new InvalidOperationException(
                $"the sequence holds {sequence.Length} of {sequence.ContextSize} positions; {tokens.Length} more tokens do not fit (raise the context size)");
        }

        var chunk = Math.Max(1, Options.MaxBatchTokens);
        while (tokens.Length > chunk)
        {
            Evaluate([new BatchEntry(sequence, tokens[..chunk], LogitsRequest.None)], cancellationToken);
            tokens = tokens[chunk..];
        }

        return Evaluate([new BatchEntry(sequence, tokens, LogitsRequest.Last, into)], cancellationToken)[0];
    }

    /// <summary>Unmaps the model and stops its threads; waits for a running forward pass to finish.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _pool.Dispose();
            _file.Dispose();
        }
    }

    private static Action<long, long> ReadProgress(IProgress<ModelLoadProgress> progress)
    {
        var lastReport = 0L;
        return (done, total) =>
        {
            if (done - lastReport > (64L << 20) || done == total)
            {
                lastReport = done;
                progress.Report(new ModelLoadProgress(ModelLoadStage.Reading, 0.9 * done / Math.Max(1, total), $"read {done >> 20} of {total >> 20} MiB into memory"));
            }
        };
    }

    private static unsafe void Prefetch(GgufFile file, IProgress<ModelLoadProgress>? progress)
    {
        long total = 0;
        foreach (var t in file.Tensors)
        {
            total += t.ByteSize;
        }

        long done = 0;
        var lastReport = 0L;
        var sink = 0;
        foreach (var t in file.Tensors)
        {
            var p = file.GetTensorPointer(t);
            for (long offset = 0; offset < t.ByteSize; offset += 4096)
            {
                sink += p[offset];
            }

            done += t.ByteSize;
            if (progress is not null && (done - lastReport > (64L << 20) || done == total))
            {
                lastReport = done;
                progress.Report(new ModelLoadProgress(ModelLoadStage.Prefetching, 0.05 + (0.95 * done / Math.Max(1, total)), $"read {done >> 20} of {total >> 20} MiB of weights"));
            }
        }

        GC.KeepAlive(sink);
    }
}
