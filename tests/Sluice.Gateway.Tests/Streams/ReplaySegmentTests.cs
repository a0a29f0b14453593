using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Protocol.Portal;
using Xunit;

namespace Sluice.Gateway.Tests.Streams;

/// <summary>
/// The replay buffer's reused segments: a stream reads back exactly what was appended, a finished stream's segments go
/// back to the pool when it is released and the next stream reuses them, and a reader of a released stream never gets
/// another stream's bytes.
/// </summary>
public sealed class ReplaySegmentTests
{
    private static StreamRegistry Registry(long budget = 64L * 1024 * 1024)
    {
        var options = new GatewayOptions();
        options.Streaming.ReplayBudgetBytes = budget;
        return new StreamRegistry(options, TimeProvider.System, new ClusterNode(null!, null!, null!, options, NullLogger<ClusterNode>.Instance));
    }

    private static ResumableStream Create(StreamRegistry registry, string owner = "team_a") =>
        registry.Create(new PortalStreamFormat(new PortalStreamWriter()), owner, keepsGenerating: false);

    private static byte[] FrameBytes(string text) => Encoding.UTF8.GetBytes($"data: {text}\n\n");

    // A fast upstream's whole answer as one call: `count` frames of ~300 bytes, what each reads back as, where each ends.
    private static (List<string> Expected, byte[] Bytes, int[] Ends) WholeAnswer(int count)
    {
        var expected = new List<string>();
        var bytes = new List<byte>();
        var ends = new int[count];
        for (var i = 0; i < count; i++)
        {
            var text = $"{{\"i\":{i},\"pad\":\"{new string('p', 280)}\"}}";
            expected.Add($"data: {text}\n\n");
            bytes.AddRange(FrameBytes(text));
            ends[i] = bytes.Count;
        }

        return (expected, bytes.ToArray(), ends);
    }

    private static List<string> ReadAll(ResumableStream stream)
    {
        var copy = new ArrayBufferWriter<byte>();
        var frames = new List<string>();
        for (var i = 0; i < stream.Count; i++)
        {
            Assert.True(stream.TryCopyFrame(i, copy, out _), $"frame {i} could not be read");
            frames.Add(Encoding.UTF8.GetString(copy.WrittenSpan));
        }

        return frames;
    }

    [Fact]
    public void Frames_read_back_exactly_across_segments_and_split_batches()
    {
        var registry = Registry();
        var stream = Create(registry);
        var expected = new List<string>();
        long sequence = 0;

        // ~40 KB in all: the stream needs three 16 KiB segments; every fifth call carries three frames at once.
        for (var i = 0; i < 300; i++)
        {
            var count = i % 5 == 0 ? 3 : 1;
            var batch = new List<byte>();
            for (var f = 0; f < count; f++)
            {
                var text = $"{{\"i\":{i},\"f\":{f},\"pad\":\"{new string('x', 20 + (i % 90))}\"}}";
                expected.Add($"data: {text}\n\n");
                batch.AddRange(FrameBytes(text));
            }

            sequence += count;
            stream.Append(batch.ToArray(), sequence, count);
        }

        Assert.Equal(expected, ReadAll(stream));
        Assert.Equal(sequence, stream.LastSequence);
        Assert.True(registry.TotalBytes >= 3 * StreamRegistry.MaxSegmentBytes);
    }

    [Fact]
    public void Each_frame_keeps_when_it_was_written_for_timed_replay()
    {
        var stream = Create(Registry());
        var before = System.Diagnostics.Stopwatch.GetTimestamp();
        stream.Append(FrameBytes("one"), 1, 1);
        Thread.Sleep(30);
        var middle = System.Diagnostics.Stopwatch.GetTimestamp();
        stream.Append([.. FrameBytes("two"), .. FrameBytes("three")], 3, 2);
        var after = System.Diagnostics.Stopwatch.GetTimestamp();

        var copy = new ArrayBufferWriter<byte>();
        var times = new long[3];
        for (var i = 0; i < 3; i++)
        {
            Assert.True(stream.TryCopyFrame(i, copy, out times[i]));
        }

        // Kept to the microsecond: each within a microsecond of the window it was appended in.
        var micro = System.Diagnostics.Stopwatch.Frequency / 1_000_000 + 1;
        Assert.InRange(times[0], before - micro, middle);
        Assert.InRange(times[1], middle - micro, after + micro);
        Assert.Equal(times[1], times[2]);
        Assert.True(System.Diagnostics.Stopwatch.GetElapsedTime(times[0], times[1]) >= TimeSpan.FromMilliseconds(29));
    }

    [Fact]
    public void A_frame_packs_segment_offset_and_time_and_saturates_late_times()
    {
        var frame = new Frame(int.MaxValue, Frame.MaxSegments - 1, StreamRegistry.MaxSegmentBytes - 1, 123_456, 42);
        Assert.Equal((int.MaxValue, Frame.MaxSegments - 1, StreamRegistry.MaxSegmentBytes - 1, 123_456, 42u), (frame.Sequence, frame.Segment, frame.Offset, frame.Length, frame.Micros));
        Assert.Equal(16, System.Runtime.CompilerServices.Unsafe.SizeOf<Frame>());

        var start = 1_000L;
        Assert.Equal(0u, Frame.MicrosSince(start, start - 5));
        Assert.Equal(2_000_000u, Frame.MicrosSince(start, start + (2 * System.Diagnostics.Stopwatch.Frequency)));
        Assert.Equal(uint.MaxValue, Frame.MicrosSince(start, start + (3 * 3600 * System.Diagnostics.Stopwatch.Frequency)));
    }

    [Fact]
    public void An_event_id_past_the_frame_index_range_stops_keeping_the_stream_instead_of_wrapping()
    {
        var stream = Create(Registry());
        stream.Append(FrameBytes("one"), 1, 1);
        stream.Append(FrameBytes("far"), (long)int.MaxValue + 1, 1);

        Assert.True(stream.Overflowed);
        Assert.False(stream.TryCopyFrame(0, new ArrayBufferWriter<byte>(), out _));
    }

    [Fact]
    public void A_released_finished_stream_gives_its_segments_to_the_next_stream_and_its_readers_get_nothing()
    {
        var registry = Registry();
        var first = Create(registry);
        first.Append(FrameBytes("first stream's secret"), 1, 1);
        first.Complete();
        Assert.Equal(0, registry.PooledSegments);

        registry.Remove(first);
        Assert.Equal(1, registry.PooledSegments);
        Assert.Equal(0, registry.TotalBytes);

        var second = Create(registry, "team_b");
        second.Append(FrameBytes("second"), 1, 1);
        Assert.Equal(0, registry.PooledSegments);

        var copy = new ArrayBufferWriter<byte>();
        Assert.False(first.TryCopyFrame(0, copy, out _));
        Assert.Equal(0, copy.WrittenCount);
        Assert.Equal(["data: second\n\n"], ReadAll(second));
    }

    [Fact]
    public void A_live_stream_that_is_removed_does_not_pool_segments_its_writer_may_still_hold()
    {
        var registry = Registry();
        var live = Create(registry);
        live.Append(FrameBytes("still generating"), 1, 1);

        registry.Remove(live);

        Assert.Equal(0, registry.PooledSegments);
        Assert.Equal(0, registry.TotalBytes);
    }

    [Fact]
    public void An_append_larger_than_a_segment_is_kept_whole_and_not_pooled()
    {
        var registry = Registry();
        var stream = Create(registry);
        var big = new string('y', StreamRegistry.MaxSegmentBytes * 2);
        stream.Append(FrameBytes(big), 1, 1);

        Assert.Equal([$"data: {big}\n\n"], ReadAll(stream));
        stream.Complete();
        registry.Remove(stream);
        Assert.Equal(0, registry.PooledSegments);
    }

    [Fact]
    public void A_call_of_many_frames_larger_than_a_segment_spreads_over_pooled_segments_and_keeps_every_frame_and_id()
    {
        // A fast upstream's whole answer in one read: 120 frames of ~300 bytes (~36 KB) in one call.
        var registry = Registry();
        var stream = Create(registry);
        var (expected, bytes, _) = WholeAnswer(120);

        stream.Append(bytes, 500, 120);

        Assert.Equal(expected, ReadAll(stream));
        Assert.Equal(500, stream.LastSequence);
        Assert.Equal(20, stream.IndexAfter(400));
        // Three whole segments (no odd-sized array), all of which go back to the pool.
        Assert.Equal(3L * StreamRegistry.MaxSegmentBytes, registry.TotalBytes);
        stream.Complete();
        registry.Remove(stream);
        Assert.Equal(3, registry.PooledSegments);
    }

    [Fact]
    public void Frames_whose_ends_the_writer_noted_are_split_there_not_at_blank_lines()
    {
        // The ends given put two events in the first frame: a split at blank lines would give three frames.
        var stream = Create(Registry());
        byte[] bytes = [.. FrameBytes("a"), .. FrameBytes("b"), .. FrameBytes("c")];
        var firstEnd = 2 * FrameBytes("a").Length;

        stream.Append(bytes, 7, [firstEnd, bytes.Length]);

        Assert.Equal(["data: a\n\ndata: b\n\n", "data: c\n\n"], ReadAll(stream));
        Assert.Equal(7, stream.LastSequence);
        Assert.Equal(1, stream.IndexAfter(6));
    }

    [Fact]
    public void Frames_with_noted_ends_spread_over_segments_keep_every_frame_and_id_and_an_empty_one_only_uses_its_id()
    {
        var registry = Registry();
        var stream = Create(registry);
        var (expected, bytes, frameEnds) = WholeAnswer(120);
        // After frame 10, a call that wrote nothing: its id is skipped, no frame kept.
        int[] ends = [.. frameEnds[..11], frameEnds[10], .. frameEnds[11..]];

        stream.Append(bytes, 621, ends);

        Assert.Equal(expected, ReadAll(stream));
        Assert.Equal(621, stream.LastSequence);
        // Ids 501..511, 512 unused, then 513..621: frame 11 carries id 513.
        Assert.Equal(10, stream.IndexAfter(510));
        Assert.Equal(11, stream.IndexAfter(511));
        Assert.Equal(11, stream.IndexAfter(512));
        Assert.Equal(12, stream.IndexAfter(513));
        Assert.Equal(3L * StreamRegistry.MaxSegmentBytes, registry.TotalBytes);
    }

    [Fact]
    public void A_stream_that_outgrows_its_buffer_hands_its_segments_back()
    {
        var options = new GatewayOptions();
        options.Streaming.MaxStreamBufferBytes = 20_000;
        var registry = new StreamRegistry(options, TimeProvider.System, new ClusterNode(null!, null!, null!, options, NullLogger<ClusterNode>.Instance));
        var stream = Create(registry);
        for (var i = 1; i <= 30; i++)
        {
            stream.Append(FrameBytes(new string('z', 1000)), i, 1);
        }

        Assert.True(stream.Overflowed);
        Assert.Equal(0, stream.Count);
        Assert.Equal(2, registry.PooledSegments);
        Assert.Equal(0, registry.TotalBytes);
    }

    [Fact]
    public void The_pool_keeps_at_most_the_budgets_worth_of_segments()
    {
        // A 64 KiB budget: 4 KiB segments, so at most 16 pooled.
        var registry = Registry(budget: 64 * 1024);
        Assert.Equal(4 * 1024, registry.SegmentBytes);
        var streams = new List<ResumableStream>();
        for (var i = 0; i < 40; i++)
        {
            var stream = Create(registry);
            stream.Append(FrameBytes($"answer {i}"), 1, 1);
            stream.Complete();
            streams.Add(stream);
        }

        foreach (var stream in streams)
        {
            registry.Remove(stream);
        }

        Assert.InRange(registry.PooledSegments, 1, 16);
        Assert.Equal(0, registry.TotalBytes);
    }

    [Fact]
    public async Task A_reader_racing_the_release_and_reuse_only_ever_sees_its_own_streams_bytes()
    {
        var registry = Registry();
        var mine = Encoding.UTF8.GetBytes("data: " + new string('A', 200) + "\n\n");
        var theirs = Encoding.UTF8.GetBytes("data: " + new string('B', 200) + "\n\n");

        // Every other round the next stream's frame is longer than a segment: through a reused frame block, the old
        // stream's reader would see a frame pointing past the end of its own 16 KiB segment.
        var theirsLong = Encoding.UTF8.GetBytes("data: " + new string('C', 40_000) + "\n\n");
        var copy = new ArrayBufferWriter<byte>();
        var reads = 0;
        for (var round = 0; round < 2_000; round++)
        {
            var stream = Create(registry);
            stream.Append(mine, 1, 1);
            stream.Complete();
            using var go = new ManualResetEventSlim();
            var reader = Task.Run(() =>
            {
                go.Set();
                for (var i = 0; i < 50; i++)
                {
                    if (stream.TryCopyFrame(0, copy, out _))
                    {
                        // Anything accepted must be this stream's frame, whole.
                        Assert.True(copy.WrittenSpan.SequenceEqual(mine), "a reader got bytes that were not its stream's");
                        reads++;
                    }
                }
            });
            Assert.True(go.Wait(TimeSpan.FromSeconds(30)), "the reader started");
            registry.Remove(stream);
            var next = Create(registry, "team_b");
            next.Append(round % 2 == 0 ? theirs : theirsLong, 1, 1);
            await reader;
            next.Complete();
            registry.Remove(next);
        }

        Assert.True(reads > 0);
    }

    [Fact]
    public void A_released_finished_stream_gives_its_frame_blocks_to_the_next_stream_and_a_live_one_does_not()
    {
        var registry = Registry();
        var first = Create(registry);
        for (var i = 1; i <= ResumableStream.FrameBlockSize + 1; i++)
        {
            first.Append(FrameBytes($"frame {i}"), i, 1);
        }

        first.Complete();
        registry.Remove(first);
        Assert.Equal(2, registry.PooledFrameBlocks);

        var second = Create(registry, "team_b");
        second.Append(FrameBytes("second"), 1, 1);
        Assert.Equal(1, registry.PooledFrameBlocks);
        Assert.Equal(["data: second\n\n"], ReadAll(second));
        Assert.False(first.TryCopyFrame(0, new ArrayBufferWriter<byte>(), out _));

        // Its writer may still be appending: a live stream's block goes to the GC.
        registry.Remove(second);
        Assert.Equal(1, registry.PooledFrameBlocks);
    }

    [Fact]
    public void A_finished_stream_keeps_neither_its_format_nor_its_generation_source()
    {
        var registry = Registry();
        var (stream, format) = CreateWithWeakFormat(registry);
        var generation = stream.Generation;
        Assert.True(generation.CanBeCanceled);
        stream.Append(FrameBytes("kept for replay"), 1, 1);
        stream.Complete();

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        // The stream is kept for replay with its frames, its content type and the frames readers write...
        Assert.True(registry.TryGet(stream.Id, "team_a", out _));
        Assert.Equal(["data: kept for replay\n\n"], ReadAll(stream));
        Assert.Equal("text/event-stream", stream.ContentType);
        Assert.Equal("portal", stream.Frames.Name);
        var error = new ArrayBufferWriter<byte>();
        stream.Frames.WriteError(error, 2, new Sluice.Protocol.ErrorInfo("lost", "server_error", null, "stream_lost"));
        Assert.StartsWith("id: 2\ndata: {", Encoding.UTF8.GetString(error.WrittenSpan), StringComparison.Ordinal);

        // ...but not the format (its writer and buffers), and nothing to cancel any more.
        Assert.False(format.IsAlive, "the finished stream still holds its format");
        Assert.False(stream.Generation.CanBeCanceled);
        stream.CancelGeneration();
        Assert.False(generation.IsCancellationRequested);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (ResumableStream Stream, WeakReference Format) CreateWithWeakFormat(StreamRegistry registry)
    {
        var format = new PortalStreamFormat(new PortalStreamWriter());
        return (registry.Create(format, "team_a", keepsGenerating: false), new WeakReference(format));
    }

    [Fact]
    public void Only_formats_with_replay_frames_can_be_kept()
    {
        var registry = Registry();
        var format = new OllamaStreamFormat(new Sluice.Protocol.Ollama.OllamaStreamWriter("m", Sluice.Protocol.Ollama.OllamaApi.Chat, 0));
        Assert.Throws<ArgumentException>(() => registry.Create(format, "team_a", keepsGenerating: false));
        Assert.Same(ReplayFrames.OpenAI, ReplayFrames.ForName("openai"));
        Assert.Same(ReplayFrames.OpenAI, ReplayFrames.ForName(null));
        Assert.Equal("portal", ReplayFrames.ForName("portal").Name);
    }
}
