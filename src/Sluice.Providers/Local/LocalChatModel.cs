using Sluice.Engine;
using Sluice.Engine.Gguf;
using Sluice.Engine.Models;
using Sluice.Engine.Templates;
using Sluice.Engine.Tokenization;

namespace Sluice.Providers.Local;

/// <summary>Options of <see cref="LocalChatModel.Load"/>.</summary>
public sealed record LocalChatModelOptions
{
    /// <summary>Positions per sequence; null uses the model's training context capped at 4096.</summary>
    public int? ContextSize { get; init; }

    /// <summary>Threads of each forward pass; null uses every core.</summary>
    public int? Threads { get; init; }

    /// <summary>A Jinja chat template replacing the file's <c>tokenizer.chat_template</c>.</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>False reads the file into process memory instead of mapping it (<see cref="LocalModelOptions.MemoryMap"/>).</summary>
    public bool MemoryMap { get; init; } = true;

    /// <summary>Element type of each sequence's key/value cache (<see cref="LocalModelOptions.KvCache"/>).</summary>
    public KvCacheType KvCache { get; init; } = KvCacheType.F32;
}

/// <summary>
/// A GGUF model ready for chat: the engine's <see cref="LocalModel"/>, the file's tokenizer, and its chat template
/// (or ChatML when the file has none, as llama.cpp does). Turns conversations and raw text into the exact token ids
/// fed to the model. Thread-safe; dispose it after every generation using it has ended.
/// </summary>
public sealed class LocalChatModel : IDisposable
{
    /// <summary>The template used when the file has none: ChatML, llama.cpp's default.</summary>
    public const string ChatMLTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private readonly ChatTemplate? _template;
    private readonly string? _templateProblem;
    private readonly HashSet<int> _stopTokens;

    private LocalChatModel(string path, LocalModel model, Tokenizer tokenizer, ChatTemplate? template, string? templateProblem, ChatTemplateSource templateSource)
    {
        Path = path;
        Model = model;
        Tokenizer = tokenizer;
        _template = template;
        _templateProblem = templateProblem;
        TemplateSource = templateSource;
        _stopTokens = [.. tokenizer.EndOfGenerationTokenIds];
        if (model.Info.EosTokenId is { } eos)
        {
            _stopTokens.Add(eos);
        }
    }

    /// <summary>The model file (full path).</summary>
    public string Path { get; }

    /// <summary>The loaded model.</summary>
    public LocalModel Model { get; }

    /// <summary>The file's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>Where the chat template comes from.</summary>
    public ChatTemplateSource TemplateSource { get; }

    /// <summary>Why the chat template cannot be used (it failed to parse), or null when it can.</summary>
    public string? TemplateProblem => _templateProblem;

    /// <summary>Positions per sequence (the model's default context size).</summary>
    public int ContextSize => Model.DefaultContextSize;

    /// <summary>The tokens that end an answer: end of sequence, end of turn and the other end tokens of the vocabulary.</summary>
    public IReadOnlySet<int> StopTokens => _stopTokens;

    /// <summary>
    /// Loads <paramref name="path"/>: checks it, maps the weights (reporting progress), builds the tokenizer and parses the
    /// chat template. A template that does not parse does not fail the load (raw prompts still work): see <see cref="TemplateProblem"/>.
    /// </summary>
    /// <exception cref="LocalModelLoadException">The file is missing, unreadable, not GGUF or not a model the engine runs; one line naming the path and what to do.</exception>
    public static LocalChatModel Load(string path, LocalChatModelOptions? options = null, IProgress<ModelLoadProgress>? progress = null)
    {
        options ??= new LocalChatModelOptions();
        var full = CheckPath(path);
        if (options.ContextSize is < 1)
        {
            throw new LocalModelLoadException(full, $"cannot be loaded with a context size of {options.ContextSize}. Give a positive size (the longest prompt plus answer, e.g. 4096), or leave it out for the model's own (at most 4096)");
        }

        if (options.Threads is < 1)
        {
            throw new LocalModelLoadException(full, $"cannot be loaded with {options.Threads} threads. Give 1 or more, or leave the thread count out to use every core");
        }

        LocalModel model;
        try
        {
            model = LocalModel.Load(full, new LocalModelOptions { ContextSize = options.ContextSize, ThreadCount = options.Threads, MemoryMap = options.MemoryMap, KvCache = options.KvCache }, progress);
        }
        catch (Exception ex) when (Describe(full, ex) is { } problem)
        {
            throw new LocalModelLoadException(full, problem, ex);
        }

        try
        {
            Tokenizer tokenizer;
            string? fileTemplate;
            try
            {
                using var file = GgufFile.Open(full);
                var vocabulary = VocabularyData.FromGguf(file);
                fileTemplate = vocabulary.ChatTemplate;
                tokenizer = Tokenizer.Create(vocabulary);
            }
            catch (Exception ex) when (ex is InvalidDataException or NotSupportedException)
            {
                throw new LocalModelLoadException(full, $"has a tokenizer Sluice cannot use: {Trim(ex.Message)}. Use a GGUF converted by a recent llama.cpp (convert_hf_to_gguf.py)", ex);
            }

            if (tokenizer.VocabularySize != model.Info.VocabularySize)
            {
                throw new LocalModelLoadException(full,
                    $"has a tokenizer of {tokenizer.VocabularySize} tokens but an embedding matrix of {model.Info.VocabularySize} rows, an inconsistent file. Convert the model again");
            }

            var (source, text) = options.ChatTemplate is { Length: > 0 } custom
                ? (ChatTemplateSource.Options, custom)
                : fileTemplate is { Length: > 0 } own ? (ChatTemplateSource.File, own) : (ChatTemplateSource.ChatMLFallback, ChatMLTemplate);
            ChatTemplate? template = null;
            string? templateProblem = null;
            try
            {
                template = new ChatTemplate(text);
            }
            catch (ChatTemplateException ex)
            {
                templateProblem = source == ChatTemplateSource.Options
                    ? $"cannot be used with the ChatTemplate option, which does not parse: {Trim(ex.Message)}. Fix the template"
                    : $"has a chat template Sluice's template engine cannot run: {Trim(ex.Message)}. Set ChatTemplate in the model's options (ChatML suits many models), or send raw prompts (sluice run --raw)";
            }

            return new LocalChatModel(full, model, tokenizer, template, templateProblem, source);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks <paramref name="path"/> without loading it: it exists, is a readable GGUF file, and names an architecture the
    /// engine runs. Returns what a catalog needs before the (slower) load: the full path and the context size it will have.
    /// </summary>
    /// <exception cref="LocalModelLoadException">The file cannot be used; one line naming the path and what to do.</exception>
    public static (string FullPath, string Architecture, int ContextSize) Inspect(string path, int? contextSize = null)
    {
        var full = CheckPath(path);
        try
        {
            using var file = GgufFile.Open(full);
            var architecture = file.GetString("general.architecture", string.Empty);
            if (!ModelInfo.SupportedArchitectures.Contains(architecture))
            {
                throw new ModelLoadException(full, architecture.Length == 0
                    ? "general.architecture is missing"
                    : $"architecture '{architecture}' is not supported (supported: {string.Join(", ", ModelInfo.SupportedArchitectures)})");
            }

            var training = file.GetUInt32($"{architecture}.context_length", 0);
            var context = contextSize ?? (int)Math.Min(training is 0 ? 4096u : training, 4096u);
            return (full, architecture, context);
        }
        catch (Exception ex) when (Describe(full, ex) is { } problem)
        {
            throw new LocalModelLoadException(full, problem, ex);
        }
    }

    /// <summary>
    /// Renders a conversation with the chat template (system, user and assistant turns; with the generation prompt that
    /// opens the assistant's turn).
    /// </summary>
    /// <exception cref="LocalModelLoadException">The model's template could not be parsed at load.</exception>
    /// <exception cref="ChatTemplateException">The template refused the conversation (e.g. it allows no system turn).</exception>
    public string RenderChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var template = _template ?? throw new LocalModelLoadException(Path, _templateProblem!);
        return template.Render(messages, ChatTemplateOptions.For(Tokenizer, addGenerationPrompt));
    }

    /// <summary>
    /// The token ids of a conversation as they are fed to the model: the rendered template, its special tokens parsed,
    /// BOS added as the file asks (<c>add_bos_token</c>) unless the template already writes it, so it is never doubled.
    /// </summary>
    /// <exception cref="LocalModelLoadException">The model's template could not be parsed at load.</exception>
    /// <exception cref="ChatTemplateException">The template refused the conversation.</exception>
    public int[] EncodeChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true) =>
        EncodeRendered(RenderChat(messages, addGenerationPrompt));

    /// <summary>
    /// The token ids of a rendered template: special tokens parsed; BOS as the file asks unless the text starts with the BOS
    /// token's text (templates that write <c>bos_token</c> themselves), as llama.cpp's chat code strips it.
    /// </summary>
    public int[] EncodeRendered(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Tokenizer.AddBos && Tokenizer.BosTokenId is { } bos && Tokenizer.GetTokenText(bos) is { Length: > 0 } bosText
            && text.StartsWith(bosText, StringComparison.Ordinal))
        {
            text = text[bosText.Length..];
        }

        return Tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
    }

    /// <summary>
    /// The token ids of raw text, fed as is (no template): BOS as the file's <c>add_bos_token</c> says, special-token texts
    /// parsed into their tokens (as <c>llama-cli</c> does with a prompt).
    /// </summary>
    public int[] EncodeRaw(string text) => Tokenizer.Encode(text, addSpecial: true, parseSpecial: true);

    /// <summary>A short description: architecture, parameters, weight type, context, where the template comes from.</summary>
    public string Describe()
    {
        var info = Model.Info;
        var template = TemplateSource switch
        {
            ChatTemplateSource.File => "the file's chat template",
            ChatTemplateSource.Options => "the configured chat template",
            _ => "ChatML (the file has no chat template)",
        };
        var storage = Model.WeightsInMemory ? "in memory" : "memory-mapped";
        return $"{info.Architecture}, {FormatCount(info.ParameterCount)} parameters, {FormatBytes(info.WeightBytes)} of weights ({storage}), "
            + $"context {ContextSize}, {Model.ThreadCount} threads, {template}";
    }

    /// <summary>Unmaps the model; waits for a running forward pass.</summary>
    public void Dispose() => Model.Dispose();

    /// <summary>Bytes for people: "660 KiB", "4.5 MiB", "412 MiB", "1.1 GiB".</summary>
    public static string FormatBytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.0} GiB",
        >= 100L << 20 => $"{bytes / (double)(1L << 20):0} MiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        _ => $"{Math.Ceiling(bytes / 1024.0):0} KiB",
    };

    private static string FormatCount(long count) => count switch
    {
        >= 1_000_000_000 => $"{count / 1e9:0.#}B",
        >= 1_000_000 => $"{count / 1e6:0.#}M",
        >= 1_000 => $"{count / 1e3:0.#}K",
        _ => count.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private static string CheckPath(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new LocalModelLoadException(string.Empty, "no model file is given. Give the path of a .gguf file");
        }

        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new LocalModelLoadException(full, "is a directory, not a model file. Give the path of the .gguf file inside it");
        }

        if (!File.Exists(full))
        {
            throw new LocalModelLoadException(full, System.IO.Path.IsPathRooted(path)
                ? "does not exist. Check the path"
                : $"does not exist. Check the path (relative paths start from {Directory.GetCurrentDirectory()})");
        }

        return full;
    }

    /// <summary>One sentence (what is wrong, what to do) for a failure to open or load the file; null for unexpected exceptions.</summary>
    private static string? Describe(string path, Exception ex) => ex switch
    {
        GgufFormatException format => $"is not a usable GGUF file: {Trim(format.Problem)}. Download it again (an interrupted download leaves a truncated file) or convert the model with llama.cpp's convert_hf_to_gguf.py",
        ModelLoadException load => $"cannot be run by Sluice's engine: {Trim(load.Problem)}. Use a GGUF of a llama, qwen2 or qwen3 model with F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K weights (e.g. a Q4_K_M or Q8_0 file)",
        UnauthorizedAccessException => "cannot be read: permission denied. Make it readable by this user (chmod a+r) or run Sluice as its owner",
        FileNotFoundException or DirectoryNotFoundException => "does not exist. Check the path",
        IOException io => $"cannot be read: {Trim(io.Message)}. Check the file and the disk",
        PlatformNotSupportedException platform => $"cannot be read on this machine: {Trim(platform.Message)}",
        ArgumentOutOfRangeException range when range.ParamName == "options" => $"cannot be loaded with these options: {Trim(range.Message)}",
        _ => null,
    };

    private static string Trim(string message) => message.Trim().TrimEnd('.');
}

/// <summary>A local model file cannot be used. The message is one line: the path, what is wrong, what to do.</summary>
public sealed class LocalModelLoadException : Exception
{
    /// <summary>Creates the exception; the message is "'path' problem." (the problem without the path).</summary>
    public LocalModelLoadException(string path, string problem, Exception? innerException = null)
        : base(Format(path, problem), innerException)
    {
        FilePath = path;
        Problem = problem;
    }

    /// <summary>The model file (full path; empty when none was given).</summary>
    public string FilePath { get; }

    /// <summary>What is wrong and what to do, without the path.</summary>
    public string Problem { get; }

    private static string Format(string path, string problem)
    {
        var text = path.Length == 0 ? problem : $"model file '{path}' {problem}";
        text = text.Replace('\n', ' ').Replace('\r', ' ').Trim();
        return text.EndsWith('.') ? text : text + ".";
    }
}

/// <summary>Where a local model's chat template comes from.</summary>
public enum ChatTemplateSource
{
    /// <summary>The file's <c>tokenizer.chat_template</c>.</summary>
    File,

    /// <summary>The options (<see cref="LocalChatModelOptions.ChatTemplate"/>).</summary>
    Options,

    /// <summary>None was given: <see cref="LocalChatModel.ChatMLTemplate"/>.</summary>
    ChatMLFallback,
}
