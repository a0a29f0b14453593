using Sluice.Engine.Templates;
using Sluice.Engine.Tests.Reference;

namespace Sluice.Engine.Tests.Templates;

/// <summary>
/// Interpreter semantics where llama.cpp's engine departs from Jinja/Python (expected values are Python's, derived by hand),
/// clear errors for unsupported constructs, and each family's prompt written out by hand from its template.
/// </summary>
public sealed class ChatTemplateTests
{
    private static string Render(string template, Dictionary<string, object?>? vars = null) =>
        new ChatTemplate(template).Render(vars ?? []);

    [Theory]
    [InlineData("{{ 'a</t>b</t>c'.split('</t>')[-1] }}", "c")]
    [InlineData("{{ [1, 2, 3][-1] }}{{ [1, 2, 3][1:] }}{{ 'abc'[::-1] }}", "3[2, 3]cba")]
    [InlineData("{{ ['x', 1, none, true] }} {{ {'a': 'b'} }}", "['x', 1, None, True] {'a': 'b'}")]
    [InlineData("{{ -7 % 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 2 ** 10 }} {{ 1 / 4 }} {{ 3.0 }}", "2 3 -4 1024 0.25 3.0")]
    [InlineData("{{ 'a' ~ none ~ 1 }}", "aNone1")]
    [InlineData("{{ 'żółć😀' | length }} {{ 'żółć'[::-1] }} {{ 'żółć'[1] }}", "5 ćłóż ó")]
    [InlineData("{{ [1, 1, 2] | unique | list }} {{ 'b' > 'a' }} {{ 'Hello'.endswith(('x', 'lo')) }}", "[1, 2] True True")]
    [InlineData("{{ x.y }}|{{ x.y is defined }}|{{ x.get('y', 'd') }}", "|False|d")]
    [InlineData("{%- set ns = namespace(a=1) %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}{% set local = i %}{% endfor %}{{ ns.a }}{{ local is defined }}", "4False")]
    [InlineData("  {% if true %}\n    x\n  {% endif %}\ny", "    x\ny")]
    [InlineData("a  {%- if true -%}  b  {%- endif -%}  c", "abc")]
    [InlineData("{{ 'q\\'s' }}{{ \"\\n\" | length }}", "q's1")]
    public void Python_semantics(string template, string expected) =>
        Assert.Equal(expected, Render(template, new() { ["x"] = new Dictionary<string, object?>() }));

    [Theory]
    [InlineData("{% include 'other.j2' %}", "statement '{% include %}'")]
    [InlineData("{{ x | wibble }}", "filter 'wibble'")]
    [InlineData("{{ x is wobbly }}", "test 'wobbly'")]
    [InlineData("{{ 'a'.zfill(3) }}", "method 'zfill'")]
    [InlineData("{{ lipsum() }}", "function 'lipsum'")]
    [InlineData("{% for x in y recursive %}{% endfor %}", "recursive for loops")]
    public void Unsupported_constructs_fail_naming_the_construct(string template, string named)
    {
        var e = Assert.Throws<ChatTemplateException>(() => Render(template, new() { ["x"] = "v", ["y"] = new List<object?>() }));
        Assert.Contains("Unsupported Jinja construct", e.Message, StringComparison.Ordinal);
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Syntax_errors_give_the_line()
    {
        var e = Assert.Throws<ChatTemplateException>(() => new ChatTemplate("line one\n{% if x %}\nno end"));
        Assert.Contains("endif", e.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<ChatTemplateException>(() => new ChatTemplate("a\nb {{ 1 + }}"));
        Assert.Contains("line 2", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Raise_exception_is_reported_as_the_templates_own_error()
    {
        var e = Assert.Throws<ChatTemplateException>(() => new ChatTemplate(KnownTemplates.Llama2)
            .Render([new ChatMessage("user", "a"), new ChatMessage("user", "b")], new ChatTemplateOptions { BosToken = "<s>", EosToken = "</s>" }));
        Assert.True(e.RaisedByTemplate);
        Assert.Contains("Conversation roles must alternate", e.Message, StringComparison.Ordinal);
    }

    private static readonly ChatMessage[] Conversation =
        [new("system", "Be brief."), new("user", " Hi "), new("assistant", "Hello!"), new("user", "Joke?")];

    [Fact]
    public void Llama2_prompt()
    {
        var text = new ChatTemplate(KnownTemplates.Llama2).Render(Conversation, new ChatTemplateOptions { BosToken = "<s>", EosToken = "</s>" });
        // strip() applies to the system block and the user text together, so the user's own leading space survives.
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] Joke? [/INST]", text);
    }

    [Fact]
    public void Llama3_prompt()
    {
        var text = new ChatTemplate(KnownTemplates.Llama3Official).Render(Conversation,
            new ChatTemplateOptions { BosToken = "<|begin_of_text|>", EosToken = "<|end_of_text|>" });
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nJoke?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void Qwen3_prompt_thinks_by_default_and_not_when_disabled()
    {
        var template = new ChatTemplate(KnownTemplates.Qwen3Lenml);
        var messages = new[] { new ChatMessage("user", "2+2?"), new ChatMessage("assistant", "<think>\nadd\n</think>\n\n4"), new ChatMessage("user", "3+3?") };
        const string History = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n";
        Assert.Equal(History + "<|im_start|>assistant\n", template.Render(messages, new ChatTemplateOptions()));
        Assert.Equal(History + "<|im_start|>assistant\n<think>\n\n</think>\n\n",
            template.Render(messages, new ChatTemplateOptions { EnableThinking = false }));
    }

    [Fact]
    public void ChatML_and_Zephyr_prompts()
    {
        var messages = new[] { new ChatMessage("user", "Hi") };
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            new ChatTemplate(KnownTemplates.SmolLm2).Render(messages));
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            new ChatTemplate(KnownTemplates.Qwen25).Render(messages));
        // trim_blocks removes the newline after each block tag; the newlines inside the string literals stay.
        Assert.Equal("<|user|>\nHi</s>\n<|assistant|>\n",
            new ChatTemplate(KnownTemplates.Zephyr).Render(messages, new ChatTemplateOptions { EosToken = "</s>" }));
    }

    [Fact]
    public void Rendered_prompt_tokenizes_with_specials_into_control_tokens()
    {
        var tokenizer = TestVocabularies.Tokenizer("qwen3");
        var template = new ChatTemplate(TestVocabularies.Data("qwen3").ChatTemplate!);
        var prompt = template.Render([new ChatMessage("user", "Hi")], ChatTemplateOptions.For(tokenizer));
        var ids = tokenizer.Encode(prompt, addSpecial: true, parseSpecial: true);
        Assert.Equal(tokenizer.FindToken("<|im_start|>"), ids[0]);
        Assert.Single(ids, id => id == tokenizer.FindToken("<|im_end|>"));
        Assert.Equal(2, ids.Count(id => id == tokenizer.FindToken("<|im_start|>")));
    }
}
