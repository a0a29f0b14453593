using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;
using static Sluice.Protocol.Tests.SseTestHelpers;

namespace Sluice.Protocol.Tests;

public sealed class OpenAIWriterTests
{
    private const string Id = "chatcmpl-test123";
    private const long Created = 1_727_346_169;
    private const string Model = "sim-fast";

    [Fact]
    public void Text_stream_has_role_on_first_delta_only_and_same_identity_everywhere()
    {
        var frames = WriteStream(
            new TextDeltaEvent("Hello"),
            new TextDeltaEvent(","),
            new TextDeltaEvent(" world"),
            new FinishEvent(FinishReasons.Stop));

        Assert.Equal(4, frames.Count);
        foreach (var frame in frames)
        {
            var root = frame.Json;
            Assert.Equal(Id, root.GetProperty("id").GetString());
            Assert.Equal("chat.completion.chunk", root.GetProperty("object").GetString());
            Assert.Equal(Created, root.GetProperty("created").GetInt64());
            Assert.Equal(Model, root.GetProperty("model").GetString());
            Assert.False(root.TryGetProperty("usage", out _));
            var choice = Assert.Single(root.GetProperty("choices").EnumerateArray());
            Assert.Equal(0, choice.GetProperty("index").GetInt32());
            Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        }

        Assert.Equal("assistant", Delta(frames[0]).GetProperty("role").GetString());
        Assert.Equal("Hello", Delta(frames[0]).GetProperty("content").GetString());
        Assert.False(Delta(frames[1]).TryGetProperty("role", out _));
        Assert.Equal(",", Delta(frames[1]).GetProperty("content").GetString());
        Assert.False(Delta(frames[2]).TryGetProperty("role", out _));
        Assert.All(frames.Take(3), f => Assert.Equal(JsonValueKind.Null, Choice(f).GetProperty("finish_reason").ValueKind));

        // Finish chunk: empty delta, finish_reason set.
        Assert.Empty(Delta(frames[3]).EnumerateObject());
        Assert.Equal("stop", Choice(frames[3]).GetProperty("finish_reason").GetString());
    }

    [Fact]
    public void Sse_ids_are_written_per_frame()
    {
        var frames = WriteStream(new TextDeltaEvent("a"), new TextDeltaEvent("b"), new FinishEvent(FinishReasons.Stop));

        Assert.Equal(["0", "1", "2"], frames.Select(f => f.Event.LastEventId));
    }

    [Fact]
    public void Negative_sse_id_writes_no_id_line()
    {
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();

        writer.WriteEvent(buffer, -1, new TextDeltaEvent("x"));

        Assert.StartsWith("data: {", Encoding.UTF8.GetString(buffer.WrittenSpan), StringComparison.Ordinal);
    }

    [Fact]
    public void Role_is_sent_once_per_choice()
    {
        var frames = WriteStream(
            new TextDeltaEvent("a", 0),
            new TextDeltaEvent("b", 1),
            new TextDeltaEvent("c", 0),
            new TextDeltaEvent("d", 1),
            new TextDeltaEvent("e", 2));

        Assert.Equal([0, 1, 0, 1, 2], frames.Select(f => Choice(f).GetProperty("index").GetInt32()));
        Assert.Equal([true, true, false, false, true], frames.Select(f => Delta(f).TryGetProperty("role", out _)));
    }

    [Fact]
    public void Finish_before_any_delta_does_not_use_up_the_role()
    {
        var frames = WriteStream(new FinishEvent(FinishReasons.Length, 1), new TextDeltaEvent("late", 1));

        Assert.Empty(Delta(frames[0]).EnumerateObject());
        Assert.Equal("assistant", Delta(frames[1]).GetProperty("role").GetString());
    }

    [Fact]
    public void Tool_call_first_fragment_has_id_type_name_and_empty_arguments_later_only_index_and_arguments()
    {
        var frames = WriteStream(
            new ToolCallDeltaEvent(0, "call_abc", "get_weather", null),
            new ToolCallDeltaEvent(0, null, null, "{\"loc"),
            new ToolCallDeltaEvent(0, null, null, "ation\":\"Paris\"}"),
            new FinishEvent(FinishReasons.ToolCalls));

        var first = Delta(frames[0]);
        Assert.Equal("assistant", first.GetProperty("role").GetString());
        Assert.False(first.TryGetProperty("content", out _));
        var firstCall = Assert.Single(first.GetProperty("tool_calls").EnumerateArray());
        Assert.Equal(0, firstCall.GetProperty("index").GetInt32());
        Assert.Equal("call_abc", firstCall.GetProperty("id").GetString());
        Assert.Equal("function", firstCall.GetProperty("type").GetString());
        Assert.Equal("get_weather", firstCall.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal(string.Empty, firstCall.GetProperty("function").GetProperty("arguments").GetString());

        var arguments = new StringBuilder();
        foreach (var frame in frames.Skip(1).Take(2))
        {
            var delta = Delta(frame);
            Assert.False(delta.TryGetProperty("role", out _));
            var call = Assert.Single(delta.GetProperty("tool_calls").EnumerateArray());
            Assert.Equal(["index", "function"], call.EnumerateObject().Select(p => p.Name));
            Assert.Equal(["arguments"], call.GetProperty("function").EnumerateObject().Select(p => p.Name));
            arguments.Append(call.GetProperty("function").GetProperty("arguments").GetString());
        }

        Assert.Equal("{\"location\":\"Paris\"}", arguments.ToString());
        Assert.Equal("tool_calls", Choice(frames[3]).GetProperty("finish_reason").GetString());
    }

    [Fact]
    public void Parallel_tool_calls_keep_their_index()
    {
        var frames = WriteStream(
            new ToolCallDeltaEvent(0, "call_a", "f", "{}"),
            new ToolCallDeltaEvent(1, "call_b", "g", "{}"));

        Assert.Equal([0, 1], frames.Select(f => Delta(f).GetProperty("tool_calls")[0].GetProperty("index").GetInt32()));
        Assert.True(Delta(frames[0]).TryGetProperty("role", out _));
        Assert.False(Delta(frames[1]).TryGetProperty("role", out _));
    }

    [Fact]
    public void Usage_chunk_has_empty_choices_and_usage_with_total()
    {
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();
        writer.WriteEvent(buffer, 0, new TextDeltaEvent("x"));

        writer.WriteUsage(buffer, 1, new ChatUsage(12, 5));

        var frames = Frames(buffer);
        var usageRoot = frames[1].Json;
        Assert.Equal(Id, usageRoot.GetProperty("id").GetString());
        Assert.Equal(Created, usageRoot.GetProperty("created").GetInt64());
        Assert.Equal(Model, usageRoot.GetProperty("model").GetString());
        Assert.Equal(0, usageRoot.GetProperty("choices").GetArrayLength());
        var usage = usageRoot.GetProperty("usage");
        Assert.Equal(12, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(5, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(17, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public void Usage_and_error_events_are_not_written_by_WriteEvent()
    {
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();

        Assert.False(writer.WriteEvent(buffer, 0, new UsageEvent(new ChatUsage(1, 1))));
        Assert.False(writer.WriteEvent(buffer, 0, new ErrorEvent(new ErrorInfo("x", ErrorTypes.Server))));
        Assert.Equal(0, buffer.WrittenCount);
    }

    [Fact]
    public void Error_frame_has_the_openai_error_shape()
    {
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();

        writer.WriteError(buffer, 9, new ErrorInfo("Upstream failed.\nRetry later.", ErrorTypes.Upstream, null, "upstream_error"));

        var frame = Assert.Single(Frames(buffer));
        Assert.Equal("9", frame.Event.LastEventId);
        var root = frame.Json;
        Assert.Equal(["error"], root.EnumerateObject().Select(p => p.Name));
        var error = root.GetProperty("error");
        Assert.Equal("Upstream failed.\nRetry later.", error.GetProperty("message").GetString());
        Assert.Equal("upstream_error", error.GetProperty("type").GetString());
        Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        Assert.Equal("upstream_error", error.GetProperty("code").GetString());
    }

    [Fact]
    public void Error_writer_to_bytes_matches_shape_with_param()
    {
        var bytes = OpenAIErrorWriter.ToUtf8(new ErrorInfo("Bad role.", ErrorTypes.InvalidRequest, "messages[0].role", null));

        using var document = JsonDocument.Parse(bytes);
        var error = document.RootElement.GetProperty("error");
        Assert.Equal("messages[0].role", error.GetProperty("param").GetString());
        Assert.Equal(JsonValueKind.Null, error.GetProperty("code").ValueKind);
    }

    [Fact]
    public void Done_sentinel_frame()
    {
        var buffer = new ArrayBufferWriter<byte>();

        OpenAIChunkWriter.WriteDone(buffer, 4);

        Assert.Equal("id: 4\ndata: [DONE]\n\n", Encoding.UTF8.GetString(buffer.WrittenSpan));
        Assert.True(Assert.Single(ParseWhole(buffer.WrittenSpan.ToArray())).IsDone);
    }

    [Theory]
    [InlineData("Zürich – 東京 🚀")]
    [InlineData("line one\nline two\r\nthree\rfour")]
    [InlineData("quote \" backslash \\ tab \t nul \u0000 bell \u0007")]
    [InlineData("</script><!-- & ' + `")]
    [InlineData("data: [DONE]\n\ndata: injected")]
    [InlineData("\u2028\u2029")]
    public void Any_text_stays_one_frame_of_valid_json(string text)
    {
        var frames = WriteStream(new TextDeltaEvent(text));

        var frame = Assert.Single(frames);
        Assert.Equal(text, Delta(frame).GetProperty("content").GetString());
    }

    [Fact]
    public void Non_ascii_text_is_written_as_utf8_not_escaped()
    {
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();

        writer.WriteEvent(buffer, 0, new TextDeltaEvent("Zürich 東京"));

        Assert.Contains("Zürich 東京", Encoding.UTF8.GetString(buffer.WrittenSpan), StringComparison.Ordinal);
    }

    [Fact]
    public void Lone_surrogate_in_text_still_gives_valid_json()
    {
        var frames = WriteStream(new TextDeltaEvent("a\uD800b"));

        Assert.StartsWith("a", Delta(Assert.Single(frames)).GetProperty("content").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Identity_with_special_characters_is_escaped()
    {
        var writer = new OpenAIChunkWriter("id\"quoted", 1, "model\\back", "fp_1");
        var buffer = new ArrayBufferWriter<byte>();

        writer.WriteEvent(buffer, 0, new TextDeltaEvent("x"));

        var root = Assert.Single(Frames(buffer)).Json;
        Assert.Equal("id\"quoted", root.GetProperty("id").GetString());
        Assert.Equal("model\\back", root.GetProperty("model").GetString());
        Assert.Equal("fp_1", root.GetProperty("system_fingerprint").GetString());
    }

    [Fact]
    public async Task Writers_of_different_streams_share_a_threads_json_writer_without_mixing_their_frames()
    {
        // Frames are written with one JSON writer per thread: interleaved streams on one thread, and one stream moving
        // between threads (as a relay does across awaits), must each get whole frames with their own identity.
        var first = new OpenAIChunkWriter("chatcmpl-one", 1, "model-one");
        var second = new OpenAIChunkWriter("chatcmpl-two", 2, "model-two") { WritesUsageNull = true };
        var one = new ArrayBufferWriter<byte>();
        var two = new ArrayBufferWriter<byte>();
        for (var i = 0; i < 3; i++)
        {
            first.WriteEvent(one, i, new TextDeltaEvent($"a{i}"));
            second.WriteEvent(two, i, new TextDeltaEvent($"b{i}"));
        }

        await Task.Run(() => first.WriteEvent(one, 3, new FinishEvent("stop")));
        second.WriteUsage(two, 3, new ChatUsage(5, 7));
        first.WriteError(one, 4, new ErrorInfo("gone", ErrorTypes.Server));

        var ones = Frames(one);
        var twos = Frames(two);
        Assert.Equal(5, ones.Count);
        Assert.Equal(4, twos.Count);
        Assert.All(ones.Take(4), f => Assert.Equal(("chatcmpl-one", "model-one"), (f.Json.GetProperty("id").GetString(), f.Json.GetProperty("model").GetString())));
        Assert.All(twos, f => Assert.Equal(("chatcmpl-two", "model-two"), (f.Json.GetProperty("id").GetString(), f.Json.GetProperty("model").GetString())));
        Assert.Equal(["a0", "a1", "a2"], ones.Take(3).Select(f => Delta(f).GetProperty("content").GetString()));
        Assert.Equal(["b0", "b1", "b2"], twos.Take(3).Select(f => Delta(f).GetProperty("content").GetString()));
        Assert.Equal("stop", ones[3].Json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(7, twos[3].Json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("gone", ones[4].Json.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public void No_system_fingerprint_unless_given()
    {
        var root = WriteStream(new TextDeltaEvent("x"))[0].Json;

        Assert.False(root.TryGetProperty("system_fingerprint", out _));
    }

    [Fact]
    public void Whole_stream_round_trips_through_parser_and_accumulator()
    {
        var events = new ChatStreamEvent[]
        {
            new TextDeltaEvent("The "),
            new TextDeltaEvent("answer"),
            new FinishEvent(FinishReasons.Stop),
        };
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();
        var id = 0L;
        foreach (var e in events)
        {
            writer.WriteEvent(buffer, id++, e);
        }

        writer.WriteUsage(buffer, id++, new ChatUsage(3, 2));
        OpenAIChunkWriter.WriteDone(buffer, id);

        var parsed = ParseByteByByte(buffer.WrittenSpan.ToArray());
        Assert.Equal(5, parsed.Count);
        Assert.True(parsed[^1].IsDone);
        var text = string.Concat(parsed.Take(2).Select(p => JsonDocument.Parse(p.Data).RootElement
            .GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString()));
        Assert.Equal("The answer", text);
    }

    [Fact]
    public void Completion_writer_writes_a_chat_completion_object()
    {
        var accumulator = new ChatCompletionAccumulator();
        accumulator.Add(new TextDeltaEvent("Hello "));
        accumulator.Add(new TextDeltaEvent("Zürich"));
        accumulator.Add(new FinishEvent(FinishReasons.Length));
        var buffer = new ArrayBufferWriter<byte>();

        OpenAICompletionWriter.Write(buffer, Id, Created, Model, accumulator.Choices, new ChatUsage(10, 2));

        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        var root = document.RootElement;
        Assert.Equal(Id, root.GetProperty("id").GetString());
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        Assert.Equal(Created, root.GetProperty("created").GetInt64());
        Assert.Equal(Model, root.GetProperty("model").GetString());
        var choice = Assert.Single(root.GetProperty("choices").EnumerateArray());
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        var message = choice.GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        Assert.Equal("Hello Zürich", message.GetProperty("content").GetString());
        Assert.Equal(JsonValueKind.Null, message.GetProperty("refusal").ValueKind);
        Assert.False(message.TryGetProperty("tool_calls", out _));
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(12, root.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public void Completion_writer_writes_tool_calls_with_null_content()
    {
        var accumulator = new ChatCompletionAccumulator();
        accumulator.Add(new ToolCallDeltaEvent(0, "call_1", "get_weather", string.Empty));
        accumulator.Add(new ToolCallDeltaEvent(0, null, null, "{\"location\":"));
        accumulator.Add(new ToolCallDeltaEvent(0, null, null, "\"Paris\"}"));
        accumulator.Add(new FinishEvent(FinishReasons.ToolCalls));
        var buffer = new ArrayBufferWriter<byte>();

        OpenAICompletionWriter.Write(buffer, Id, Created, Model, accumulator.Choices, new ChatUsage(10, 3));

        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        var choice = document.RootElement.GetProperty("choices")[0];
        var message = choice.GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        var call = Assert.Single(message.GetProperty("tool_calls").EnumerateArray());
        Assert.Equal("call_1", call.GetProperty("id").GetString());
        Assert.Equal("function", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("{\"location\":\"Paris\"}", call.GetProperty("function").GetProperty("arguments").GetString());
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public void Completion_writer_defaults_missing_finish_reason_to_stop()
    {
        var buffer = new ArrayBufferWriter<byte>();

        OpenAICompletionWriter.Write(buffer, Id, Created, Model, [new AssembledChoice(0, "x", [], null)], new ChatUsage(1, 1));

        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        Assert.Equal("stop", document.RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    private static OpenAIChunkWriter NewWriter() => new(Id, Created, Model);

    private static List<Frame> WriteStream(params ChatStreamEvent[] events)
    {
        var writer = NewWriter();
        var buffer = new ArrayBufferWriter<byte>();
        var id = 0L;
        foreach (var e in events)
        {
            Assert.True(writer.WriteEvent(buffer, id++, e));
        }

        return Frames(buffer);
    }

    private static List<Frame> Frames(ArrayBufferWriter<byte> buffer)
    {
        var events = ParseWhole(buffer.WrittenSpan.ToArray());
        return events.Select(e =>
        {
            using var document = JsonDocument.Parse(e.Data);
            return new Frame(e, document.RootElement.Clone());
        }).ToList();
    }

    private static JsonElement Choice(Frame frame) => frame.Json.GetProperty("choices")[0];

    private static JsonElement Delta(Frame frame) => Choice(frame).GetProperty("delta");

    private sealed record Frame(SseEvent Event, JsonElement Json);
}
