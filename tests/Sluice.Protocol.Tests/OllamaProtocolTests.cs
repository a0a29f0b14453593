using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Ollama;

namespace Sluice.Protocol.Tests;

/// <summary>Ollama API inbound: request parsing and the NDJSON writer.</summary>
public sealed class OllamaProtocolTests
{
    private static ChatRequest ParseChat(string json) => OllamaRequestParser.ParseChat(Encoding.UTF8.GetBytes(json));

    private static List<JsonElement> Lines(ArrayBufferWriter<byte> output)
    {
        var text = Encoding.UTF8.GetString(output.WrittenSpan);
        Assert.EndsWith("\n", text, StringComparison.Ordinal);
        return text[..^1].Split('\n').Select(line => JsonDocument.Parse(line).RootElement.Clone()).ToList();
    }

    [Fact]
    public void Chat_streams_by_default_and_maps_options()
    {
        var request = ParseChat("""
            {"model": "llama3:latest", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi", "images": []}],
             "options": {"temperature": 0.2, "top_p": 0.8, "top_k": 20, "num_predict": 50, "stop": "###", "seed": 7, "num_ctx": 4096},
             "keep_alive": "5m", "format": "json"}
            """);

        Assert.True(request.Stream);
        Assert.Equal("llama3:latest", request.Model);
        Assert.Equal([new ChatMessage(ChatRoles.System, "Be brief."), new ChatMessage(ChatRoles.User, "Hi")], request.Messages);
        Assert.Equal((0.2, 0.8, 20, 50, 7L), (request.Temperature!.Value, request.TopP!.Value, request.TopK!.Value, request.MaxTokens!.Value, request.Seed!.Value));
        Assert.Equal(["###"], request.Stop!);

        // num_predict -1 means "no limit" in Ollama.
        Assert.Null(ParseChat("""{"model": "m", "stream": false, "messages": [{"role": "user", "content": "Hi"}], "options": {"num_predict": -1}}""").MaxTokens);
    }

    [Fact]
    public void Tool_calls_get_ids_and_tool_messages_answer_them_by_name()
    {
        var request = ParseChat("""
            {"model": "m", "messages": [
              {"role": "user", "content": "Weather and time in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {"city": "Paris"}}}]},
              {"role": "tool", "tool_name": "get_time", "content": "10:00"},
              {"role": "tool", "content": "18 C"}],
             "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
            """);

        var calls = request.Messages[1].ToolCalls!;
        Assert.Null(request.Messages[1].Content);
        Assert.Equal(["call_1_0", "call_1_1"], calls.Select(c => c.Id));
        Assert.Equal("Paris", JsonDocument.Parse(calls[0].Arguments).RootElement.GetProperty("city").GetString());
        Assert.Equal("call_1_1", request.Messages[2].ToolCallId);
        Assert.Equal("call_1_0", request.Messages[3].ToolCallId);
        Assert.Equal("get_weather", Assert.Single(request.Tools!).Name);
        Assert.Equal("function", request.ToolsJson!.Value[0].GetProperty("type").GetString());
    }

    [Theory]
    [InlineData("""{"messages": [{"role": "user", "content": "Hi"}]}""", "model")]
    [InlineData("""{"model": "m"}""", "messages")]
    [InlineData("""{"model": "m", "messages": [{"role": "robot", "content": "Hi"}]}""", "messages[0].role")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "Hi", "images": ["aGk="]}]}""", "messages[0].images[0]")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "options": {"temperature": "hot"}}""", "options.temperature")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": "yes"}""", "stream")]
    public void Bad_chat_input_names_the_parameter(string body, string param)
    {
        var error = Assert.Throws<ChatException>(() => ParseChat(body));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(param, error.Error.Param);
    }

    [Fact]
    public void Generate_turns_system_and_prompt_into_messages_and_no_prompt_into_none()
    {
        var request = OllamaRequestParser.ParseGenerate("""{"model": "m", "system": "Be brief.", "prompt": "Why is the sky blue?", "stream": false}"""u8.ToArray());
        Assert.False(request.Stream);
        Assert.Equal([new ChatMessage(ChatRoles.System, "Be brief."), new ChatMessage(ChatRoles.User, "Why is the sky blue?")], request.Messages);

        Assert.Empty(OllamaRequestParser.ParseGenerate("""{"model": "m"}"""u8.ToArray()).Messages);
        Assert.Equal("m", OllamaRequestParser.ParseShow("""{"name": "m"}"""u8.ToArray()));
    }

    [Fact]
    public void Chat_writer_writes_text_lines_whole_tool_calls_and_a_done_line()
    {
        var writer = new OllamaStreamWriter("m", OllamaApi.Chat, Stopwatch.GetTimestamp());
        var output = new ArrayBufferWriter<byte>();
        Assert.True(writer.WriteEvent(output, new TextDeltaEvent("Checking")));
        Assert.False(writer.WriteEvent(output, new ToolCallDeltaEvent(0, "call_1", "get_weather", string.Empty)));
        Assert.False(writer.WriteEvent(output, new ToolCallDeltaEvent(0, null, null, "{\"city\":")));
        Assert.False(writer.WriteEvent(output, new ToolCallDeltaEvent(0, null, null, "\"Paris\"}")));
        Assert.True(writer.WriteEvent(output, new FinishEvent(FinishReasons.ToolCalls)));
        writer.WriteEnd(output, new ChatUsage(11, 5));

        var lines = Lines(output);
        Assert.Equal(3, lines.Count);
        Assert.All(lines, line => Assert.Equal("m", line.GetProperty("model").GetString()));
        Assert.Equal("Checking", lines[0].GetProperty("message").GetProperty("content").GetString());
        Assert.False(lines[0].GetProperty("done").GetBoolean());

        var call = Assert.Single(lines[1].GetProperty("message").GetProperty("tool_calls").EnumerateArray());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("Paris", call.GetProperty("function").GetProperty("arguments").GetProperty("city").GetString());

        var done = lines[2];
        Assert.True(done.GetProperty("done").GetBoolean());
        Assert.Equal("stop", done.GetProperty("done_reason").GetString());
        Assert.Equal(11, done.GetProperty("prompt_eval_count").GetInt32());
        Assert.Equal(5, done.GetProperty("eval_count").GetInt32());
        Assert.True(done.GetProperty("total_duration").GetInt64() >= done.GetProperty("eval_duration").GetInt64());
    }

    [Fact]
    public void Generate_writer_uses_response_and_reports_length()
    {
        var writer = new OllamaStreamWriter("m", OllamaApi.Generate, Stopwatch.GetTimestamp());
        var output = new ArrayBufferWriter<byte>();
        writer.WritePing(output);
        writer.WriteEvent(output, new OpenAIChunkEvent("{}"u8.ToArray(), [new TextDeltaEvent("Blue")]));
        writer.WriteEvent(output, new FinishEvent(FinishReasons.Length));
        writer.WriteEnd(output, new ChatUsage(4, 1));

        var lines = Lines(output);
        Assert.Equal(3, lines.Count);
        Assert.Equal((string.Empty, false), (lines[0].GetProperty("response").GetString(), lines[0].GetProperty("done").GetBoolean()));
        Assert.Equal("Blue", lines[1].GetProperty("response").GetString());
        Assert.Equal("length", lines[2].GetProperty("done_reason").GetString());
        Assert.False(lines[2].TryGetProperty("message", out _));
    }

    [Fact]
    public void Complete_answer_and_error_are_single_objects()
    {
        var writer = new OllamaStreamWriter("m", OllamaApi.Chat, Stopwatch.GetTimestamp());
        var output = new ArrayBufferWriter<byte>();
        writer.WriteComplete(output, new AssembledChoice(0, "All good.", [], FinishReasons.Stop), new ChatUsage(3, 3));
        writer.WriteError(output, new ErrorInfo("It broke. Retry.", ErrorTypes.Server));

        var lines = Lines(output);
        Assert.Equal("All good.", lines[0].GetProperty("message").GetProperty("content").GetString());
        Assert.True(lines[0].GetProperty("done").GetBoolean());
        Assert.Equal(3, lines[0].GetProperty("eval_count").GetInt32());
        Assert.Equal("It broke. Retry.", lines[1].GetProperty("error").GetString());
        Assert.Single(lines[1].EnumerateObject());
    }
}
