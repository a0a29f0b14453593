using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Sluice.Cli.Commands.Chat;
using Sluice.Engine;
using Sluice.Engine.Sampling;
using Sluice.Engine.Tokenization;
using Sluice.Providers.Local;
using TemplateMessage = Sluice.Engine.Templates.ChatMessage;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice run</c>: runs a GGUF model in this process (no gateway), like <c>llama-cli</c> or <c>ollama run</c>.</summary>
internal static class RunCommand
{
    private const string ErrorPrefix = "sluice run: ";

    private const string Help = """
        Run a GGUF model (llama, qwen2 or qwen3 architecture; F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K weights) in this
        process with Sluice's own engine — no gateway, no network. Loading progress and stats go to stderr, the answer
        streams to stdout.

        With a prompt: one answer. The prompt is a user turn rendered with the model's chat template (ChatML when the
        file has none) unless --raw, which feeds the text as is (special-token texts parsed, BOS as the file's
        add_bos_token says) and prints the continuation. Without a prompt: an interactive chat that keeps the
        conversation (its cache too: each turn only evaluates what is new); /reset clears it, /exit or Ctrl+D quits,
        Ctrl+C stops an answer.

        Sampling defaults are llama.cpp's: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05; --temperature 0 is
        greedy (the most likely token, lowest id on ties). An answer ends at the model's end-of-turn token, at
        --max-tokens, or when the context is full.

        --json prints one JSON object per answer on stdout instead of the text: {"prompt_tokens": [ids as fed],
        "tokens": [generated ids], "text", "stop_reason", "seed", "timings": {...}}.

        Exit codes: 0 ok, 2 bad usage, 3 the model cannot be loaded (missing file, not GGUF, unsupported),
        130 cancelled (Ctrl+C).

        Examples:
          sluice run qwen2.5-0.5b-instruct-q4_k_m.gguf "Why is the sky blue?"
          sluice run model.gguf --raw --temperature 0 --max-tokens 32 "The capital of France is"
          sluice run model.gguf --system "Answer in French."
        """;

    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var modelPath = new Argument<string>("model") { Description = "The GGUF model file." };
        var prompt = new Argument<string?>("prompt")
        {
            Description = "The prompt. Leave it out for an interactive chat.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var raw = new Option<bool>("--raw") { Description = "Feed the prompt as is, without the chat template (BOS as the file says), and print its continuation." };
        var system = new Option<string?>("--system", "-s") { Description = "System prompt that opens the conversation (not with --raw)." };
        var temperature = new Option<double?>("--temperature", "-t") { Description = "Sampling temperature, 0 or more (default 0.8; 0 = greedy)." };
        var topK = new Option<int?>("--top-k") { Description = "Sample from the k most likely tokens (default 40; 0 = all)." };
        var topP = new Option<double?>("--top-p") { Description = "Sample from the most likely tokens that make up this share of probability, above 0 to 1 (default 0.95)." };
        var minP = new Option<double?>("--min-p") { Description = "Drop tokens less likely than this fraction of the most likely one, 0–1 (default 0.05)." };
        var repeatPenalty = new Option<double?>("--repeat-penalty") { Description = "Penalty on the last 64 tokens, above 0 (default 1 = off; 1.1 is usual)." };
        var seed = new Option<long?>("--seed") { Description = "Sampler seed: the same seed, model and prompt give the same answer (default: random)." };
        var maxTokens = new Option<int?>("--max-tokens", "-n") { Description = "Longest answer, in tokens (default: until the end-of-turn token or a full context)." };
        var threads = new Option<int?>("--threads") { Description = "Threads of each forward pass (default: every core)." };
        var context = new Option<int?>("--context", "-c") { Description = "Context size, prompt plus answer, in tokens (default: the model's, at most 4096)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per answer (token ids as fed and generated, text, timings) instead of the text." };
        var bench = new Option<bool>("--bench") { Description = "Measure instead of chatting, like llama-bench: a random 128-token prompt as one batch, then 64 generated tokens, 1 warm-up and 3 repetitions; prints the best tokens/s (with --json: {\"pp_tok_s\",\"tg_tok_s\",\"ttft_ms\",…,\"runs\"})." };
        var kvCache = new Option<string?>("--kv-cache") { Description = "Element type of the key/value cache: f32 (default; exact against llama.cpp with an f32 cache) or f16 (half the memory per position, llama.cpp's default).", HelpName = "f32|f16" };
        var noMmap = new Option<bool>("--no-mmap") { Description = "Read the model file into memory instead of mapping it (its size in resident memory; faster where reads through a file mapping are slow, e.g. some virtual machines)." };
        var parallel = new Option<int?>("--parallel") { Description = "With --bench: also run N generations at once through the batching scheduler each repetition and report their aggregate generation speed and its ratio to one stream (--json: \"tgN_tok_s\", \"tgN_ratio\")." };

        var command = new Command("run", Help)
        {
            modelPath,
            prompt,
            raw,
            system,
            temperature,
            topK,
            topP,
            minP,
            repeatPenalty,
            seed,
            maxTokens,
            threads,
            context,
            json,
            bench,
            parallel,
            noMmap,
            kvCache,
        };

        // Ctrl+C is handled by InterruptHandler (stop the current answer; at the interactive prompt, exit).
        command.SetAction((parse, _) => RunAsync(new RunInvocation(
            parse.GetValue(modelPath)!,
            parse.GetValue(prompt),
            parse.GetValue(raw),
            parse.GetValue(system),
            parse.GetValue(temperature),
            parse.GetValue(topK),
            parse.GetValue(topP),
            parse.GetValue(minP),
            parse.GetValue(repeatPenalty),
            parse.GetValue(seed),
            parse.GetValue(maxTokens),
            parse.GetValue(threads),
            parse.GetValue(context),
            parse.GetValue(json),
            parse.GetValue(bench),
            parse.GetValue(parallel),
            parse.GetValue(noMmap),
            parse.GetValue(kvCache))));
        return command;
    }

    private static async Task<int> RunAsync(RunInvocation invocation)
    {
        using var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = false };
        using var error = TextWriter.Synchronized(new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true });
        if (Validate(invocation) is { } problem)
        {
            await error.WriteLineAsync(ErrorPrefix + problem);
            return ExitCodes.Usage;
        }

        var loadStarted = Stopwatch.GetTimestamp();
        LocalChatModel model;
        try
        {
            using var progress = new LoadProgress(error);
            model = await Task.Run(() => LocalChatModel.Load(
                invocation.ModelPath,
                new LocalChatModelOptions { ContextSize = invocation.Context, Threads = invocation.Threads, MemoryMap = !invocation.NoMmap, KvCache = LocalChatBackend.ParseKvCache(invocation.KvCache) ?? KvCacheType.F32 },
                progress));
        }
        catch (LocalModelLoadException ex)
        {
            await error.WriteLineAsync(ErrorPrefix + ex.Message);
            return ExitCodes.Config;
        }

        var loadTime = Stopwatch.GetElapsedTime(loadStarted);
        using (model)
        using (var generator = new BatchingGenerator(model.Model, maxSequences: 1))
        using (var interrupts = new InterruptHandler(error))
        {
            await error.WriteLineAsync($"Loaded {Path.GetFileName(model.Path)} in {loadTime.TotalSeconds:F1} s: {model.Describe()}.");
            if (!invocation.Raw && model.TemplateProblem is { } templateProblem)
            {
                await error.WriteLineAsync(ErrorPrefix + new LocalModelLoadException(model.Path, templateProblem).Message);
                return ExitCodes.Config;
            }

            if (invocation.Bench)
            {
                return await BenchAsync(model, invocation, output, error);
            }

            var runner = new Runner(model, generator, invocation, output, error, interrupts, loadTime);
            if (invocation.Prompt is { } text)
            {
                var conversation = runner.NewConversation();
                conversation.Add(new TemplateMessage("user", text));
                var turn = await runner.RunTurnAsync(conversation, text);
                return turn.ExitCode;
            }

            return await runner.InteractiveAsync();
        }
    }

    /// <summary><c>--bench</c>: llama-bench-like prompt processing and generation speed, progress on stderr, the result on stdout.</summary>
    private static async Task<int> BenchAsync(LocalChatModel model, RunInvocation invocation, StreamWriter output, TextWriter error)
    {
        var options = new Sluice.Engine.Benchmarking.EngineBenchmarkOptions { Parallel = invocation.Parallel ?? 1 };
        var concurrent = options.Parallel > 1 ? $", then {options.Parallel} generations at once through the batching scheduler" : string.Empty;
        await error.WriteLineAsync($"Benchmark: prompt {options.PromptTokens} tokens as one batch, then {options.GenerateTokens} generated{concurrent}, {options.Warmup} warm-up and {options.Repetitions} measured runs on {model.Model.ThreadCount} thread(s)…");

        // The scheduler the gateway uses, sized for the benchmark's prompts (a full context per stream would only cost memory).
        using var scheduler = options.Parallel > 1
            ? new BatchingGenerator(model.Model, options.Parallel, options.PromptTokens + options.GenerateTokens + 2)
            : null;
        var stream = scheduler is null
            ? null
            : new Sluice.Engine.Benchmarking.BenchmarkStream((prompt, maxTokens, cancellationToken) => scheduler.GenerateAsync(
                new LocalGenerationRequest { Prompt = prompt, MaxTokens = maxTokens, Sampling = SamplingOptions.Greedy, StopTokens = new HashSet<int>() },
                null,
                cancellationToken));
        var result = await Task.Run(() => Sluice.Engine.Benchmarking.EngineBenchmark.RunAsync(model.Model, options, stream, new SynchronousProgress(error)));
        if (invocation.Json)
        {
            await output.WriteLineAsync(result.ToJson(model.Model.Info));
        }
        else
        {
            var number = CultureInfo.InvariantCulture;
            await output.WriteLineAsync(string.Create(number,
                $"{Path.GetFileName(model.Path)}: prompt processing {result.PromptTokensPerSecond:F1} tok/s, generation {result.GenerateTokensPerSecond:F1} tok/s, time to first token {result.TimeToFirstTokenMs:F0} ms (best of {result.Samples.Count}, {result.Threads} thread(s))"));
            if (options.Parallel > 1)
            {
                await output.WriteLineAsync(string.Create(number,
                    $"{options.Parallel} generations at once: {result.ParallelGenerateTokensPerSecond:F1} tok/s together, {result.ParallelRatio:F2}× one stream"));
            }
        }

        await output.FlushAsync();
        return ExitCodes.Success;
    }

    /// <summary>Reports on the calling thread (the benchmark's), so lines come out in order while it runs.</summary>
    private sealed class SynchronousProgress(TextWriter error) : IProgress<string>
    {
        public void Report(string value) => error.WriteLine("  " + value);
    }

    /// <summary>The first problem with the options, as one sentence that says what to type; null when they are fine.</summary>
    private static string? Validate(RunInvocation o)
    {
        var number = CultureInfo.InvariantCulture;
        return o switch
        {
            { Parallel: not null, Bench: false } => "--parallel measures concurrent generations with --bench; add --bench, or leave --parallel out.",
            { Parallel: < 1 } => $"--parallel must be at least 1 (got {o.Parallel}); 4 compares four simultaneous generations with one.",
            { Bench: true, Prompt: not null } => "--bench measures with a random prompt of its own; leave the prompt out.",
            { Bench: true, Context: < 193 } => $"--bench needs a context of at least 193 tokens (128 prompt + 64 generated + 1; got {o.Context}).",
            { Prompt: { } p } when string.IsNullOrWhiteSpace(p) => "the prompt is empty. Pass it in quotes, or leave it out for an interactive chat.",
            { Raw: true, System: not null } => "--system needs the chat template; --raw feeds the prompt as is. Put the instructions in the raw prompt, or drop --raw.",
            { Temperature: < 0 or double.NaN } => $"--temperature must be 0 or more (got {o.Temperature!.Value.ToString(number)}); 0 is greedy.",
            { TopK: < 0 } => $"--top-k must be 0 or more (got {o.TopK}); 0 keeps every token.",
            { TopP: <= 0 or > 1 or double.NaN } => $"--top-p must be above 0 and at most 1 (got {o.TopP!.Value.ToString(number)}).",
            { MinP: < 0 or > 1 or double.NaN } => $"--min-p must be between 0 and 1 (got {o.MinP!.Value.ToString(number)}).",
            { RepeatPenalty: <= 0 or double.NaN } => $"--repeat-penalty must be above 0 (got {o.RepeatPenalty!.Value.ToString(number)}); 1 turns it off.",
            { MaxTokens: < 1 } => $"--max-tokens must be at least 1 (got {o.MaxTokens}).",
            { Threads: < 1 } => $"--threads must be at least 1 (got {o.Threads}).",
            { Context: < 2 } => $"--context must be at least 2 tokens (got {o.Context}); 4096 suits most uses.",
            { KvCache: { } cache } when LocalChatBackend.ParseKvCache(cache) is null => $"--kv-cache must be f32 or f16 (got \"{cache}\"); f16 halves the cache's memory.",
            _ => null,
        };
    }

    private sealed record RunInvocation(
        string ModelPath,
        string? Prompt,
        bool Raw,
        string? System,
        double? Temperature,
        int? TopK,
        double? TopP,
        double? MinP,
        double? RepeatPenalty,
        long? Seed,
        int? MaxTokens,
        int? Threads,
        int? Context,
        bool Json,
        bool Bench,
        int? Parallel,
        bool NoMmap,
        string? KvCache);

    /// <summary>How one answer went.</summary>
    private readonly record struct TurnResult(int ExitCode, string Answer, bool Failed);

    /// <summary>Generates answers for one loaded model: one-shot or interactive.</summary>
    private sealed class Runner(
        LocalChatModel model,
        BatchingGenerator generator,
        RunInvocation invocation,
        StreamWriter output,
        TextWriter error,
        InterruptHandler interrupts,
        TimeSpan loadTime)
    {
        public List<TemplateMessage> NewConversation()
        {
            var conversation = new List<TemplateMessage>();
            if (invocation.System is { } system)
            {
                conversation.Add(new TemplateMessage("system", system));
            }

            return conversation;
        }

        /// <summary>The interactive loop: the prompt "&gt; " on stderr, so stdout holds only answers.</summary>
        public async Task<int> InteractiveAsync()
        {
            using var input = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false));
            await error.WriteLineAsync(invocation.Raw
                ? "Each line is completed as is (--raw, no history). /exit (or Ctrl+D) quits, Ctrl+C stops an answer."
                : "Chat with the model. /reset clears the conversation, /exit (or Ctrl+D) quits, Ctrl+C stops an answer.");
            var conversation = NewConversation();
            while (true)
            {
                await error.WriteAsync("> ");
                var line = await input.ReadLineAsync(CancellationToken.None);
                if (line is null)
                {
                    await error.WriteLineAsync();
                    return ExitCodes.Success;
                }

                line = line.Trim();
                switch (line)
                {
                    case "":
                        continue;
                    case "/exit" or "/quit" or "/bye":
                        return ExitCodes.Success;
                    case "/reset":
                        conversation = NewConversation();
                        await error.WriteLineAsync("Conversation cleared.");
                        continue;
                    case "/help":
                        await error.WriteLineAsync("Type a message and press Enter. /reset clears the conversation, /exit quits, Ctrl+C stops an answer.");
                        continue;
                }

                if (line.StartsWith('/'))
                {
                    await error.WriteLineAsync($"Unknown command '{line}'. Commands: /reset, /exit, /help.");
                    continue;
                }

                conversation.Add(new TemplateMessage("user", line));
                var turn = await RunTurnAsync(conversation, line);
                if (turn.Failed || turn.Answer.Length == 0 || invocation.Raw)
                {
                    // Forget a question that got no answer, so that asking again does not send it twice; raw lines keep no history.
                    conversation.RemoveAt(conversation.Count - 1);
                }
                else
                {
                    // A stopped answer stays in the conversation: the user saw it, and the model should too.
                    conversation.Add(new TemplateMessage("assistant", turn.Answer));
                }
            }
        }

        /// <summary>Generates one answer to <paramref name="conversation"/> (or, with --raw, to <paramref name="rawText"/>).</summary>
        public async Task<TurnResult> RunTurnAsync(List<TemplateMessage> conversation, string rawText)
        {
            int[] prompt;
            try
            {
                prompt = invocation.Raw ? model.EncodeRaw(rawText) : model.EncodeChat(conversation);
            }
            catch (Sluice.Engine.Templates.ChatTemplateException ex)
            {
                await error.WriteLineAsync(ErrorPrefix + $"the model's chat template refuses this conversation: {ex.Message.TrimEnd('.')}. Use --raw to write the prompt yourself.");
                return new TurnResult(ExitCodes.Usage, string.Empty, true);
            }

            if (prompt.Length == 0)
            {
                await error.WriteLineAsync(ErrorPrefix + "the prompt has no tokens (the model adds no BOS). Give some text.");
                return new TurnResult(ExitCodes.Usage, string.Empty, true);
            }

            var room = generator.ContextSize - prompt.Length;
            if (room < 1)
            {
                await error.WriteLineAsync(ErrorPrefix + $"the prompt is {prompt.Length} tokens and the context holds {generator.ContextSize} for prompt and answer. Raise --context, shorten the prompt, or /reset the conversation.");
                return new TurnResult(ExitCodes.Usage, string.Empty, true);
            }

            var request = new LocalGenerationRequest
            {
                Prompt = prompt,
                Sampling = Sampling(),
                MaxTokens = Math.Min(invocation.MaxTokens ?? int.MaxValue, room),
                StopTokens = model.StopTokens,
            };

            // A raw continuation keeps the space the first token starts with ("is" + " Paris"); an answer starts clean.
            var text = new TokenTextStream(model.Tokenizer, stripLeadingSpace: invocation.Raw ? false : null);
            var stats = new LocalGenerationStats();
            var tokens = new List<int>();
            var answer = new StringBuilder();
            var cancel = interrupts.BeginStream();
            var cancelled = false;
            try
            {
                await foreach (var token in generator.GenerateAsync(request, stats, cancel.Token))
                {
                    tokens.Add(token);
                    await WriteAsync(text.Push(token), answer);
                }
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                cancelled = true;
            }
            finally
            {
                interrupts.EndStream(cancel);
            }

            await WriteAsync(text.Flush(), answer);
            if (invocation.Json)
            {
                await output.WriteLineAsync(Json(prompt, tokens, answer.ToString(), stats, cancelled));
                await output.FlushAsync();
            }
            else
            {
                await output.WriteLineAsync();
                await output.FlushAsync();
                await error.WriteLineAsync(Stats(prompt.Length, stats, cancelled));
            }

            return new TurnResult(cancelled && invocation.Prompt is not null ? ExitCodes.Cancelled : ExitCodes.Success, answer.ToString(), false);
        }

        private async Task WriteAsync(string piece, StringBuilder answer)
        {
            if (piece.Length == 0)
            {
                return;
            }

            answer.Append(piece);
            if (!invocation.Json)
            {
                await output.WriteAsync(piece);
                await output.FlushAsync();
            }
        }

        private SamplingOptions Sampling()
        {
            var defaults = new SamplingOptions();
            return new SamplingOptions
            {
                Temperature = (float)(invocation.Temperature ?? defaults.Temperature),
                TopK = invocation.TopK ?? defaults.TopK,
                TopP = (float)(invocation.TopP ?? defaults.TopP),
                MinP = (float)(invocation.MinP ?? defaults.MinP),
                RepetitionPenalty = (float)(invocation.RepeatPenalty ?? 1),
                Seed = invocation.Seed is { } seed ? unchecked((ulong)seed) : null,
            };
        }

        private static string StopReason(LocalGenerationStats stats, bool cancelled) => cancelled
            ? "cancelled"
            : stats.StopReason switch
            {
                GenerationStopReason.StopToken => "end_of_turn",
                GenerationStopReason.MaxTokens => "max_tokens",
                GenerationStopReason.ContextFull => "context_full",
                _ => "cancelled",
            };

        private static string Stats(int promptTokens, LocalGenerationStats stats, bool cancelled)
        {
            var evaluated = promptTokens - stats.ReusedPromptTokens;
            var prompt = $"prompt {promptTokens} tokens ({evaluated} evaluated in {stats.PromptTime.TotalMilliseconds:F0} ms, {Rate(evaluated, stats.PromptTime)} tokens/s)";
            var generated = $"answer {stats.GeneratedTokens} tokens in {stats.GenerationTime.TotalMilliseconds:F0} ms ({Rate(stats.GeneratedTokens, stats.GenerationTime)} tokens/s)";
            return $"· {prompt} · {generated} · {StopReason(stats, cancelled).Replace('_', ' ')}";
        }

        private static string Rate(int tokens, TimeSpan time) =>
            time > TimeSpan.Zero ? (tokens / time.TotalSeconds).ToString("F1", CultureInfo.InvariantCulture) : "–";

        private string Json(int[] prompt, List<int> tokens, string text, LocalGenerationStats stats, bool cancelled)
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer, JsonOptions))
            {
                json.WriteStartObject();
                json.WriteStartArray("prompt_tokens");
                foreach (var id in prompt)
                {
                    json.WriteNumberValue(id);
                }

                json.WriteEndArray();
                json.WriteStartArray("tokens");
                foreach (var id in tokens)
                {
                    json.WriteNumberValue(id);
                }

                json.WriteEndArray();
                json.WriteString("text", text);
                json.WriteString("stop_reason", StopReason(stats, cancelled));
                json.WriteNumber("seed", stats.Seed);
                json.WriteStartObject("timings");
                json.WriteNumber("load_ms", Math.Round(loadTime.TotalMilliseconds, 1));
                json.WriteNumber("prompt_tokens_reused", stats.ReusedPromptTokens);
                json.WriteNumber("prompt_ms", Math.Round(stats.PromptTime.TotalMilliseconds, 3));
                WriteRate(json, "prompt_tokens_per_second", prompt.Length - stats.ReusedPromptTokens, stats.PromptTime);
                json.WriteNumber("generation_ms", Math.Round(stats.GenerationTime.TotalMilliseconds, 3));
                WriteRate(json, "generation_tokens_per_second", stats.GeneratedTokens, stats.GenerationTime);
                json.WriteNumber("threads", model.Model.ThreadCount);
                json.WriteNumber("context_size", generator.ContextSize);
                json.WriteEndObject();
                json.WriteEndObject();
            }

            return Encoding.UTF8.GetString(buffer.ToArray());
        }

        private static void WriteRate(Utf8JsonWriter json, string name, int tokens, TimeSpan time)
        {
            if (time > TimeSpan.Zero && tokens > 0)
            {
                json.WriteNumber(name, Math.Round(tokens / time.TotalSeconds, 2));
            }
            else
            {
                json.WriteNull(name);
            }
        }
    }

    /// <summary>
    /// Loading progress on stderr: one line rewritten in place (and erased) on a terminal; when stderr is redirected, a line
    /// per tenth of the weights read.
    /// </summary>
    private sealed class LoadProgress(TextWriter error) : IProgress<ModelLoadProgress>, IDisposable
    {
        private readonly bool _terminal = !Console.IsErrorRedirected;
        private ModelLoadStage? _stage;
        private double _reported = -1;
        private bool _pendingLine;

        public void Report(ModelLoadProgress value)
        {
            if (value.Stage == ModelLoadStage.Ready)
            {
                return;
            }

            if (_terminal)
            {
                error.Write($"\rLoading: {value.Fraction,4:P0} {value.Message}\u001b[K");
                _pendingLine = true;
                return;
            }

            // Redirected: only the weights' reading, which comes after the checks, so a file that fails them gets one line.
            if (value.Stage is ModelLoadStage.Prefetching or ModelLoadStage.Reading && (value.Stage != _stage || value.Fraction - _reported >= 0.1))
            {
                _stage = value.Stage;
                _reported = value.Fraction;
                error.WriteLine($"Loading: {value.Fraction:P0} {value.Message}");
            }
        }

        public void Dispose()
        {
            if (_pendingLine)
            {
                error.Write("\r\u001b[K");
            }
        }
    }
}
