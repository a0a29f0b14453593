using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.Tests;

/// <summary>Anthropic Messages inbound: request parsing, the SSE writer, the message writer and error mapping.</summary>
public sealed class AnthropicProtocolTests
{
    private static ChatRequest Parse(string json, bool requireMaxTokens = true) =>
        AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes(json), requireMaxTokens: requireMaxTokens);

    private static ChatException ParseFails(string json) =>
        Assert.Throws<ChatException>(() => Parse(json));

    [Fact]
    public void Parses_system_blocks_string_content_and_sampling_fields()
    {
        var request = Parse("""
            {"model": "sim-fast", "max_tokens": 64, "stream": true,
             "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units.", "cache_control": {"type": "ephemeral"}}],
             "messages": [{"role": "user", "content": "How far is the moon?"}],
             "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END", ""],
             "metadata": {"user_id": "u-42", "sim_fail_after_tokens": "3"}}
            """);

        Assert.Equal("sim-fast", request.Model);
        Assert.Equal(64, request.MaxTokens);
        Assert.True(request.Stream);
        Assert.Equal(2, request.Messages.Count);
        Assert.Equal(new ChatMessage(ChatRoles.System, "Be brief.\nUse metric units."), request.Messages[0]);
        Assert.Equal(new ChatMessage(ChatRoles.User, "How far is the moon?"), request.Messages[1]);
        Assert.Equal(0.5, request.Temperature);
        Assert.Equal(0.9, request.TopP);
        Assert.Equal(40, request.TopK);
        Assert.Equal(["END"], request.Stop!);
        Assert.Equal("u-42", request.User);
        Assert.Equal("3", request.Metadata!["sim_fail_after_tokens"]);
        Assert.True(request.RawBody.IsEmpty);
    }

    [Fact]
    public void Maps_tool_use_and_tool_result_blocks_to_tool_calls_and_tool_messages()
    {
        var request = Parse("""
            {"model": "m", "max_tokens": 10, "messages": [
              {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
              {"role": "assistant", "content": [
                 {"type": "thinking", "thinking": "the user wants weather", "signature": "x"},
                 {"type": "text", "text": "Let me check."},
                 {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
              {"role": "user", "content": [
                 {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18 C"}]},
                 {"type": "text", "text": "And tomorrow?"}]},
              {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "city unknown", "is_error": true}]}]}
            """);

        var messages = request.Messages;
        Assert.Equal(6, messages.Count);
        Assert.Equal(ChatRoles.Assistant, messages[1].Role);
        Assert.Equal("Let me check.", messages[1].Content);
        var call = Assert.Single(messages[1].ToolCalls!);
        Assert.Equal(("toolu_1", "get_weather"), (call.Id, call.Name));
        Assert.Equal("Paris", JsonDocument.Parse(call.Arguments).RootElement.GetProperty("city").GetString());

        // The result answers the previous turn, so it comes before the new question.
        Assert.Equal(new ChatMessage(ChatRoles.Tool, "18 C") { ToolCallId = "toolu_1" }, messages[2]);
        Assert.Equal(new ChatMessage(ChatRoles.User, "And tomorrow?"), messages[3]);
        Assert.Null(messages[4].Content);
        Assert.Equal("{}", messages[4].ToolCalls![0].Arguments);
        Assert.Equal(new ChatMessage(ChatRoles.Tool, "Error: city unknown") { ToolCallId = "toolu_2" }, messages[5]);
    }

    [Fact]
    public void Tools_and_tool_choice_become_the_openai_shapes_backends_read()
    {
        var request = Parse("""
            {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
             "tools": [{"name": "get_weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
             "tool_choice": {"type": "tool", "name": "get_weather"}}
            """);

        var tool = Assert.Single(request.Tools!);
        Assert.Equal("get_weather", tool.Name);
        Assert.Equal("Weather now", tool.Description);
        var openAiTool = request.ToolsJson!.Value[0];
        Assert.Equal("function", openAiTool.GetProperty("type").GetString());
        Assert.Equal("get_weather", openAiTool.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("object", openAiTool.GetProperty("function").GetProperty("parameters").GetProperty("type").GetString());
        Assert.Equal("get_weather", request.ForcedToolName);
    }

    [Theory]
    [InlineData("auto", "auto")]
    [InlineData("any", "required")]
    [InlineData("none", "none")]
    public void Tool_choice_types_map_to_openai_strings(string anthropic, string openAi)
    {
        var request = Parse($$$"""
            {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
             "tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "{{{anthropic}}}"}}
            """);

        Assert.Equal(openAi, request.ToolChoice!.Value.GetString());
        Assert.Null(request.ForcedToolName);
    }

    [Fact]
    public void Missing_max_tokens_is_a_400_naming_it_except_for_count_tokens()
    {
        const string body = """{"model": "m", "messages": [{"role": "user", "content": "hi"}]}""";
        var error = ParseFails(body);
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("max_tokens", error.Error.Param);
        Assert.Contains("max_tokens", error.Error.Message, StringComparison.Ordinal);

        Assert.Null(Parse(body, requireMaxTokens: false).MaxTokens);
    }

    [Theory]
    [InlineData("""{"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}""", "model")]
    [InlineData("""{"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}""", "max_tokens")]
    [InlineData("""{"model": "m", "max_tokens": 5, "messages": []}""", "messages")]
    [InlineData("""{"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "hi"}]}""", "messages[0].role")]
    [InlineData("""{"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": [{"type": "tool_result", "tool_use_id": "a"}]}]}""", "messages[0].content[0].type")]
    [InlineData("""{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}""", "messages[0].content[0].source.type")]
    [InlineData("""{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]}""", "messages[0].content[0].type")]
    [InlineData("""{"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]}""", "temperature")]
    [InlineData("""{"model": "m", "max_tokens": 5, "top_k": -1, "messages": [{"role": "user", "content": "hi"}]}""", "top_k")]
    [InlineData("""{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "a"}]}]}""", "messages[0].content[0].type")]
    [InlineData("""{"model": "m", "max_tokens": 5, "tool_choice": {"type": "tool"}, "messages": [{"role": "user", "content": "hi"}]}""", "tool_choice.name")]
    [InlineData("""{"model": "m", "max_tokens": 5, "system": 7, "messages": [{"role": "user", "content": "hi"}]}""", "system")]
    public void Bad_input_names_the_parameter(string body, string param)
    {
        var error = ParseFails(body);
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(ErrorTypes.InvalidRequest, error.Error.Type);
        Assert.Equal(param, error.Error.Param);
    }

    [Fact]
    public void Server_tools_and_their_blocks_are_noted_for_an_anthropic_upstream_and_left_out_of_the_translation()
    {
        var request = AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes("""
            {"model": "m", "max_tokens": 5,
             "tools": [{"name": "weather", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
             "messages": [
               {"role": "user", "content": "Search for rivers"},
               {"role": "assistant", "content": [
                 {"type": "text", "text": "Searching."},
                 {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "rivers"}},
                 {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}]},
               {"role": "user", "content": "Thanks"}]}
            """));

        Assert.Equal(new AnthropicOnlyPart("tools[1].type", "the server tool \"web_search_20250305\""), request.AnthropicOnly);
        Assert.Equal(["weather"], request.Tools!.Select(t => t.Name));
        Assert.Equal("Searching.", request.Messages[1].Content);

        var error = request.AnthropicOnly!.Refusal("gpt", "OpenAI");
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("tools[1].type", error.Error.Param);
        Assert.Contains("model \"gpt\" (OpenAI) cannot", error.Error.Message, StringComparison.Ordinal);

        var blocksOnly = AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes("""
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "search_result", "source": "s", "title": "t", "content": []}]}]}
            """));
        Assert.Equal("messages[0].content[1].type", blocksOnly.AnthropicOnly!.Param);
        Assert.Null(AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes("""{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}""")).AnthropicOnly);
    }

    [Fact]
    public void Stream_writer_writes_anthropic_frames_with_matching_event_names()
    {
        var writer = new AnthropicStreamWriter("msg_1", "sim-fast");
        var output = new ArrayBufferWriter<byte>();
        writer.WriteStart(output, 12);
        writer.WriteEvent(output, new TextDeltaEvent("Let me "));
        writer.WriteEvent(output, new TextDeltaEvent("check."));
        writer.WriteEvent(output, new ToolCallDeltaEvent(0, "call_a", "get_weather", string.Empty));
        writer.WriteEvent(output, new ToolCallDeltaEvent(0, null, null, "{\"city\":"));
        writer.WriteEvent(output, new ToolCallDeltaEvent(0, null, null, "\"Paris\"}"));
        writer.WriteEvent(output, new ToolCallDeltaEvent(1, "call_b", "get_time", string.Empty));
        Assert.False(writer.WriteEvent(output, new FinishEvent(FinishReasons.ToolCalls)));
        writer.WriteEnd(output, new ChatUsage(12, 9));

        var events = SseTestHelpers.ParseWhole(output.WrittenSpan.ToArray());
        Assert.Equal(
            ["message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
             "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
             "content_block_start", "content_block_stop", "message_delta", "message_stop"],
            events.Select(e => e.EventType));
        var json = events.Select(e => JsonDocument.Parse(e.Data).RootElement).ToList();
        Assert.All(events.Zip(json), pair => Assert.Equal(pair.First.EventType, pair.Second.GetProperty("type").GetString()));

        var message = json[0].GetProperty("message");
        Assert.Equal("msg_1", message.GetProperty("id").GetString());
        Assert.Equal("sim-fast", message.GetProperty("model").GetString());
        Assert.Equal(12, message.GetProperty("usage").GetProperty("input_tokens").GetInt32());

        Assert.Equal(0, json[1].GetProperty("index").GetInt32());
        Assert.Equal("text", json[1].GetProperty("content_block").GetProperty("type").GetString());
        Assert.Equal("check.", json[3].GetProperty("delta").GetProperty("text").GetString());

        var toolStart = json[5].GetProperty("content_block");
        Assert.Equal(1, json[5].GetProperty("index").GetInt32());
        Assert.Equal(("tool_use", "call_a", "get_weather"), (toolStart.GetProperty("type").GetString(), toolStart.GetProperty("id").GetString(), toolStart.GetProperty("name").GetString()));
        Assert.Equal("input_json_delta", json[6].GetProperty("delta").GetProperty("type").GetString());
        var arguments = json[6].GetProperty("delta").GetProperty("partial_json").GetString() + json[7].GetProperty("delta").GetProperty("partial_json").GetString();
        Assert.Equal("{\"city\":\"Paris\"}", arguments);
        Assert.Equal(2, json[9].GetProperty("index").GetInt32());

        Assert.Equal("tool_use", json[11].GetProperty("delta").GetProperty("stop_reason").GetString());
        Assert.Equal(9, json[11].GetProperty("usage").GetProperty("output_tokens").GetInt32());
        Assert.Equal(12, json[11].GetProperty("usage").GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public void Stream_writer_reads_passthrough_chunks_and_reports_the_stop_sequence()
    {
        var writer = new AnthropicStreamWriter("msg_2", "gpt");
        var output = new ArrayBufferWriter<byte>();
        writer.WriteStart(output, 3);
        var chunk = new OpenAIChunkEvent("{}"u8.ToArray(), [new TextDeltaEvent("Hello"), new TextDeltaEvent(" world")]);
        Assert.True(writer.WriteEvent(output, chunk));
        writer.WriteEvent(output, new FinishEvent(FinishReasons.Stop) { StopSequence = "###" });
        writer.WriteEnd(output, new ChatUsage(3, 2));

        var events = SseTestHelpers.ParseWhole(output.WrittenSpan.ToArray());
        var text = string.Concat(events.Where(e => e.EventType == "content_block_delta")
            .Select(e => JsonDocument.Parse(e.Data).RootElement.GetProperty("delta").GetProperty("text").GetString()));
        Assert.Equal("Hello world", text);
        var delta = JsonDocument.Parse(events.Single(e => e.EventType == "message_delta").Data).RootElement.GetProperty("delta");
        Assert.Equal("stop_sequence", delta.GetProperty("stop_reason").GetString());
        Assert.Equal("###", delta.GetProperty("stop_sequence").GetString());
    }

    [Fact]
    public void Error_and_ping_frames_have_anthropic_shapes()
    {
        var writer = new AnthropicStreamWriter("msg_3", "m");
        var output = new ArrayBufferWriter<byte>();
        output.Write(AnthropicStreamWriter.PingFrame);
        writer.WriteError(output, new ErrorInfo("Simulated failure.", ErrorTypes.Server, null, "simulated_failure"));

        var events = SseTestHelpers.ParseWhole(output.WrittenSpan.ToArray());
        Assert.Equal("ping", events[0].EventType);
        Assert.Equal("ping", JsonDocument.Parse(events[0].Data).RootElement.GetProperty("type").GetString());
        Assert.Equal("error", events[1].EventType);
        var body = JsonDocument.Parse(events[1].Data).RootElement;
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal("api_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("Simulated failure.", body.GetProperty("error").GetProperty("message").GetString());
    }

    [Theory]
    [InlineData(FinishReasons.Stop, null, "end_turn")]
    [InlineData(FinishReasons.Stop, "END", "stop_sequence")]
    [InlineData(FinishReasons.Length, null, "max_tokens")]
    [InlineData(FinishReasons.ToolCalls, null, "tool_use")]
    [InlineData(FinishReasons.ContentFilter, null, "refusal")]
    [InlineData(null, null, "end_turn")]
    public void Finish_reasons_map_to_stop_reasons_and_back(string? finish, string? stopSequence, string stopReason)
    {
        Assert.Equal(stopReason, AnthropicStopReasons.FromFinishReason(finish, stopSequence));
        Assert.Equal(finish ?? FinishReasons.Stop, AnthropicStopReasons.ToFinishReason(stopReason));
    }

    [Theory]
    [InlineData(400, ErrorTypes.InvalidRequest, null, 400, "invalid_request_error")]
    [InlineData(401, ErrorTypes.Authentication, null, 401, "authentication_error")]
    [InlineData(404, ErrorTypes.InvalidRequest, "model_not_found", 404, "not_found_error")]
    [InlineData(413, ErrorTypes.InvalidRequest, "request_too_large", 413, "request_too_large")]
    [InlineData(429, ErrorTypes.RateLimit, null, 429, "rate_limit_error")]
    [InlineData(500, ErrorTypes.Server, null, 500, "api_error")]
    [InlineData(502, ErrorTypes.Timeout, "upstream_timeout", 504, "timeout_error")]
    [InlineData(503, ErrorTypes.Upstream, null, 529, "overloaded_error")]
    [InlineData(502, ErrorTypes.Upstream, "overloaded_error", 529, "overloaded_error")]
    public void Http_errors_get_anthropic_statuses_and_types(int status, string type, string? code, int expectedStatus, string expectedType)
    {
        Assert.Equal((expectedStatus, expectedType), AnthropicErrors.Classify(status, new ErrorInfo("x", type, null, code)));
    }

    [Fact]
    public void Message_writer_writes_content_blocks_stop_reason_and_usage()
    {
        var answer = new AssembledChoice(0, "Checking.", [new ToolCall("toolu_9", "get_weather", "{\"city\":\"Oslo\"}"), new ToolCall("toolu_10", "cut", "{\"a\": [1,")], FinishReasons.Length);
        var output = new ArrayBufferWriter<byte>();
        AnthropicMessageWriter.Write(output, "msg_4", "sim-fast", answer, new ChatUsage(20, 30));

        var message = JsonDocument.Parse(output.WrittenMemory).RootElement;
        Assert.Equal("message", message.GetProperty("type").GetString());
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        var content = message.GetProperty("content");
        Assert.Equal(3, content.GetArrayLength());
        Assert.Equal("Checking.", content[0].GetProperty("text").GetString());
        Assert.Equal("Oslo", content[1].GetProperty("input").GetProperty("city").GetString());

        // Arguments cut off by the token limit cannot be an object: Anthropic clients get {} rather than a failure.
        Assert.Empty(content[2].GetProperty("input").EnumerateObject());
        Assert.Equal("max_tokens", message.GetProperty("stop_reason").GetString());
        Assert.Equal(JsonValueKind.Null, message.GetProperty("stop_sequence").ValueKind);
        Assert.Equal(20, message.GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.Equal(30, message.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }
}
