using System.Diagnostics;
using System.Runtime.CompilerServices;
using Sluice.Engine;
using Sluice.Engine.Sampling;
using Sluice.Engine.Templates;
using Sluice.Engine.Tokenization;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using TemplateMessage = Sluice.Engine.Templates.ChatMessage;

namespace Sluice.Providers.Local;

/// <summary>
/// A GGUF model run in-process (<c>"Provider": "local"</c>): the conversation is rendered with the file's chat template,
/// tokenized, generated with the request's sampling settings and streamed as text through the streaming detokenizer
/// (never half a character), stopping at the end-of-turn token, a stop string or <c>max_tokens</c>. Usage counts are
/// exact: the prompt tokens as fed, the tokens generated. The model is loaded once (<see cref="PreloadAsync"/>, at
/// start-up) and shared by every request; generation goes through an <see cref="ILocalGenerator"/>, so how concurrent
/// requests share the model is decided there. Tools, structured outputs, logprobs and n &gt; 1 are refused with a 400.
/// </summary>
public sealed class LocalChatBackend : IChatBackend, IPromptTokenCounter, IPreloadedBackend, IDisposable
{
    /// <summary>The <c>Provider</c> value of local models.</summary>
    public const string ProviderName = "local";

    private readonly string _path;
    private readonly Lock _gate = new();
    private Task? _loading;
    private LocalChatModel? _model;
    private ILocalGenerator? _generator;
    private bool _ownsModel;
    private bool _disposed;

    private LocalChatBackend(ModelOptions options, string path)
    {
        Options = options;
        _path = path;
    }

    /// <summary>A backend over a model the caller loaded (and keeps owning), generating through <paramref name="generator"/>.</summary>
    public LocalChatBackend(LocalChatModel model, ILocalGenerator generator, ModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(generator);
        _path = model.Path;
        _model = model;
        _generator = generator;
        _loading = Task.CompletedTask;
        Options = Effective(options ?? new ModelOptions { Name = Path.GetFileNameWithoutExtension(model.Path), Provider = ProviderName }, model.Path, generator.ContextSize, model.Model.Info.Architecture);
    }

    /// <summary>
    /// The model's options as the catalog lists them: <see cref="ModelOptions.ContextWindow"/> is the context size the
    /// model loads with, <see cref="ModelOptions.MaxOutputTokens"/> at most that, a description when none is configured.
    /// </summary>
    public ModelOptions Options { get; }

    /// <summary>The model file.</summary>
    public string ModelPath => _path;

    /// <inheritdoc />
    public bool IsLoaded => Volatile.Read(ref _generator) is not null;

    /// <summary>The loaded model, or null before <see cref="PreloadAsync"/> completes.</summary>
    public LocalChatModel? Model => Volatile.Read(ref _model);

    /// <summary>What generates the tokens (a <see cref="BatchingGenerator"/> when this backend loaded the model), or null before loading.</summary>
    public ILocalGenerator? Generator => Volatile.Read(ref _generator);

    /// <summary><c>f32</c> or <c>f16</c> (any case) as a cache type; null for null or anything else.</summary>
    public static KvCacheType? ParseKvCache(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        "f32" => KvCacheType.F32,
        "f16" => KvCacheType.F16,
        _ => null,
    };

    /// <summary>
    /// Checks a <c>local</c> model entry and its file (exists, readable, GGUF, a supported architecture) without loading
    /// the weights; <see cref="PreloadAsync"/> loads them.
    /// </summary>
    /// <param name="options">The entry.</param>
    /// <param name="path">The model file (from <c>ModelPath</c> or the variable <c>ModelPathEnv</c> names).</param>
    /// <param name="where">How to name the entry in errors, e.g. <c>Models[2] ("local-qwen")</c>.</param>
    /// <exception cref="ModelConfigurationException">The entry or the file cannot be used; one line naming it and the fix.</exception>
    public static LocalChatBackend Create(ModelOptions options, string path, string where)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Parallel < 1)
        {
            throw new ModelConfigurationException($"{where} has Parallel {options.Parallel}: it is how many requests generate at once, at least 1 (default 4).");
        }

        if (options.ContextSize is < 1)
        {
            throw new ModelConfigurationException($"{where} has ContextSize {options.ContextSize}: give the positions of the context (prompt plus answer), e.g. 4096, or leave it out for the model's own (at most 4096).");
        }

        if (options.Threads is < 1)
        {
            throw new ModelConfigurationException($"{where} has Threads {options.Threads}: give 1 or more, or leave it out to use every core.");
        }

        if (options.KvCache is { } cache && ParseKvCache(cache) is null)
        {
            throw new ModelConfigurationException($"{where} has KvCache \"{cache}\": give \"f32\" or \"f16\" (half the memory per position), or leave it out for f32.");
        }

        try
        {
            var (full, architecture, context) = LocalChatModel.Inspect(path, options.ContextSize);
            return new LocalChatBackend(Effective(options, full, context, architecture), full);
        }
        catch (LocalModelLoadException ex)
        {
            throw new ModelConfigurationException($"{where}: {ex.Message}");
        }
    }

    /// <inheritdoc />
    /// <remarks>Loads the model once; later calls (and calls while it loads) wait for the same load.</remarks>
    public Task PreloadAsync(Action<string> report, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(report);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _loading ??= Task.Run(() => Load(report), CancellationToken.None);
        }

        return _loading.WaitAsync(cancellationToken);
    }

    /// <inheritdoc />
    ValueTask<int> IPromptTokenCounter.CountPromptTokensAsync(ChatRequest request, CancellationToken cancellationToken) =>
        new(CountPromptTokens(request));

    /// <summary>The prompt tokens <paramref name="request"/> would use, as this model's usage reports them.</summary>
    public int CountPromptTokens(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return Encode(Loaded().Model, request).Length;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        if (request.AnthropicOnly is { } anthropicOnly)
        {
            throw anthropicOnly.Refusal(request.Model, "a local model");
        }

        if (!IsLoaded)
        {
            // Hosts preload at start-up; a catalog used on its own loads on the first call.
            try
            {
                await PreloadAsync(_ => { }, cancellationToken);
            }
            catch (ModelConfigurationException ex)
            {
                throw new ChatException(503, new ErrorInfo(ex.Message, ErrorTypes.Server, "model", UnavailableChatBackend.Code));
            }
        }

        var (model, generator) = Loaded();
        Refuse(request);
        var prompt = Encode(model, request);
        var room = generator.ContextSize - prompt.Length;
        if (room < 1)
        {
            throw ChatException.BadRequest(
                $"The prompt is {prompt.Length} tokens, and {request.Model} has a context of {generator.ContextSize} tokens for prompt and answer together. Shorten the conversation, or raise the model's ContextSize.",
                "messages", "context_length_exceeded");
        }

        var maxTokens = Math.Min(Math.Min(request.MaxTokens ?? int.MaxValue, Options.MaxOutputTokens), room);
        var generation = new LocalGenerationRequest
        {
            Prompt = prompt,
            Sampling = Sampling(request),
            MaxTokens = maxTokens,
            StopTokens = model.StopTokens,
        };
        var stats = new LocalGenerationStats();
        var text = new TokenTextStream(model.Tokenizer, request.Stop);
        var completion = 0;
        await foreach (var token in generator.GenerateAsync(generation, stats, cancellationToken))
        {
            completion++;
            var piece = text.Push(token);
            if (piece.Length > 0)
            {
                yield return new TextDeltaEvent(piece);
            }

            if (text.Stopped)
            {
                // Leaving the loop ends the generation: no token is computed past the stop string.
                break;
            }
        }

        if (!text.Stopped)
        {
            var tail = text.Flush();
            if (tail.Length > 0)
            {
                yield return new TextDeltaEvent(tail);
            }
        }

        var reason = !text.Stopped && stats.StopReason is GenerationStopReason.MaxTokens or GenerationStopReason.ContextFull
            ? FinishReasons.Length
            : FinishReasons.Stop;
        yield return new FinishEvent(reason) { StopSequence = text.MatchedStopString };
        yield return new UsageEvent(new ChatUsage(prompt.Length, completion));
    }

    /// <summary>Releases the model (when this backend loaded it) and its sequences.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        if (_ownsModel)
        {
            (_generator as IDisposable)?.Dispose();
            _model?.Dispose();
        }
    }

    /// <summary>
    /// The sampling settings of <paramref name="request"/>; what it leaves out takes llama.cpp's defaults (temperature 0.8,
    /// top-k 40, top-p 0.95, min-p 0.05, no penalties), so an answer reads as it would from llama.cpp's server.
    /// </summary>
    public static SamplingOptions Sampling(ChatRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var defaults = new SamplingOptions();
        return new SamplingOptions
        {
            Temperature = (float)(request.Temperature ?? defaults.Temperature),
            TopK = request.TopK ?? defaults.TopK,

            // OpenAI accepts top_p 0; the sampler needs a positive share, and the smallest keeps only the likeliest token, as 0 means.
            TopP = request.TopP is { } topP ? Math.Max((float)topP, float.Epsilon) : defaults.TopP,
            MinP = request.MinP is { } minP ? (float)minP : defaults.MinP,
            RepetitionPenalty = (float)(request.RepetitionPenalty ?? 1),
            FrequencyPenalty = (float)(request.FrequencyPenalty ?? 0),
            PresencePenalty = (float)(request.PresencePenalty ?? 0),
            Seed = request.Seed is { } seed ? unchecked((ulong)seed) : null,
        };
    }

    private static ModelOptions Effective(ModelOptions configured, string path, int contextSize, string architecture)
    {
        var effective = configured.Copy();
        effective.Provider = ProviderName;
        effective.ContextWindow = contextSize;
        effective.MaxOutputTokens = Math.Min(configured.MaxOutputTokens, contextSize);
        effective.MaxAttempts ??= 1; // a local failure would fail again at once
        effective.Description ??= $"Local {architecture} model {Path.GetFileName(path)} (Sluice engine)";
        return effective;
    }

    private void Load(Action<string> report)
    {
        var started = Stopwatch.GetTimestamp();
        report($"loading {_path}");
        var progress = new LoadReporter(report);
        LocalChatModel model;
        try
        {
            model = LocalChatModel.Load(_path, new LocalChatModelOptions { ContextSize = Options.ContextWindow, Threads = Options.Threads, ChatTemplate = Options.ChatTemplate, MemoryMap = Options.MemoryMap ?? true, KvCache = ParseKvCache(Options.KvCache) ?? KvCacheType.F32 }, progress);
        }
        catch (LocalModelLoadException ex)
        {
            throw new ModelConfigurationException($"Model \"{Options.Name}\": {ex.Message}");
        }

        if (model.TemplateProblem is { } problem)
        {
            model.Dispose();
            throw new ModelConfigurationException($"Model \"{Options.Name}\": {new LocalModelLoadException(model.Path, problem).Message}");
        }

        var pool = new BatchingGenerator(model.Model, Options.Parallel, model.ContextSize);
        lock (_gate)
        {
            if (_disposed)
            {
                pool.Dispose();
                model.Dispose();
                throw new ObjectDisposedException(nameof(LocalChatBackend));
            }

            _ownsModel = true;
            Volatile.Write(ref _model, model);
            Volatile.Write(ref _generator, pool);
        }

        var kv = LocalChatModel.FormatBytes(model.Model.KvCacheBytes(model.ContextSize));
        report($"ready in {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s: {model.Describe()}; {kv} of key/value cache per request, up to {Options.Parallel} at once");
    }

    private (LocalChatModel Model, ILocalGenerator Generator) Loaded()
    {
        var generator = Volatile.Read(ref _generator);
        var model = Volatile.Read(ref _model);
        if (generator is null || model is null)
        {
            throw new ChatException(503, new ErrorInfo(
                $"Model \"{Options.Name}\" is still loading ({_path}). Retry in a moment.",
                ErrorTypes.Server, "model", UnavailableChatBackend.Code), TimeSpan.FromSeconds(5));
        }

        return (model, generator);
    }

    /// <summary>What a local model cannot do yet, refused before anything runs.</summary>
    private static void Refuse(ChatRequest request)
    {
        if (request.Tools is { Count: > 0 })
        {
            throw ChatException.BadRequest(
                $"Model \"{request.Model}\" is a local model, which does not call tools yet. Send the request without tools, or use a model that supports them (GET /v1/models).",
                "tools", "unsupported_parameter");
        }

        if (request.ResponseFormat is { IsJson: true })
        {
            throw ChatException.BadRequest(
                $"Model \"{request.Model}\" is a local model, which cannot guarantee JSON output yet (no constrained decoding). Leave out response_format (or format), and ask for JSON in the prompt instead.",
                "response_format", "unsupported_parameter");
        }

        if (request.Logprobs)
        {
            throw ChatException.BadRequest(
                $"Model \"{request.Model}\" is a local model, which does not return logprobs yet. Leave out logprobs.",
                "logprobs", "unsupported_parameter");
        }

        if (request.N > 1)
        {
            throw ChatException.BadRequest(
                $"Model \"{request.Model}\" is a local model, which writes one answer per request (n = {request.N}). Send n = 1, or several requests.",
                "n", "unsupported_value");
        }
    }

    /// <summary>The request's conversation as the token ids fed to the model.</summary>
    private static int[] Encode(LocalChatModel model, ChatRequest request)
    {
        var messages = new List<TemplateMessage>(request.Messages.Count);
        for (var i = 0; i < request.Messages.Count; i++)
        {
            var message = request.Messages[i];
            if (message.Role == ChatRoles.Tool || message.ToolCalls is { Count: > 0 })
            {
                throw ChatException.BadRequest(
                    $"messages[{i}] is a tool call or result, and model \"{request.Model}\" is a local model, which does not call tools yet. Send the conversation without tool turns, or use a model that supports tools.",
                    $"messages[{i}]", "unsupported_parameter");
            }

            var role = message.Role is ChatRoles.Developer ? ChatRoles.System : message.Role;
            messages.Add(new TemplateMessage(role, message.Content ?? string.Empty));
        }

        try
        {
            return model.EncodeChat(messages);
        }
        catch (ChatTemplateException ex)
        {
            // The model's own template refuses the conversation (e.g. no system turn, or turns not alternating).
            throw ChatException.BadRequest(
                $"The chat template of model \"{request.Model}\" refuses this conversation: {ex.Message.TrimEnd('.')}. Change the conversation's turns to what the model accepts.",
                "messages", "invalid_value");
        }
    }

    /// <summary>Turns the engine's load progress into a few log lines (stage changes and every tenth of the weights read).</summary>
    private sealed class LoadReporter(Action<string> report) : IProgress<ModelLoadProgress>
    {
        private ModelLoadStage? _stage;
        private double _reported = -1;

        public void Report(ModelLoadProgress value)
        {
            if (value.Stage == ModelLoadStage.Ready || value.Stage == ModelLoadStage.Opening)
            {
                // The backend says "loading" and "ready" itself, with more detail.
                _stage = value.Stage;
                return;
            }

            if (value.Stage != _stage || value.Fraction - _reported >= 0.1)
            {
                _stage = value.Stage;
                _reported = value.Fraction;
                report($"{value.Message} ({value.Fraction:P0})");
            }
        }
    }
}
