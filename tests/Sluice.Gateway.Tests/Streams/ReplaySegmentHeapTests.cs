using Microsoft.Extensions.Logging.Abstractions;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Xunit;

namespace Sluice.Gateway.Tests.Streams;

/// <summary>
/// Replay segments live on the pinned object heap: the replay budget (64 MiB by default) of long-lived, reference-free
/// byte arrays would otherwise make up most of gen 2, whose allocation budget grows with it — finished streams' small
/// objects then piled up for ~150,000 streams between full collections and RSS rode a 50 MB sawtooth (bench/soak.sh).
/// Runs alone (the soak collection), so the pinned heap's growth is this test's own.
/// </summary>
[Collection(SoakCollection.Name)]
public sealed class ReplaySegmentHeapTests
{
    [Fact]
    public void New_segments_are_allocated_on_the_pinned_object_heap()
    {
        var options = new GatewayOptions();
        var registry = new StreamRegistry(options, TimeProvider.System, new ClusterNode(null!, null!, null!, options, NullLogger<ClusterNode>.Instance));
        var before = PinnedHeapBytes();

        var held = new byte[256][];
        for (var i = 0; i < held.Length; i++)
        {
            held[i] = registry.RentSegment();
        }

        var grown = PinnedHeapBytes() - before;
        GC.KeepAlive(held);

        Assert.True(grown >= held.Length * (long)registry.SegmentBytes, $"the pinned object heap grew {grown:N0} bytes for {held.Length} segments of {registry.SegmentBytes:N0}");
    }

    private static long PinnedHeapBytes()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        // GenerationInfo: gen 0, gen 1, gen 2, the large object heap, the pinned object heap.
        return GC.GetGCMemoryInfo(GCKind.FullBlocking).GenerationInfo[4].SizeAfterBytes;
    }
}
