using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Sluice.Gateway.Http;

/// <summary>
/// Counts per key (connections per address, request bytes per caller) that go up to a limit and back down, holding
/// only the keys with something counted: a key is forgotten when its count returns to zero.
/// </summary>
/// <remarks>
/// Lock-free. A count that reaches zero is marked dead before its entry is removed, so a concurrent add that picked up
/// the old entry sees the mark and starts again on a fresh one — no add is ever lost on an entry no longer in the table.
/// </remarks>
internal sealed class CountsByKey<TKey>(IEqualityComparer<TKey>? comparer = null)
    where TKey : notnull
{
    private const long Dead = long.MinValue / 2;

    private readonly ConcurrentDictionary<TKey, StrongBox<long>> _counts = new(comparer);

    /// <summary>The count of <paramref name="key"/> now (0 when it has none).</summary>
    public long this[TKey key] => _counts.TryGetValue(key, out var count) ? Math.Max(0, Interlocked.Read(ref count.Value)) : 0;

    /// <summary>Adds <paramref name="amount"/> (&gt; 0) unless the count would pass <paramref name="limit"/>; true if added.</summary>
    public bool TryAdd(TKey key, long amount, long limit)
    {
        while (true)
        {
            var count = _counts.GetOrAdd(key, static _ => new StrongBox<long>());
            var now = Interlocked.Add(ref count.Value, amount);
            if (now < 0)
            {
                // A dead entry on its way out of the table: start again on a fresh one.
                continue;
            }

            if (now <= limit)
            {
                return true;
            }

            Subtract(key, count, amount);
            return false;
        }
    }

    /// <summary>Takes back <paramref name="amount"/> added before for <paramref name="key"/>.</summary>
    public void Subtract(TKey key, long amount)
    {
        if (_counts.TryGetValue(key, out var count))
        {
            Subtract(key, count, amount);
        }
    }

    private void Subtract(TKey key, StrongBox<long> count, long amount)
    {
        if (Interlocked.Add(ref count.Value, -amount) == 0 && Interlocked.CompareExchange(ref count.Value, Dead, 0) == 0)
        {
            _counts.TryRemove(new KeyValuePair<TKey, StrongBox<long>>(key, count));
        }
    }
}

/// <summary>At most one log line per interval from one place (a limit hit over and over is one line, not one per hit).</summary>
internal sealed class LogThrottle(TimeProvider time, TimeSpan interval)
{
    private long _last;

    /// <summary>True for the first call and then at most once per interval (across threads).</summary>
    public bool ShouldLog()
    {
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref _last);
        return (last == 0 || time.GetElapsedTime(last, now) >= interval) && Interlocked.CompareExchange(ref _last, now, last) == last;
    }
}
