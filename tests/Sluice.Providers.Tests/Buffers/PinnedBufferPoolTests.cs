using System.Collections.Concurrent;
using Sluice.Providers.Buffers;

namespace Sluice.Providers.Tests.Buffers;

/// <summary>
/// The pool of buffers a stream holds for its whole life: new ones on the pinned object heap (a collection never copies
/// them), returned ones reused, at most a fixed number kept, other sizes left to the collector.
/// </summary>
public sealed class PinnedBufferPoolTests
{
    [Fact]
    public void A_new_buffer_has_the_pool_size_and_lives_on_the_pinned_object_heap()
    {
        var pool = new PinnedBufferPool(16 * 1024, 4);

        var buffer = pool.Rent();

        Assert.Equal(16 * 1024, buffer.Length);
        // A new small array starts in gen 0; the pinned object heap belongs to the oldest generation from the start.
        Assert.Equal(GC.MaxGeneration, GC.GetGeneration(buffer));
        Assert.Equal(0, pool.Retained);
    }

    [Fact]
    public void A_returned_buffer_is_rented_again()
    {
        var pool = new PinnedBufferPool(4096, 4);
        var buffer = pool.Rent();

        pool.Return(buffer);

        Assert.Equal(1, pool.Retained);
        Assert.Same(buffer, pool.Rent());
        Assert.Equal(0, pool.Retained);
        Assert.NotSame(buffer, pool.Rent());
    }

    [Fact]
    public void At_most_max_retained_buffers_are_kept()
    {
        var pool = new PinnedBufferPool(1024, 3);
        var buffers = Enumerable.Range(0, 5).Select(_ => pool.Rent()).ToArray();

        foreach (var buffer in buffers)
        {
            pool.Return(buffer);
        }

        Assert.Equal(3, pool.Retained);
        var again = Enumerable.Range(0, 3).Select(_ => pool.Rent()).ToArray();
        Assert.Equal(0, pool.Retained);
        // By reference (xUnit compares arrays element by element); the first three came back, in whatever order the
        // cores' slots and the queue give them.
        Assert.All(again, a => Assert.Contains(buffers[..3], b => ReferenceEquals(a, b)));
        Assert.Equal(3, again.Distinct(ReferenceEqualityComparer.Instance).Count());
        var fresh = pool.Rent();
        Assert.DoesNotContain(buffers, b => ReferenceEquals(b, fresh));
    }

    [Fact]
    public void A_buffer_of_another_size_is_not_kept()
    {
        var pool = new PinnedBufferPool(1024, 3);
        var other = new byte[2048];

        pool.Return(other);

        Assert.Equal(0, pool.Retained);
        Assert.NotSame(other, pool.Rent());
    }

    [Fact]
    public void Release_sends_the_pool_size_back_to_the_pool_and_a_grown_buffer_to_the_shared_array_pool()
    {
        var pool = new PinnedBufferPool(1024, 3);
        var own = pool.Rent();
        var grown = System.Buffers.ArrayPool<byte>.Shared.Rent(4096);

        pool.Release(own);
        pool.Release(grown);

        Assert.Equal(1, pool.Retained);
        Assert.Same(own, pool.Rent());
        Assert.NotSame(grown, pool.Rent());
    }

    [Fact]
    public async Task Concurrent_renters_never_share_a_buffer()
    {
        var pool = new PinnedBufferPool(64, 8);
        var inUse = new ConcurrentDictionary<byte[], bool>(ReferenceEqualityComparer.Instance);
        var shared = 0;

        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 20_000; i++)
            {
                var buffer = pool.Rent();
                if (!inUse.TryAdd(buffer, true))
                {
                    Interlocked.Increment(ref shared);
                }

                inUse.TryRemove(buffer, out var _);
                pool.Return(buffer);
            }
        })));

        Assert.Equal(0, shared);
        Assert.InRange(pool.Retained, 1, 8);
    }

    [Fact]
    public void Bad_sizes_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PinnedBufferPool(0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PinnedBufferPool(16, -1));
    }
}
