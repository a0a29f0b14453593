using System.Text;
using Sluice.Providers.Buffers;
using Sluice.Providers.Upstream;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>
/// The upstream record reader: the same records whatever sizes the body arrives in (down to one byte per read), whether
/// a record is handed out as a slice of the read buffer or gathered because its bytes had to move.
/// </summary>
public sealed class UpstreamEventReaderTests
{
    // BOM; CRLF, CR and LF line ends; a comment, id and retry lines; an event type; a record of two data lines; a stray
    // line (kept, not a record); a data line so long it outgrows the first buffer; a last event with no blank line.
    private static readonly string Sse =
        "\uFEFFdata: {\"n\":1}\r\n\r\n"
        + ": keep-alive\n"
        + "id: 7\nretry: 100\ndata: {\"n\":2}\r\r"
        + "event: message_delta\ndata: {\"n\":3}\n\n"
        + "data: line one\ndata: line two\n\n"
        + "{\"error\":{\"message\":\"stray\"}}\n\n"
        + "data: " + new string('x', 40_000) + "\n\n"
        + "data:no-space\n\n"
        + "data: {\"n\":\"last\"}";

    private static readonly (string Type, string Data)[] SseRecords =
    [
        ("", "{\"n\":1}"),
        ("", "{\"n\":2}"),
        ("message_delta", "{\"n\":3}"),
        ("", "line one\nline two"),
        ("", new string('x', 40_000)),
        ("", "no-space"),
        ("", "{\"n\":\"last\"}"),
    ];

    public static TheoryData<int> ReadSizes() => [1, 2, 3, 5, 7, 13, 64, 1000, 16_384, int.MaxValue];

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public async Task Server_sent_events_read_the_same_in_any_read_sizes(int readSize)
    {
        var (records, stray) = await ReadAllAsync(Sse, UpstreamFraming.ServerSentEvents, readSize);

        Assert.Equal(SseRecords, records);
        Assert.Equal("{\"error\":{\"message\":\"stray\"}}\n", stray);
    }

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public async Task Ndjson_lines_read_the_same_in_any_read_sizes(int readSize)
    {
        var body = "{\"a\":1}\n  \n{\"b\":2}\r\n" + "{\"c\":\"" + new string('y', 20_000) + "\"}\n{\"d\":4}";

        var (records, _) = await ReadAllAsync(body, UpstreamFraming.NdJson, readSize);

        Assert.Equal(["{\"a\":1}", "{\"b\":2}", "{\"c\":\"" + new string('y', 20_000) + "\"}", "{\"d\":4}"], records.Select(r => r.Data));
    }

    [Fact]
    public async Task A_record_whose_blank_line_comes_later_survives_the_buffer_moving_under_it()
    {
        // Reads end right after the data line, and later bytes force the buffer to compact and then to grow before
        // the blank line arrives: the record was first held as a slice of the buffer, and must come out unchanged.
        var head = "data: " + new string('a', 100) + "\n";
        var parts = new[] { "data: {\"n\":0}\n\n" + head, "data: second line\n", ": " + new string('c', 40_000) + "\n", "\n" };

        var (records, _) = await ReadAllAsync(parts, UpstreamFraming.ServerSentEvents);

        Assert.Equal([("", "{\"n\":0}"), ("", new string('a', 100) + "\nsecond line")], records);
    }

    private static Task<(List<(string Type, string Data)> Records, string Stray)> ReadAllAsync(string body, UpstreamFraming framing, int readSize)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        var parts = new List<byte[]>();
        for (var i = 0; i < bytes.Length; i += Math.Min(readSize, bytes.Length - i))
        {
            parts.Add(bytes[i..Math.Min(bytes.Length, i + Math.Min(readSize, bytes.Length))]);
        }

        return ReadAllAsync(parts, framing);
    }

    [Fact]
    public async Task The_read_buffer_comes_from_the_pinned_pool_and_goes_back_to_it()
    {
        // A stream holds its read buffer for its whole life: from the pool, so thousands of open streams' buffers are not
        // new gen-0 arrays that every collection copies while the streams last.
        var pool = new PinnedBufferPool(16 * 1024, 4);
        var reader = new UpstreamEventReader(new PartsStream([Encoding.UTF8.GetBytes("data: {\"n\":1}\n\n")]), UpstreamFraming.ServerSentEvents, pool);
        var buffer = reader.ReadBuffer;
        Assert.Equal(16 * 1024, buffer.Length);
        Assert.Equal(GC.MaxGeneration, GC.GetGeneration(buffer));

        Assert.True(await reader.ReadAsync(CancellationToken.None));
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(reader.Data));
        reader.ReleaseBuffer();

        Assert.Equal(1, pool.Retained);
        Assert.Same(buffer, pool.Rent());
    }

    [Fact]
    public async Task A_buffer_grown_for_a_long_line_hands_the_pooled_one_back_at_once()
    {
        var pool = new PinnedBufferPool(16 * 1024, 4);
        var line = "data: " + new string('x', 40_000) + "\n\n";
        var reader = new UpstreamEventReader(new PartsStream([Encoding.UTF8.GetBytes(line)]), UpstreamFraming.ServerSentEvents, pool);
        var first = reader.ReadBuffer;

        Assert.True(await reader.ReadAsync(CancellationToken.None));
        Assert.Equal(40_000, reader.Data.Length);

        Assert.NotSame(first, reader.ReadBuffer);
        Assert.Equal(1, pool.Retained);
        reader.ReleaseBuffer();
        Assert.Equal(1, pool.Retained);
    }

    private static Task<(List<(string Type, string Data)> Records, string Stray)> ReadAllAsync(string[] parts, UpstreamFraming framing) =>
        ReadAllAsync(parts.Select(Encoding.UTF8.GetBytes).ToList(), framing);

    private static async Task<(List<(string Type, string Data)> Records, string Stray)> ReadAllAsync(List<byte[]> parts, UpstreamFraming framing)
    {
        var reader = new UpstreamEventReader(new PartsStream(parts), framing);
        var records = new List<(string, string)>();
        while (await reader.ReadAsync(CancellationToken.None))
        {
            records.Add((Encoding.UTF8.GetString(reader.EventType), Encoding.UTF8.GetString(reader.Data)));
        }

        var stray = Encoding.UTF8.GetString(reader.StrayText);
        reader.ReleaseBuffer();
        Assert.True(reader.Data.IsEmpty);
        return (records, stray);
    }

    /// <summary>A body that delivers exactly one part per read (as a socket delivering one segment at a time would).</summary>
    private sealed class PartsStream(List<byte[]> parts) : Stream
    {
        private int _next;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_next == parts.Count)
            {
                return 0;
            }

            // A part bigger than the space offered is split, as a socket read would be.
            var part = parts[_next];
            var n = Math.Min(part.Length, buffer.Length);
            part.AsSpan(0, n).CopyTo(buffer);
            if (n == part.Length)
            {
                _next++;
            }
            else
            {
                parts[_next] = part[n..];
            }

            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
