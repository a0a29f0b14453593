using System.Text;
using Sluice.Protocol.Sse;
using static Sluice.Protocol.Tests.SseTestHelpers;

namespace Sluice.Protocol.Tests;

public sealed class SseParserTests
{
    [Theory]
    [InlineData("\n")]
    [InlineData("\r\n")]
    [InlineData("\r")]
    public void Line_ends_LF_CRLF_and_lone_CR_are_all_accepted(string eol)
    {
        var text = $"event: a{eol}data: one{eol}{eol}data: two{eol}data: three{eol}{eol}";

        var events = ParseWhole(text);

        Assert.Equal(2, events.Count);
        Assert.Equal("a", events[0].EventType);
        Assert.Equal("one", events[0].DataText);
        Assert.Null(events[1].EventType);
        Assert.Equal("two\nthree", events[1].DataText);
    }

    [Fact]
    public void Mixed_line_ends_in_one_stream_are_accepted()
    {
        var events = ParseWhole("data: a\r\n\ndata: b\r\rdata: c\n\r\n");

        Assert.Equal(["a", "b", "c"], events.Select(e => e.DataText));
    }

    [Fact]
    public void CR_at_end_of_chunk_followed_by_LF_at_start_of_next_is_one_line_end()
    {
        var bytes = "data: a\r\n\r\ndata: b\r\n\r\n"u8.ToArray();
        // Split right after each CR.
        var splits = Enumerable.Range(0, bytes.Length).Where(i => bytes[i] == (byte)'\r').Select(i => i + 1).ToArray();

        var events = ParseInChunks(bytes, splits);

        // Had the LF been taken as a second line end, "\r" + "\n" would give extra blank lines; the data would
        // still be right, so also check that no empty event sneaks in and data lines are not split.
        Assert.Equal(["a", "b"], events.Select(e => e.DataText));
    }

    [Fact]
    public void CR_at_end_of_chunk_then_LF_does_not_end_the_event_early()
    {
        // "data: a\r" | "\ndata: b\r\n\r\n": the LF completes the CRLF, so a and b are one event.
        var bytes = "data: a\r\ndata: b\r\n\r\n"u8.ToArray();

        var events = ParseInChunks(bytes, 8);

        var single = Assert.Single(events);
        Assert.Equal("a\nb", single.DataText);
    }

    [Fact]
    public void CR_at_end_of_chunk_followed_by_an_empty_chunk_then_LF_is_still_one_line_end()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("data: a\r"u8, events);
        parser.Feed(ReadOnlySpan<byte>.Empty, events);
        parser.Feed("\ndata: b\r"u8, events);
        parser.Feed("\n\r"u8, events);
        parser.Feed("\n"u8, events);
        parser.Complete(events);

        Assert.Equal("a\nb", Assert.Single(events).DataText);
    }

    [Fact]
    public void Lone_CR_at_end_of_chunk_followed_by_text_is_a_line_end()
    {
        var bytes = "data: a\rdata: b\r\r"u8.ToArray();

        var events = ParseInChunks(bytes, 8);

        Assert.Equal("a\nb", Assert.Single(events).DataText);
    }

    [Fact]
    public void Comments_are_ignored_by_default()
    {
        var events = ParseWhole(": ping\n\n:another\ndata: x\n\n");

        Assert.Equal("x", Assert.Single(events).DataText);
    }

    [Fact]
    public void Comments_are_surfaced_when_asked_with_one_leading_space_dropped()
    {
        var events = ParseWhole(": ping\n\n:  two spaces\ndata: x\n\n", surfaceComments: true);

        Assert.Equal(3, events.Count);
        Assert.True(events[0].IsComment);
        Assert.Equal("ping", events[0].DataText);
        Assert.False(events[0].IsDone);
        Assert.True(events[1].IsComment);
        Assert.Equal(" two spaces", events[1].DataText);
        Assert.False(events[2].IsComment);
        Assert.Equal("x", events[2].DataText);
    }

    [Fact]
    public void Comment_inside_an_event_does_not_break_it()
    {
        var events = ParseWhole("data: a\n: keep-alive\ndata: b\n\n");

        Assert.Equal("a\nb", Assert.Single(events).DataText);
    }

    [Fact]
    public void Multi_line_data_is_joined_with_LF_and_keeps_empty_lines()
    {
        var events = ParseWhole("data: first\ndata:\ndata: third\n\n");

        Assert.Equal("first\n\nthird", Assert.Single(events).DataText);
    }

    [Fact]
    public void Event_type_applies_to_one_event_only()
    {
        var events = ParseWhole("event: message_start\ndata: 1\n\ndata: 2\n\nevent: ping\ndata: 3\n\n");

        Assert.Equal(["message_start", null, "ping"], events.Select(e => e.EventType));
    }

    [Fact]
    public void Empty_event_type_means_default()
    {
        var events = ParseWhole("event:\ndata: 1\n\n");

        Assert.Null(Assert.Single(events).EventType);
    }

    [Fact]
    public void Last_event_id_persists_across_events_until_changed()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("id: 7\ndata: a\n\ndata: b\n\nid: 9\ndata: c\n\nid\ndata: d\n\n"u8, events);

        Assert.Equal(["7", "7", "9", ""], events.Select(e => e.LastEventId));
        Assert.Equal(string.Empty, parser.LastEventId);
    }

    [Fact]
    public void Id_set_in_an_event_without_data_still_counts()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("id: 3\n\ndata: a\n\n"u8, events);

        Assert.Equal("3", Assert.Single(events).LastEventId);
        Assert.Equal("3", parser.LastEventId);
    }

    [Fact]
    public void Id_containing_NUL_is_ignored()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("id: 1\ndata: a\n\nid: 2\u00003\ndata: b\n\n"u8, events);

        Assert.Equal(["1", "1"], events.Select(e => e.LastEventId));
        Assert.Equal("1", parser.LastEventId);
    }

    [Fact]
    public void Retry_accepts_digits_only()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("retry: 1500\ndata: a\n\nretry: 12x\ndata: b\n\nretry: -5\ndata: c\n\nretry:\ndata: d\n\nretry: 99999999999\ndata: e\n\n"u8, events);

        Assert.Equal(5, events.Count);
        Assert.Equal(1500, events[0].RetryMs);
        Assert.Equal(1500, parser.RetryMs);
        Assert.All(events.Skip(1), e => Assert.Null(e.RetryMs));
    }

    [Fact]
    public void Retry_is_reported_on_the_event_it_arrived_with()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("data: a\n\nretry: 250\ndata: b\n\ndata: c\n\n"u8, events);

        Assert.Equal([null, 250, null], events.Select(e => e.RetryMs));
        Assert.Equal(250, parser.RetryMs);
    }

    [Fact]
    public void Only_one_space_after_the_colon_is_dropped()
    {
        var events = ParseWhole("data:no-space\n\ndata: one\n\ndata:  two\n\nevent:  spaced\ndata:\tx\n\n");

        Assert.Equal(["no-space", "one", " two", "\tx"], events.Select(e => e.DataText));
        Assert.Equal(" spaced", events[3].EventType);
    }

    [Fact]
    public void Colons_after_the_first_belong_to_the_value()
    {
        var events = ParseWhole("data: {\"a\":\"b:c\"}\n\n");

        Assert.Equal("{\"a\":\"b:c\"}", Assert.Single(events).DataText);
    }

    [Fact]
    public void Field_without_colon_has_empty_value()
    {
        // "data" alone adds an empty data line: two of them give "\n".
        var events = ParseWhole("data\ndata\n\nid\nevent\ndata: x\n\n");

        Assert.Equal(2, events.Count);
        Assert.Equal("\n", events[0].DataText);
        Assert.Equal(string.Empty, events[1].LastEventId);
        Assert.Null(events[1].EventType);
    }

    [Fact]
    public void Single_empty_data_line_dispatches_an_empty_event()
    {
        var events = ParseWhole("data:\n\n");

        Assert.Equal(string.Empty, Assert.Single(events).DataText);
    }

    [Fact]
    public void Unknown_fields_and_field_names_with_other_case_are_ignored()
    {
        var events = ParseWhole("foo: bar\nData: nope\nDATA: nope\n data: nope\ndata: yes\n\n");

        Assert.Equal("yes", Assert.Single(events).DataText);
    }

    [Fact]
    public void Event_without_data_is_not_dispatched()
    {
        var events = ParseWhole("event: lonely\n\nid: 4\n\nretry: 10\n\n: comment\n\ndata: real\n\n");

        var single = Assert.Single(events);
        Assert.Equal("real", single.DataText);
        Assert.Null(single.EventType);
    }

    [Fact]
    public void Unfinished_event_at_end_of_input_is_dropped()
    {
        Assert.Empty(ParseWhole("data: partial"));
        Assert.Empty(ParseWhole("data: partial\n"));
        Assert.Empty(ParseWhole("data: partial\r\n"));
        Assert.Equal(["done"], ParseWhole("data: done\n\ndata: partial\n").Select(e => e.DataText));
    }

    [Fact]
    public void Complete_resets_the_pending_event_but_keeps_last_event_id()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("id: 5\ndata: lost\n"u8, events);
        parser.Complete(events);
        parser.Feed("data: next\n\n"u8, events);

        var single = Assert.Single(events);
        Assert.Equal("next", single.DataText);
        Assert.Equal("5", single.LastEventId);
    }

    [Fact]
    public void Leading_BOM_is_dropped()
    {
        var bytes = "\uFEFFdata: a\n\n"u8.ToArray();

        var events = ParseWhole(bytes);

        Assert.Equal("a", Assert.Single(events).DataText);
    }

    [Fact]
    public void Leading_BOM_before_a_field_name_still_lets_the_field_parse()
    {
        // Without dropping the BOM the first field would be "\uFEFFevent" and be ignored.
        var events = ParseWhole("\uFEFFevent: first\ndata: a\n\n"u8.ToArray());

        Assert.Equal("first", Assert.Single(events).EventType);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Leading_BOM_split_across_chunks_is_dropped(int split)
    {
        var bytes = "\uFEFFevent: e\ndata: a\n\n"u8.ToArray();

        var events = ParseInChunks(bytes, split);

        var single = Assert.Single(events);
        Assert.Equal("e", single.EventType);
        Assert.Equal("a", single.DataText);
    }

    [Fact]
    public void Leading_BOM_fed_byte_by_byte_is_dropped()
    {
        var events = ParseByteByByte("\uFEFFevent: e\ndata: a\n\n"u8.ToArray());

        Assert.Equal("e", Assert.Single(events).EventType);
    }

    [Fact]
    public void Only_one_BOM_is_dropped()
    {
        // A second BOM is part of the first field name, which then is unknown.
        var events = ParseWhole("\uFEFF\uFEFFdata: a\n\ndata: b\n\n"u8.ToArray());

        Assert.Equal("b", Assert.Single(events).DataText);
    }

    [Fact]
    public void BOM_later_in_the_stream_is_kept_as_data()
    {
        var events = ParseWhole("data: \uFEFFx\n\n"u8.ToArray());

        Assert.Equal("\uFEFFx", Assert.Single(events).DataText);
    }

    [Fact]
    public void Start_that_looks_like_a_BOM_prefix_but_is_not_is_kept()
    {
        // 0xEF starts the BOM; here it starts a UTF-8 letter inside an unknown field, then a real event follows.
        var bytes = Encoding.UTF8.GetBytes("\uF000x: y\ndata: a\n\n");

        Assert.Equal("a", Assert.Single(ParseByteByByte(bytes)).DataText);
        Assert.Equal("a", Assert.Single(ParseWhole(bytes)).DataText);
    }

    [Fact]
    public void Short_input_that_is_a_BOM_prefix_is_still_processed_at_completion()
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed("\n"u8, events);
        parser.Feed("data: a\n\n"u8, events);
        parser.Complete(events);

        Assert.Equal("a", Assert.Single(events).DataText);
    }

    [Fact]
    public void Multi_byte_UTF8_split_across_chunks_is_reassembled()
    {
        var bytes = "data: Zürich – 東京 🚀\n\n"u8.ToArray();

        Assert.Equal("Zürich – 東京 🚀", Assert.Single(ParseByteByByte(bytes)).DataText);
    }

    [Fact]
    public void IsDone_recognises_the_sentinel_only()
    {
        var events = ParseWhole("data: [DONE]\n\ndata: [DONE] \n\n: [DONE]\n\n", surfaceComments: true);

        Assert.Equal([true, false, false], events.Select(e => e.IsDone));
    }

    public static TheoryData<string> ByteByByteCases() => new()
    {
        "data: a\n\n",
        "\uFEFFid: 1\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n: c\r\ndata: c\r\r",
        "data: a\rdata: b\r\rretry: 300\nid: q\ndata\n\nevent: e\r\n\r\n",
        ": only a comment\n\ndata: end-without-blank",
        "data:x\n\n\n\n\ndata:y\r\n\r\n",
    };

    [Theory]
    [MemberData(nameof(ByteByByteCases))]
    public void Byte_by_byte_feeding_gives_the_same_events_as_whole_buffer(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);

        var whole = Describe(ParseWhole(bytes, surfaceComments: true));
        var byteByByte = Describe(ParseByteByByte(bytes, surfaceComments: true));

        Assert.NotEmpty(whole);
        Assert.Equal(whole, byteByByte);
    }

    [Fact]
    public void Feeding_a_sequence_of_segments_matches_whole_buffer()
    {
        var bytes = "data: a\r\n\r\ndata: b\r\n\r\n"u8.ToArray();
        var sequence = SequenceOf(bytes, 7, 8, 9, 13);
        var parser = new SseParser();
        var events = new List<SseEvent>();

        parser.Feed(sequence, events);
        parser.Complete(events);

        Assert.Equal(["a", "b"], events.Select(e => e.DataText));
    }

    [Fact]
    public async Task Reader_yields_events_from_a_stream_and_drops_the_unfinished_tail()
    {
        var bytes = "\uFEFF: hi\r\nid: 1\r\ndata: a\r\n\r\ndata: b\rdata: c\r\rdata: tail"u8.ToArray();
        using var stream = new MemoryStream(bytes);
        var events = new List<SseEvent>();

        await foreach (var e in SseReader.ReadAsync(stream, surfaceComments: true, CancellationToken.None))
        {
            events.Add(e);
        }

        Assert.Equal(["comment||||hi", "event||1||a", "event||1||b\nc"], Describe(events));
    }

    [Fact]
    public async Task Reader_across_small_reads_matches_whole_buffer_for_split_CRLF_and_BOM()
    {
        var bytes = "\uFEFFdata: a\r\n\r\ndata: b\r\n\r\n"u8.ToArray();
        await using var stream = new TrickleStream(bytes);
        var events = new List<string>();

        await foreach (var e in SseReader.ReadAsync(stream, cancellationToken: CancellationToken.None))
        {
            events.Add(e.DataText);
        }

        Assert.Equal(["a", "b"], events);
    }

    [Fact]
    public async Task Reader_observes_cancellation()
    {
        using var cts = new CancellationTokenSource();
        await using var stream = new NeverEndingStream();
        var enumerator = SseReader.ReadAsync(stream, cancellationToken: cts.Token).GetAsyncEnumerator(CancellationToken.None);
        var moveNext = enumerator.MoveNextAsync().AsTask();
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => moveNext.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        await enumerator.DisposeAsync();
    }

    private static System.Buffers.ReadOnlySequence<byte> SequenceOf(byte[] bytes, params int[] splits)
    {
        Segment? first = null;
        Segment? last = null;
        var start = 0;
        foreach (var split in splits.Append(bytes.Length))
        {
            var memory = bytes.AsMemory(start, split - start);
            if (first is null)
            {
                first = last = new Segment(memory, 0);
            }
            else
            {
                last = last!.Append(memory);
            }

            start = split;
        }

        return new System.Buffers.ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : System.Buffers.ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>Returns at most one byte per read, like a slow network.</summary>
    private sealed class TrickleStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, 1));

        public override int Read(Span<byte> buffer) => base.Read(buffer[..Math.Min(buffer.Length, 1)]);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, 1)], cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            base.ReadAsync(buffer, offset, Math.Min(count, 1), cancellationToken);
    }

    /// <summary>A stream whose reads wait until cancelled.</summary>
    private sealed class NeverEndingStream : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return 0;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
