using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Tests;

public sealed class ChatRequestParserTests
{
    private const string User = """{"role":"user","content":"Hi"}""";

    public static TheoryData<string, string?, string> InvalidBodies() => new()
    {
        // Body shape.
        { "", null, "invalid_json" },
        { "{not json", null, "invalid_json" },
        { "{\"messages\": [}", null, "invalid_json" },
        { "[]", null, "invalid_type" },
        { "\"hello\"", null, "invalid_type" },
        { "42", null, "invalid_type" },
        { "null", null, "invalid_type" },

        // messages / prompt.
        { "{}", "messages", "missing_required_parameter" },
        { "{\"model\":\"m\"}", "messages", "missing_required_parameter" },
        { "{\"messages\":null}", "messages", "missing_required_parameter" },
        { $"{{\"messages\":[{User}],\"prompt\":\"x\"}}", "prompt", "invalid_value" },
        { "{\"prompt\":\"\"}", "prompt", "empty_value" },
        { "{\"prompt\":\"  \\n \"}", "prompt", "empty_value" },
        { "{\"prompt\":5}", "prompt", "invalid_type" },
        { "{\"prompt\":[\"a\"]}", "prompt", "invalid_type" },
        { "{\"messages\":\"Hi\"}", "messages", "invalid_type" },
        { "{\"messages\":{}}", "messages", "invalid_type" },
        { "{\"messages\":[]}", "messages", "empty_array" },
        { "{\"messages\":[5]}", "messages[0]", "invalid_type" },
        { $"{{\"messages\":[{User},\"text\"]}}", "messages[1]", "invalid_type" },
        { $"{{\"messages\":[{User},{{\"content\":\"x\"}}]}}", "messages[1].role", "missing_required_parameter" },
        { "{\"messages\":[{\"role\":null,\"content\":\"x\"}]}", "messages[0].role", "missing_required_parameter" },
        { "{\"messages\":[{\"role\":1,\"content\":\"x\"}]}", "messages[0].role", "invalid_type" },
        { "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0].role", "invalid_value" },
        { "{\"messages\":[{\"role\":\"User\",\"content\":\"x\"}]}", "messages[0].role", "invalid_value" },
        { "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", "missing_required_parameter" },
        { "{\"messages\":[{\"role\":\"assistant\",\"content\":null}]}", "messages[0].content", "missing_required_parameter" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", "invalid_type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":{\"text\":\"x\"}}]}", "messages[0].content", "invalid_type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}", "messages[0].content[0]", "invalid_type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}", "messages[0].content[0].image_url.url", "invalid_value" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"input_audio\"}]}]}", "messages[0].content[1].type", "unsupported_value" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", "messages[0].content[0].type", "unsupported_value" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":5,\"text\":\"a\"}]}]}", "messages[0].content[0].type", "invalid_type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0].text", "missing_required_parameter" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":7}]}]}", "messages[0].content[0].text", "invalid_type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":5}]}", "messages[0].name", "invalid_type" },
        { $"{{\"messages\":[{User},{{\"role\":\"tool\",\"content\":\"42\"}}]}}", "messages[1].tool_call_id", "missing_required_parameter" },
        { $"{{\"messages\":[{User},{{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":5}}]}}", "messages[1].tool_call_id", "invalid_type" },
        { "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":\"x\"}]}", "messages[0].tool_calls", "invalid_type" },
        { "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\"}]}]}", "messages[0].tool_calls[0]", "invalid_type" },
        { "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":1}}]}]}", "messages[0].tool_calls[0].function.name", "invalid_type" },
        { "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]}", "messages[0].tool_calls[0].function.arguments", "invalid_type" },

        // Scalars.
        { $"{{\"model\":5,\"messages\":[{User}]}}", "model", "invalid_type" },
        { $"{{\"messages\":[{User}],\"user\":5}}", "user", "invalid_type" },
        { $"{{\"messages\":[{User}],\"n\":129}}", "n", "invalid_value" },
        { $"{{\"messages\":[{User}],\"n\":0}}", "n", "invalid_value" },
        { $"{{\"messages\":[{User}],\"n\":\"1\"}}", "n", "invalid_type" },
        { $"{{\"messages\":[{User}],\"n\":1.5}}", "n", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stream\":\"true\"}}", "stream", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stream\":1}}", "stream", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stream_options\":true}}", "stream_options", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stream_options\":{{\"include_usage\":\"yes\"}}}}", "stream_options.include_usage", "invalid_type" },
        { $"{{\"messages\":[{User}],\"max_tokens\":0}}", "max_tokens", "invalid_value" },
        { $"{{\"messages\":[{User}],\"max_tokens\":-3}}", "max_tokens", "invalid_value" },
        { $"{{\"messages\":[{User}],\"max_tokens\":\"10\"}}", "max_tokens", "invalid_type" },
        { $"{{\"messages\":[{User}],\"max_tokens\":1.5}}", "max_tokens", "invalid_type" },
        { $"{{\"messages\":[{User}],\"max_tokens\":99999999999}}", "max_tokens", "invalid_type" },
        { $"{{\"messages\":[{User}],\"max_completion_tokens\":0}}", "max_completion_tokens", "invalid_value" },
        { $"{{\"messages\":[{User}],\"max_completion_tokens\":0,\"max_tokens\":10}}", "max_completion_tokens", "invalid_value" },
        { $"{{\"messages\":[{User}],\"max_completion_tokens\":true}}", "max_completion_tokens", "invalid_type" },
        { $"{{\"messages\":[{User}],\"temperature\":2.01}}", "temperature", "invalid_value" },
        { $"{{\"messages\":[{User}],\"temperature\":-0.1}}", "temperature", "invalid_value" },
        { $"{{\"messages\":[{User}],\"temperature\":\"hot\"}}", "temperature", "invalid_type" },
        { $"{{\"messages\":[{User}],\"temperature\":1e400}}", "temperature", "invalid_value" },
        { $"{{\"messages\":[{User}],\"top_p\":1.5}}", "top_p", "invalid_value" },
        { $"{{\"messages\":[{User}],\"top_p\":-1}}", "top_p", "invalid_value" },
        { $"{{\"messages\":[{User}],\"top_p\":[]}}", "top_p", "invalid_type" },
        { $"{{\"messages\":[{User}],\"top_p\":-1e999}}", "top_p", "invalid_value" },
        { $"{{\"messages\":[{User}],\"seed\":\"7\"}}", "seed", "invalid_type" },
        { $"{{\"messages\":[{User}],\"seed\":1.5}}", "seed", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stop\":5}}", "stop", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stop\":[\"a\",1]}}", "stop", "invalid_type" },
        { $"{{\"messages\":[{User}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}}", "stop", "invalid_value" },

        // Tools.
        { $"{{\"messages\":[{User}],\"tool_choice\":\"sometimes\"}}", "tool_choice", "invalid_value" },
        { $"{{\"messages\":[{User}],\"tool_choice\":\"Auto\"}}", "tool_choice", "invalid_value" },
        { $"{{\"messages\":[{User}],\"tool_choice\":5}}", "tool_choice", "invalid_type" },
        { $"{{\"messages\":[{User}],\"tool_choice\":[\"auto\"]}}", "tool_choice", "invalid_type" },
        { $"{{\"messages\":[{User}],\"tools\":{{}}}}", "tools", "invalid_type" },
        { $"{{\"messages\":[{User}],\"tools\":[5]}}", "tools[0]", "invalid_type" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"retrieval\"}}]}}", "tools[0].type", "invalid_value" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"function\":{{\"name\":\"f\"}}}}]}}", "tools[0].type", "invalid_value" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\"}}]}}", "tools[0].function", "missing_required_parameter" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\",\"function\":\"f\"}}]}}", "tools[0].function", "missing_required_parameter" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\",\"function\":{{}}}}]}}", "tools[0].function.name", "missing_required_parameter" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\",\"function\":{{\"name\":\"\"}}}}]}}", "tools[0].function.name", "missing_required_parameter" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\",\"function\":{{\"name\":3}}}}]}}", "tools[0].function.name", "invalid_type" },
        { $"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\",\"function\":{{\"name\":\"a\"}}}},{{\"type\":\"function\",\"function\":{{\"name\":\"b\",\"description\":1}}}}]}}", "tools[1].function.description", "invalid_type" },

        // Metadata.
        { $"{{\"messages\":[{User}],\"metadata\":[]}}", "metadata", "invalid_type" },
        { $"{{\"messages\":[{User}],\"metadata\":\"a=b\"}}", "metadata", "invalid_type" },
        { $"{{\"messages\":[{User}],\"metadata\":{{\"k\":{{\"nested\":1}}}}}}", "metadata.k", "invalid_type" },
        { $"{{\"messages\":[{User}],\"metadata\":{{\"k\":[\"a\"]}}}}", "metadata.k", "invalid_type" },
        { $"{{\"messages\":[{User}],\"metadata\":{{\"k\":null}}}}", "metadata.k", "invalid_type" },
    };

    [Theory]
    [MemberData(nameof(InvalidBodies))]
    public void Invalid_request_is_a_400_naming_its_parameter_and_code(string body, string? param, string code)
    {
        var ex = Assert.Throws<ChatException>(() => Parse(body));

        Assert.Equal(400, ex.StatusCode);
        Assert.Equal(ErrorTypes.InvalidRequest, ex.Error.Type);
        Assert.Equal(param, ex.Error.Param);
        Assert.Equal(code, ex.Error.Code);
        Assert.False(string.IsNullOrWhiteSpace(ex.Error.Message));
        Assert.Equal(ex.Error.Message, ex.Message);
        if (param is not null)
        {
            // The parameter is named in the sentence, not only in the param field.
            Assert.Contains(param, ex.Error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Malformed_json_keeps_the_parser_error_as_inner_exception()
    {
        var ex = Assert.Throws<ChatException>(() => Parse("{\"a\":"));

        Assert.IsAssignableFrom<JsonException>(ex.InnerException);
        Assert.Contains("not valid JSON", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Too_deep_json_is_rejected_as_invalid_json()
    {
        var body = "{\"messages\":" + new string('[', 100) + new string(']', 100) + "}";

        var ex = Assert.Throws<ChatException>(() => Parse(body));

        Assert.Equal("invalid_json", ex.Error.Code);
    }

    [Fact]
    public void Prompt_over_the_limit_names_prompt_and_the_limit()
    {
        var limits = new ChatRequestLimits { MaxPromptChars = 10 };

        var ok = ChatRequestParser.Parse(Encoding.UTF8.GetBytes("{\"prompt\":\"0123456789\"}"), limits);
        var ex = Assert.Throws<ChatException>(() => ChatRequestParser.Parse(Encoding.UTF8.GetBytes("{\"prompt\":\"0123456789A\"}"), limits));

        Assert.Equal("0123456789", ok.LastUserText);
        Assert.Equal("prompt", ex.Error.Param);
        Assert.Equal("string_above_max_length", ex.Error.Code);
        Assert.Contains("10", ex.Message, StringComparison.Ordinal);
        Assert.Contains("11", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Default_prompt_limit_is_5000_characters()
    {
        var ok = Parse($"{{\"prompt\":\"{new string('a', 5_000)}\"}}");
        var ex = Assert.Throws<ChatException>(() => Parse($"{{\"prompt\":\"{new string('a', 5_001)}\"}}"));

        Assert.Single(ok.Messages);
        Assert.Equal("string_above_max_length", ex.Error.Code);
    }

    [Fact]
    public void Too_many_messages_names_messages()
    {
        var limits = new ChatRequestLimits { MaxMessages = 2 };
        var body = $"{{\"messages\":[{User},{User},{User}]}}";

        var ex = Assert.Throws<ChatException>(() => ChatRequestParser.Parse(Encoding.UTF8.GetBytes(body), limits));

        Assert.Equal("messages", ex.Error.Param);
        Assert.Equal("array_above_max_length", ex.Error.Code);
    }

    [Fact]
    public void Prompt_shorthand_becomes_one_user_message()
    {
        var request = Parse("{\"model\":\"sim-fast\",\"prompt\":\"Tell me about Lisbon\",\"stream\":true}");

        var message = Assert.Single(request.Messages);
        Assert.Equal(ChatRoles.User, message.Role);
        Assert.Equal("Tell me about Lisbon", message.Content);
        Assert.Equal("sim-fast", request.Model);
        Assert.True(request.Stream);
        Assert.Equal("Tell me about Lisbon", request.LastUserText);
    }

    [Fact]
    public void Minimal_request_has_defaults()
    {
        var request = Parse($"{{\"messages\":[{User}]}}");

        Assert.Equal(string.Empty, request.Model);
        Assert.False(request.Stream);
        Assert.False(request.IncludeUsage);
        Assert.Null(request.MaxTokens);
        Assert.Null(request.Temperature);
        Assert.Null(request.TopP);
        Assert.Null(request.Stop);
        Assert.Null(request.Seed);
        Assert.Null(request.User);
        Assert.Null(request.Tools);
        Assert.Null(request.ToolsJson);
        Assert.Null(request.ToolChoice);
        Assert.Null(request.ForcedToolName);
        Assert.Null(request.Metadata);
    }

    [Fact]
    public void Nulls_count_as_absent()
    {
        var request = Parse($$"""
            {"messages":[{{User}}],"prompt":null,"n":null,"stream":null,"stream_options":null,"max_tokens":null,
             "temperature":null,"top_p":null,"seed":null,"stop":null,"tools":null,"tool_choice":null,"metadata":null,"user":null}
            """);

        Assert.Single(request.Messages);
        Assert.Null(request.MaxTokens);
        Assert.Null(request.Tools);
    }

    [Fact]
    public void Full_request_parses_every_field()
    {
        var request = Parse("""
            {
              "model": "sim-realistic",
              "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use metric units."},
                {"role": "user", "name": "ana", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                  {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
                {"role": "user", "content": "Thanks!"}
              ],
              "stream": true,
              "stream_options": {"include_usage": true},
              "n": 1,
              "max_tokens": 50,
              "max_completion_tokens": 70,
              "temperature": 0.7,
              "top_p": 0.9,
              "seed": 123456789012,
              "stop": ["END", "", "STOP"],
              "user": "user-42",
              "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                  "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "no_params"}}
              ],
              "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
              "metadata": {"trace": "abc", "sim_fail_status": 429, "flag": true},
              "unknown_field": {"ignored": true}
            }
            """);

        Assert.Equal("sim-realistic", request.Model);
        Assert.Equal(6, request.Messages.Count);
        Assert.Equal(["system", "developer", "user", "assistant", "tool", "user"], request.Messages.Select(m => m.Role));
        Assert.Equal("Weather in Paris?", request.Messages[2].Content);
        Assert.Equal("ana", request.Messages[2].Name);

        var assistant = request.Messages[3];
        Assert.Null(assistant.Content);
        var call = Assert.Single(assistant.ToolCalls!);
        Assert.Equal(new ToolCall("call_1", "get_weather", "{\"location\":\"Paris\"}"), call);

        Assert.Equal("call_1", request.Messages[4].ToolCallId);
        Assert.Equal("18 C and sunny", request.Messages[4].Content);
        Assert.Equal("Thanks!", request.LastUserText);

        Assert.True(request.Stream);
        Assert.True(request.IncludeUsage);
        Assert.Equal(70, request.MaxTokens);
        Assert.Equal(0.7, request.Temperature);
        Assert.Equal(0.9, request.TopP);
        Assert.Equal(123456789012L, request.Seed);
        Assert.Equal(["END", "STOP"], request.Stop!);
        Assert.Equal("user-42", request.User);

        Assert.Equal(2, request.Tools!.Count);
        Assert.Equal("get_weather", request.Tools[0].Name);
        Assert.Equal("Current weather", request.Tools[0].Description);
        Assert.Equal("string", request.Tools[0].Parameters!.Value.GetProperty("properties").GetProperty("location").GetProperty("type").GetString());
        Assert.Equal("no_params", request.Tools[1].Name);
        Assert.Null(request.Tools[1].Parameters);
        Assert.Equal(2, request.ToolsJson!.Value.GetArrayLength());
        Assert.Equal(JsonValueKind.Object, request.ToolChoice!.Value.ValueKind);
        Assert.Equal("get_weather", request.ForcedToolName);

        Assert.Equal("abc", request.Metadata!["trace"]);
        // Numbers and booleans are accepted as their JSON text, so fault switches can be written naturally.
        Assert.Equal("429", request.Metadata["sim_fail_status"]);
        Assert.Equal("true", request.Metadata["flag"]);
    }

    [Fact]
    public void Parsed_json_elements_outlive_the_document()
    {
        // The parser disposes its JsonDocument; the elements it keeps must be clones.
        var request = Parse($"{{\"messages\":[{User}],\"tools\":[{{\"type\":\"function\",\"function\":{{\"name\":\"f\",\"parameters\":{{\"type\":\"object\"}}}}}}],\"tool_choice\":\"required\"}}");

        Assert.Equal("object", request.Tools![0].Parameters!.Value.GetProperty("type").GetString());
        Assert.Equal("required", request.ToolChoice!.Value.GetString());
        Assert.Equal("f", request.ToolsJson!.Value[0].GetProperty("function").GetProperty("name").GetString());
    }

    [Theory]
    [InlineData("\"max_tokens\":30", 30)]
    [InlineData("\"max_completion_tokens\":40", 40)]
    [InlineData("\"max_tokens\":30,\"max_completion_tokens\":40", 40)]
    [InlineData("\"max_tokens\":null,\"max_completion_tokens\":40", 40)]
    [InlineData("\"max_tokens\":30,\"max_completion_tokens\":null", 30)]
    public void Max_completion_tokens_wins_over_max_tokens(string fields, int expected)
    {
        Assert.Equal(expected, Parse($"{{\"messages\":[{User}],{fields}}}").MaxTokens);
    }

    [Theory]
    [InlineData("\"auto\"")]
    [InlineData("\"none\"")]
    [InlineData("\"required\"")]
    public void Tool_choice_strings_are_accepted(string choice)
    {
        var request = Parse($"{{\"messages\":[{User}],\"tool_choice\":{choice}}}");

        Assert.Equal(choice.Trim('"'), request.ToolChoice!.Value.GetString());
        Assert.Null(request.ForcedToolName);
    }

    [Theory]
    [InlineData("\"stop\":\"END\"", new[] { "END" })]
    [InlineData("\"stop\":\"\"", null)]
    [InlineData("\"stop\":[]", null)]
    [InlineData("\"stop\":[\"\",\"\"]", null)]
    [InlineData("\"stop\":[\"a\",\"b\",\"c\",\"d\"]", new[] { "a", "b", "c", "d" })]
    public void Stop_accepts_a_string_or_up_to_four(string field, string[]? expected)
    {
        var stop = Parse($"{{\"messages\":[{User}],{field}}}").Stop;

        if (expected is null)
        {
            Assert.Null(stop);
        }
        else
        {
            Assert.Equal(expected, stop!);
        }
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(2.0)]
    public void Temperature_bounds_are_inclusive(double value)
    {
        Assert.Equal(value, Parse($"{{\"messages\":[{User}],\"temperature\":{value:0.0},\"top_p\":{value / 2:0.0}}}").Temperature);
    }

    [Fact]
    public void Assistant_message_with_only_tool_calls_has_null_content_and_default_arguments()
    {
        var request = Parse("""{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]}""");

        var call = Assert.Single(request.Messages[0].ToolCalls!);
        Assert.Equal(new ToolCall(string.Empty, "f", "{}"), call);
        Assert.Null(request.Messages[0].Content);
    }

    [Fact]
    public void Tool_calls_on_non_assistant_messages_are_not_parsed()
    {
        var request = Parse("""{"messages":[{"role":"user","content":"x","tool_calls":"garbage"}]}""");

        Assert.Null(request.Messages[0].ToolCalls);
    }

    [Fact]
    public void Empty_content_parts_give_empty_text()
    {
        var request = Parse("""{"messages":[{"role":"user","content":[]}]}""");

        Assert.Equal(string.Empty, request.Messages[0].Content);
    }

    [Fact]
    public void Stream_options_without_include_usage_is_false()
    {
        Assert.False(Parse($"{{\"messages\":[{User}],\"stream\":true,\"stream_options\":{{}}}}").IncludeUsage);
        Assert.False(Parse($"{{\"messages\":[{User}],\"stream_options\":{{\"include_usage\":false}}}}").IncludeUsage);
    }

    [Fact]
    public void Last_user_text_is_empty_without_user_messages()
    {
        Assert.Equal(string.Empty, Parse("""{"messages":[{"role":"system","content":"x"}]}""").LastUserText);
    }

    [Fact]
    public void Non_ascii_and_escaped_text_is_decoded()
    {
        var request = Parse("{\"prompt\":\"Z\\u00fcrich \\\"quoted\\\" 東京 🚀\"}");

        Assert.Equal("Zürich \"quoted\" 東京 🚀", request.LastUserText);
    }

    private static ChatRequest Parse(string body) => ChatRequestParser.Parse(Encoding.UTF8.GetBytes(body));
}
