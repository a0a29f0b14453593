using System.Buffers;
using System.Text;
using Sluice.Protocol.Sse;
using static Sluice.Protocol.Tests.SseTestHelpers;

namespace Sluice.Protocol.Tests;

public sealed class SseWriterTests
{
    [Fact]
    public void Single_line_data_is_one_data_line_and_a_blank_line()
    {
        Assert.Equal("data: hello\n\n", Write(w => SseWriter.WriteData(w, "hello"u8)));
    }

    [Theory]
    [InlineData("a\nb", "data: a\ndata: b\n\n")]
    [InlineData("a\r\nb", "data: a\ndata: b\n\n")]
    [InlineData("a\rb", "data: a\ndata: b\n\n")]
    [InlineData("a\r\rb", "data: a\ndata: \ndata: b\n\n")]
    [InlineData("a\n\rb", "data: a\ndata: \ndata: b\n\n")]
    [InlineData("a\n", "data: a\ndata: \n\n")]
    [InlineData("\na", "data: \ndata: a\n\n")]
    [InlineData("", "data: \n\n")]
    public void Multi_line_data_is_split_at_CR_LF_and_CRLF(string data, string expected)
    {
        Assert.Equal(expected, Write(w => SseWriter.WriteData(w, Encoding.UTF8.GetBytes(data))));
    }

    [Fact]
    public void Id_and_event_type_come_before_data()
    {
        Assert.Equal("id: 42\nevent: delta\ndata: x\n\n", Write(w => SseWriter.WriteEvent(w, 42, "x"u8, "delta"u8)));
    }

    [Fact]
    public void Negative_id_and_empty_type_are_omitted()
    {
        Assert.Equal("data: x\n\n", Write(w => SseWriter.WriteEvent(w, -1, "x"u8)));
    }

    [Theory]
    [InlineData(0L, "id: 0\n")]
    [InlineData(long.MaxValue, "id: 9223372036854775807\n")]
    public void Ids_are_written_in_decimal(long id, string expected)
    {
        Assert.Equal(expected, Write(w => SseWriter.WriteId(w, id)));
    }

    [Fact]
    public void Comment_is_one_frame()
    {
        Assert.Equal(": keep going\n\n", Write(w => SseWriter.WriteComment(w, "keep going"u8)));
        Assert.Equal(": ping\n\n", Encoding.UTF8.GetString(SseWriter.PingFrame));
    }

    [Theory]
    [InlineData("a\nb")]
    [InlineData("a\rb")]
    [InlineData("\r\n")]
    public void Comment_with_a_line_break_is_rejected(string text)
    {
        var buffer = new ArrayBufferWriter<byte>();

        var ex = Assert.Throws<ArgumentException>(() => SseWriter.WriteComment(buffer, Encoding.UTF8.GetBytes(text)));

        Assert.Equal("text", ex.ParamName);
        Assert.Equal(0, buffer.WrittenCount);
    }

    public static TheoryData<string> RoundTripData() => new()
    {
        "plain",
        "",
        "two\nlines",
        "crlf\r\nline",
        "cr\rline",
        "trailing\n",
        "\n\nleading blanks",
        " leading space",
        "data: looks like a field",
        ": looks like a comment",
        "{\"json\":\"with: colons\"}",
        "Zürich 東京 🚀",
        "[DONE]",
    };

    [Theory]
    [MemberData(nameof(RoundTripData))]
    public void Writer_output_parses_back_to_the_same_data_with_CR_and_CRLF_normalised(string data)
    {
        var buffer = new ArrayBufferWriter<byte>();
        SseWriter.WriteEvent(buffer, 7, Encoding.UTF8.GetBytes(data), "kind"u8);
        SseWriter.WriteComment(buffer, "between"u8);
        SseWriter.WriteEvent(buffer, 8, "second"u8);

        var events = ParseWhole(buffer.WrittenSpan.ToArray(), surfaceComments: true);

        Assert.Equal(3, events.Count);
        var expected = data.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        Assert.Equal(expected, events[0].DataText);
        Assert.Equal("kind", events[0].EventType);
        Assert.Equal("7", events[0].LastEventId);
        Assert.True(events[1].IsComment);
        Assert.Equal("between", events[1].DataText);
        Assert.Equal("second", events[2].DataText);
        Assert.Null(events[2].EventType);
        Assert.Equal("8", events[2].LastEventId);
    }

    [Fact]
    public void Large_data_round_trips_through_a_small_buffer_writer()
    {
        var data = string.Join('\n', Enumerable.Range(0, 2_000).Select(i => $"line {i} {new string('x', i % 50)}"));
        var buffer = new ArrayBufferWriter<byte>(16);

        SseWriter.WriteEvent(buffer, 1, Encoding.UTF8.GetBytes(data));

        Assert.Equal(data, Assert.Single(ParseByteByByte(buffer.WrittenSpan.ToArray())).DataText);
    }

    private static string Write(Action<ArrayBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
