using Sluice.Engine.Templates.Jinja;
using Sluice.Engine.Tokenization;

namespace Sluice.Engine.Templates;

/// <summary>One chat turn: a role (<c>system</c>, <c>user</c>, <c>assistant</c>, …) and its text.</summary>
/// <param name="Role">The role.</param>
/// <param name="Content">The text.</param>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>An assistant turn's reasoning, for templates that render it (Qwen3's <c>reasoning_content</c>).</summary>
    public string? ReasoningContent { get; init; }
}

/// <summary>Settings for one rendering of a chat template.</summary>
public sealed class ChatTemplateOptions
{
    /// <summary>Open an assistant turn at the end (<c>add_generation_prompt</c>); on by default, as for generation.</summary>
    public bool AddGenerationPrompt { get; init; } = true;

    /// <summary>The <c>bos_token</c> variable (the BOS token's text; empty when the model has none).</summary>
    public string BosToken { get; init; } = "";

    /// <summary>The <c>eos_token</c> variable.</summary>
    public string EosToken { get; init; } = "";

    /// <summary>
    /// Qwen3's <c>enable_thinking</c>. Null leaves it undefined, which such templates treat as thinking on; false asks for
    /// the empty think block that turns thinking off.
    /// </summary>
    public bool? EnableThinking { get; init; }

    /// <summary>Further template variables (strings, numbers, bools, lists, dictionaries or JSON nodes).</summary>
    public IReadOnlyDictionary<string, object?>? Variables { get; init; }

    /// <summary>Options whose <c>bos_token</c>/<c>eos_token</c> are the tokenizer's BOS and EOS texts.</summary>
    public static ChatTemplateOptions For(Tokenizer tokenizer, bool addGenerationPrompt = true, bool? enableThinking = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return new ChatTemplateOptions
        {
            AddGenerationPrompt = addGenerationPrompt,
            BosToken = tokenizer.BosTokenId is { } bos ? tokenizer.GetTokenText(bos) : "",
            EosToken = tokenizer.EosTokenId is { } eos ? tokenizer.GetTokenText(eos) : "",
            EnableThinking = enableThinking,
        };
    }
}

/// <summary>
/// A model's chat template (GGUF <c>tokenizer.chat_template</c>), parsed once and rendered by a small Jinja interpreter with
/// the settings Hugging Face and llama.cpp render chat templates with (trim_blocks, lstrip_blocks). It covers what the
/// Llama 2/3, Qwen2.5/3, Zephyr/TinyLlama and ChatML (SmolLM) templates use: if/elif/else, for (with loop.*, else, filters),
/// set (also blocks and namespace attributes), macros, break/continue, filters (trim, length, tojson, string, join, map,
/// selectattr, …), tests, string methods, slicing, dict items(), raise_exception, namespace. Anything else fails with a
/// <see cref="ChatTemplateException"/> naming the construct. Thread-safe: one instance can render concurrently.
/// </summary>
public sealed class ChatTemplate
{
    private readonly List<Node> _program;

    /// <summary>Parses a template.</summary>
    /// <exception cref="ChatTemplateException">A syntax error or an unsupported statement.</exception>
    public ChatTemplate(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Source = source;
        _program = JinjaParser.Parse(source);
    }

    /// <summary>The template text.</summary>
    public string Source { get; }

    /// <summary>Renders a conversation into the prompt text (to be tokenized with specials parsed, without adding BOS again
    /// when the template writes <c>bos_token</c>).</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, ChatTemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        options ??= new ChatTemplateOptions();
        var list = new List<object?>(messages.Count);
        foreach (var m in messages)
        {
            var d = new JinjaDict();
            d["role"] = m.Role;
            d["content"] = m.Content;
            if (m.ReasoningContent is not null)
            {
                d["reasoning_content"] = m.ReasoningContent;
            }
            list.Add(d);
        }
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = list,
            ["add_generation_prompt"] = options.AddGenerationPrompt,
            ["bos_token"] = options.BosToken,
            ["eos_token"] = options.EosToken,
        };
        if (options.EnableThinking is { } thinking)
        {
            variables["enable_thinking"] = thinking;
        }
        if (options.Variables is not null)
        {
            foreach (var (k, v) in options.Variables)
            {
                variables[k] = Values.FromHost(v);
            }
        }
        return new JinjaInterpreter(variables).Render(_program);
    }

    /// <summary>Renders with arbitrary variables (host values: strings, numbers, bools, lists, dictionaries, JSON nodes).</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var globals = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in variables)
        {
            globals[k] = Values.FromHost(v);
        }
        return new JinjaInterpreter(globals).Render(_program);
    }
}
