using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Sluice.Gateway.Responses;

/// <summary>
/// When to trim a team's stored responses to <c>Responses:MaxStoredPerTeam</c>: at its first store in this process and
/// then every <see cref="TrimEvery"/>th, so the trim (a range scan of the team's newest) is paid once per many stores.
/// </summary>
internal sealed class StoredResponseRetention(int keep, TimeSpan? keepFor = null)
{
    /// <summary>Stores per team between two trims in one process.</summary>
    public const int TrimEvery = 100;

    private readonly ConcurrentDictionary<string, StrongBox<long>> _stores = new(StringComparer.Ordinal);

    /// <summary>Responses a team keeps.</summary>
    public int Keep => keep;

    /// <summary>How long a response is kept, or null for no age limit.</summary>
    public TimeSpan? KeepFor => keepFor;

    /// <summary>Counts a store by <paramref name="owner"/>; true when it should be followed by a trim.</summary>
    public bool CountStore(string owner) =>
        (Interlocked.Increment(ref _stores.GetOrAdd(owner, static _ => new StrongBox<long>()).Value) - 1) % TrimEvery == 0;
}
