using System.Text.Json.Nodes;
using Sluice.Engine.Templates;
using Sluice.Engine.Tests.Reference;
using Xunit.Abstractions;

namespace Sluice.Engine.Tests.Templates;

/// <summary>
/// Rendered prompts equal llama.cpp's: each template is rendered by llama.cpp's own Jinja engine (node-llama-cpp's native
/// AddonJinjaRenderer over common/jinja, with its chat settings trim_blocks and lstrip_blocks) on the same variables.
/// Hugging Face's @huggingface/jinja renders them too; where it disagrees with llama.cpp the test shows it.
/// </summary>
public sealed class ChatTemplateParityTests(ITestOutputHelper output)
{
    private sealed record Case(string Name, string Template, List<ChatMessage> Messages, bool AddGenerationPrompt, string Bos, string Eos,
        bool? EnableThinking = null, JsonNode? Tools = null);

    private static List<ChatMessage> Msgs(params (string Role, string Content)[] turns) => [.. turns.Select(t => new ChatMessage(t.Role, t.Content))];

    private static IEnumerable<Case> Cases()
    {
        var single = Msgs(("user", "Hello!"));
        var withSystem = Msgs(("system", "You are a helpful assistant."), ("user", "What is 2+2?"));
        var multi = Msgs(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a joke."));
        var noSystem = Msgs(("user", "  Leading and trailing spaces  "), ("assistant", "\nNewlines around\n"), ("user", "ÜñíçødÉ 😀 \"quotes\" 'single' <tags>"));
        var thinking = Msgs(("user", "Solve x+1=2"), ("assistant", "<think>\nx = 2 - 1\n</think>\n\nx = 1"), ("user", "And x+2=5?"));
        var thinkingLast = Msgs(("user", "Solve x+1=2"), ("assistant", "<think>\nsimple\n</think>\n\nx = 1"));
        var badOrder = Msgs(("user", "a"), ("user", "b"));
        var templates = new (string Name, string Template, string Bos, string Eos)[]
        {
            ("llama2", KnownTemplates.Llama2, "<s>", "</s>"),
            ("llama3-lenml", KnownTemplates.Llama3Lenml, "<|begin_of_text|>", "<|end_of_text|>"),
            ("llama3", KnownTemplates.Llama3Official, "<|begin_of_text|>", "<|end_of_text|>"),
            ("qwen3", KnownTemplates.Qwen3Lenml, "<|endoftext|>", "<|im_end|>"),
            ("qwen2.5", KnownTemplates.Qwen25, "<|endoftext|>", "<|im_end|>"),
            ("zephyr", KnownTemplates.Zephyr, "<s>", "</s>"),
            ("smollm2", KnownTemplates.SmolLm2, "<|im_start|>", "<|im_end|>"),
            ("features", KnownTemplates.Features, "<s>", "</s>"),
        };
        foreach (var (name, template, bos, eos) in templates)
        {
            foreach (var (convName, conv) in new[] { ("single", single), ("system", withSystem), ("multi", multi), ("spaces", noSystem) })
            {
                if ((name == "llama2" || name == "features") && convName == "spaces")
                {
                    continue; // exercised separately below (roles alternate, so it is valid, but keep the list short)
                }
                foreach (var gen in new[] { true, false })
                {
                    yield return new Case($"{name}/{convName}/gen={gen}", template, conv, gen, bos, eos);
                }
            }
        }
        yield return new Case("llama2/spaces", KnownTemplates.Llama2, noSystem, true, "<s>", "</s>");
        yield return new Case("llama2/roles-must-alternate", KnownTemplates.Llama2, badOrder, true, "<s>", "</s>");
        yield return new Case("qwen3/thinking-history", KnownTemplates.Qwen3Lenml, thinking, true, "", "<|im_end|>");
        yield return new Case("qwen3/thinking-last", KnownTemplates.Qwen3Lenml, thinkingLast, false, "", "<|im_end|>");
        yield return new Case("qwen3/enable_thinking=false", KnownTemplates.Qwen3Lenml, withSystem, true, "", "<|im_end|>", EnableThinking: false);
        yield return new Case("qwen3/enable_thinking=true", KnownTemplates.Qwen3Lenml, withSystem, true, "", "<|im_end|>", EnableThinking: true);
        yield return new Case("qwen3/reasoning_content", KnownTemplates.Qwen3Lenml,
            [new("user", "Q"), new("assistant", "A") { ReasoningContent = "because" }, new("user", "Q2")], true, "", "<|im_end|>");
        var tools = JsonNode.Parse("""[{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""");
        yield return new Case("qwen2.5/tools", KnownTemplates.Qwen25, withSystem, true, "", "<|im_end|>", Tools: tools);
        yield return new Case("qwen3/tools", KnownTemplates.Qwen3Lenml, single, true, "", "<|im_end|>", Tools: tools);
    }

    private static JsonObject Context(Case c)
    {
        var messages = new JsonArray();
        foreach (var m in c.Messages)
        {
            var o = new JsonObject { ["role"] = m.Role, ["content"] = m.Content };
            if (m.ReasoningContent is not null)
            {
                o["reasoning_content"] = m.ReasoningContent;
            }
            messages.Add(o);
        }
        var context = new JsonObject
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = c.AddGenerationPrompt,
            ["bos_token"] = c.Bos,
            ["eos_token"] = c.Eos,
        };
        if (c.EnableThinking is { } t)
        {
            context["enable_thinking"] = t;
        }
        if (c.Tools is not null)
        {
            context["tools"] = c.Tools.DeepClone();
        }
        return context;
    }

    [Fact]
    public void Rendered_prompts_equal_llama_cpp_for_every_family()
    {
        var cases = Cases().ToList();
        var input = new JsonObject
        {
            ["cases"] = new JsonArray([.. cases.Select(c => (JsonNode)new JsonObject { ["template"] = c.Template, ["context"] = Context(c) })]),
        };
        var results = NodeReference.RunNode("render-templates.mjs", input, TimeSpan.FromMinutes(2))["results"]!.AsArray();
        var failures = new List<string>();
        var hfDisagreements = 0;
        for (var i = 0; i < cases.Count; i++)
        {
            var c = cases[i];
            var llama = results[i]!["llama"]!;
            var hf = results[i]!["hf"]!;
            string? mine;
            string? myError = null;
            try
            {
                var template = new ChatTemplate(c.Template);
                mine = template.Render(c.Messages, new ChatTemplateOptions
                {
                    AddGenerationPrompt = c.AddGenerationPrompt,
                    BosToken = c.Bos,
                    EosToken = c.Eos,
                    EnableThinking = c.EnableThinking,
                    Variables = c.Tools is null ? null : new Dictionary<string, object?> { ["tools"] = c.Tools.DeepClone() },
                });
            }
            catch (ChatTemplateException e)
            {
                mine = null;
                myError = e.Message;
            }
            var expectedOk = (bool)llama["ok"]!;
            var expected = expectedOk ? (string)llama["text"]! : null;
            if ((bool)hf["ok"]! != expectedOk || (expectedOk && (string)hf["text"]! != expected))
            {
                hfDisagreements++;
                output.WriteLine($"note: {c.Name}: @huggingface/jinja differs from llama.cpp: {Show(hf)}");
            }
            if (!expectedOk)
            {
                // Only the template's own raise_exception is an expected failure: a template llama.cpp cannot render
                // proves nothing.
                Assert.True(c.Name.Contains("roles-must-alternate", StringComparison.Ordinal), $"{c.Name}: llama.cpp failed: {(string)llama["error"]!}");
                if (myError is null)
                {
                    failures.Add($"{c.Name}: llama.cpp fails ({(string)llama["error"]!}) but we rendered {Quote(mine!)}");
                }
                continue;
            }
            if (mine != expected)
            {
                failures.Add($"{c.Name}:\n  expected {Quote(expected!)}\n  got      {(mine is null ? "error: " + myError : Quote(mine))}");
            }
        }
        output.WriteLine($"{cases.Count} renderings compared with llama.cpp, {failures.Count} failures, {hfDisagreements} where @huggingface/jinja differs from llama.cpp");
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    private static string Show(JsonNode r) => (bool)r["ok"]! ? Quote((string)r["text"]!) : "error: " + (string)r["error"]!;

    private static string Quote(string s) => System.Text.Json.JsonSerializer.Serialize(s);
}
