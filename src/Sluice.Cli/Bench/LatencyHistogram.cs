using System.Numerics;

namespace Sluice.Cli.Bench;

/// <summary>
/// A fixed-size log-linear histogram of microsecond values (exact below 256 µs, then 128 buckets per power of
/// two: under 0.8 % error). Inter-chunk gaps run into the millions per benchmark; this records each in O(1)
/// with no allocation, where keeping every value would cost tens of megabytes.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int LinearLimit = 256;
    private const int SubBuckets = 128;
    private const int MaxShift = 30;
    private const int BucketCount = LinearLimit + (MaxShift * SubBuckets);

    private readonly long[] _counts = new long[BucketCount];

    public long Count { get; private set; }

    public long Max { get; private set; }

    public void Record(long microseconds)
    {
        if (microseconds < 0)
        {
            microseconds = 0;
        }

        _counts[IndexOf(microseconds)]++;
        Count++;
        if (microseconds > Max)
        {
            Max = microseconds;
        }
    }

    public void Add(LatencyHistogram other)
    {
        ArgumentNullException.ThrowIfNull(other);
        for (var i = 0; i < BucketCount; i++)
        {
            _counts[i] += other._counts[i];
        }

        Count += other.Count;
        Max = Math.Max(Max, other.Max);
    }

    /// <summary>The value at percentile <paramref name="percent"/> (nearest rank; a bucket's upper edge, capped at the maximum), or 0 when empty.</summary>
    public long Percentile(double percent)
    {
        if (Count == 0)
        {
            return 0;
        }

        var rank = Math.Max(1, (long)Math.Ceiling(percent / 100 * Count));
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return Math.Min(UpperEdge(i), Max);
            }
        }

        return Max;
    }

    internal static int IndexOf(long value)
    {
        if (value < LinearLimit)
        {
            return (int)value;
        }

        var shift = 63 - BitOperations.LeadingZeroCount((ulong)value) - 7;
        if (shift > MaxShift)
        {
            return BucketCount - 1;
        }

        return LinearLimit + ((shift - 1) * SubBuckets) + (int)((value >> shift) - SubBuckets);
    }

    internal static long UpperEdge(int index)
    {
        if (index < LinearLimit)
        {
            return index;
        }

        var shift = ((index - LinearLimit) / SubBuckets) + 1;
        var sub = ((index - LinearLimit) % SubBuckets) + SubBuckets;
        return ((long)(sub + 1) << shift) - 1;
    }
}
