using Sluice.Gateway.Http;
using Sluice.Providers.Buffers;
using Xunit;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// A resumable stream's frame scratch: its first 4 KiB (all a paced stream needs, held for the stream's life) come from
/// the pinned pool and go back to it; a scratch grown for a large upstream read hands the pooled buffer back at once.
/// </summary>
public sealed class ScratchBufferTests
{
    [Fact]
    public void The_first_buffer_comes_from_the_pinned_pool_and_goes_back_on_dispose()
    {
        var pool = new PinnedBufferPool(4096, 4);
        var scratch = new HttpStreamSink.ScratchBuffer(pool);
        var buffer = scratch.Buffer;
        Assert.Equal(4096, buffer.Length);
        Assert.Equal(GC.MaxGeneration, GC.GetGeneration(buffer));

        "data: x\n\n"u8.CopyTo(scratch.GetSpan(9));
        scratch.Advance(9);
        Assert.Equal("data: x\n\n"u8.ToArray(), scratch.WrittenSpan.ToArray());
        scratch.Dispose();

        Assert.Equal(1, pool.Retained);
        Assert.Same(buffer, pool.Rent());
    }

    [Fact]
    public void Growing_keeps_what_was_written_and_returns_the_pooled_buffer()
    {
        var pool = new PinnedBufferPool(4096, 4);
        var scratch = new HttpStreamSink.ScratchBuffer(pool);
        var first = scratch.Buffer;
        scratch.GetSpan(3000).Fill((byte)'a');
        scratch.Advance(3000);

        scratch.GetSpan(3000).Fill((byte)'b');
        scratch.Advance(3000);

        Assert.NotSame(first, scratch.Buffer);
        Assert.Equal(1, pool.Retained);
        Assert.Equal(6000, scratch.WrittenCount);
        Assert.True(scratch.WrittenSpan[..3000].IndexOfAnyExcept((byte)'a') < 0);
        Assert.True(scratch.WrittenSpan[3000..].IndexOfAnyExcept((byte)'b') < 0);
        scratch.Dispose();
        Assert.Equal(1, pool.Retained);
    }
}
