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
/// </summary>
public sealed class ReplaySegmentHeapTests
{
    [Fact]
    public void New_segments_are_allocated_on_the_pinned_object_heap()
    {
        var options = new GatewayOptions();
        var registry = new StreamRegistry(options, TimeProvider.System, new ClusterNode(null!, null!, null!, options, NullLogger<ClusterNode>.Instance));

        var segment = registry.RentSegment();

        // A new small array starts in gen 0; the pinned (and large) object heaps belong to the oldest generation from
        // the start. Asked at once, before any collection could have promoted it. (The process-wide pinned-heap size
        // is no witness: its free space, left by other tests, takes new arrays without growing.)
        Assert.Equal(GC.MaxGeneration, GC.GetGeneration(segment));
        Assert.Equal(registry.SegmentBytes, segment.Length);
        Assert.True(segment.Length < 85_000, "small enough that only pinning, not size, puts it in the oldest generation");
    }
}
