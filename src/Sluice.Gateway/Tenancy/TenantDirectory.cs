using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Sluice.Gateway.Hosting;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// Virtual keys and teams, cached in memory for <see cref="TenancyOptions.KeyCacheSeconds"/> so that
/// authenticating a request needs no database round trip while the cache is warm.
/// </summary>
/// <remarks>
/// Changes made through this process (revoking a key, adding credits, charging a job, assigning model groups)
/// update or drop the cached entries at once. Changes made through another process sharing a PostgreSQL database
/// arrive as change notifications (<see cref="Cluster.ClusterNode"/>) and drop the entries within moments; the cache
/// time is the bound only while notifications are down (and on a store without them). A read that started before an
/// entry was dropped does not put its (possibly stale) answer back. Concurrent misses for the same key share one
/// database read.
/// </remarks>
internal sealed class TenantDirectory(TenancyRuntime runtime, GatewayOptions options)
{
    private readonly Cache<VirtualKey> _keys = new(options.Tenancy.KeyCacheSeconds);
    private readonly Cache<Team> _teams = new(options.Tenancy.KeyCacheSeconds);

    /// <summary>The active key with this secret, or <see langword="null"/> (unknown, revoked or expired).</summary>
    public async ValueTask<VirtualKey?> FindKeyAsync(string secret, CancellationToken cancellationToken)
    {
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));
        var key = await _keys.GetAsync(hash, () => runtime.Store.FindKeyBySecretAsync(secret, CancellationToken.None), cancellationToken);

        // Expiry is checked on every use, so a cached key stops at its expiry time, not up to a cache period later.
        return key is not null && key.IsActiveAt(runtime.Time.GetUtcNow()) ? key : null;
    }

    /// <summary>The team (possibly up to the cache time old), or <see langword="null"/>.</summary>
    public ValueTask<Team?> GetTeamAsync(string teamId, CancellationToken cancellationToken) =>
        _teams.GetAsync(teamId, () => runtime.Store.GetTeamAsync(teamId, CancellationToken.None), cancellationToken);

    /// <summary>The cached team, if any, without a database read.</summary>
    public Team? PeekTeam(string teamId) => _teams.Peek(teamId);

    /// <summary>The cached key with this id, if any, without a database read.</summary>
    public VirtualKey? PeekKey(string keyId) => _keys.Find(k => k.Id == keyId);

    /// <summary>Drops every cached copy of a key (after revoking it here).</summary>
    public void ForgetKey(string keyId) => _keys.RemoveWhere(k => k.Id == keyId);

    /// <summary>Drops the cached team (after changing it here).</summary>
    public void ForgetTeam(string teamId) => _teams.Remove(teamId);

    /// <summary>Drops the remembered unknown secrets (a key was created somewhere: one of them may be valid now).</summary>
    public void ForgetUnknownKeys() => _keys.RemoveMisses();

    /// <summary>Drops everything (change notifications were interrupted: what changed meanwhile is unknown).</summary>
    public void ForgetAll()
    {
        _keys.Clear();
        _teams.Clear();
    }

    /// <summary>Records a balance this process just learnt from the database (e.g. after charging a job).</summary>
    public void SetBalance(string teamId, long balance) => _teams.Update(teamId, team => team with { CreditsRemaining = balance });

    /// <summary>A time-limited cache of store reads; concurrent misses for one id share a single read.</summary>
    private sealed class Cache<T>(double seconds)
        where T : class
    {
        // Misses (unknown keys) are cached too, so junk keys do not each cost a query — while the cache is modest.
        private const int MaxEntries = 100_000;

        private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, Task<T?>> _loading = new(StringComparer.Ordinal);
        private readonly long _ttlMs = (long)(seconds * 1000);

        // Bumped by every removal: a read that started before it does not store its answer.
        private long _version;

        public ValueTask<T?> GetAsync(string id, Func<Task<T?>> load, CancellationToken cancellationToken)
        {
            if (_ttlMs > 0 && _entries.TryGetValue(id, out var cached) && cached.ExpiresAtMs > Environment.TickCount64)
            {
                return ValueTask.FromResult(cached.Value);
            }

            // The read is shared by every waiter, so it does not follow one request's cancellation.
            var loading = _loading.GetOrAdd(id, key => LoadAsync(key, load));
            return new ValueTask<T?>(loading.WaitAsync(cancellationToken));
        }

        public T? Peek(string id) => _entries.TryGetValue(id, out var entry) ? entry.Value : null;

        public T? Find(Func<T, bool> match)
        {
            foreach (var entry in _entries.Values)
            {
                if (entry.Value is { } value && match(value))
                {
                    return value;
                }
            }

            return null;
        }

        public void Remove(string id)
        {
            Interlocked.Increment(ref _version);
            _entries.TryRemove(id, out _);
        }

        public void RemoveWhere(Func<T, bool> match)
        {
            Interlocked.Increment(ref _version);
            foreach (var pair in _entries)
            {
                if (pair.Value.Value is { } value && match(value))
                {
                    _entries.TryRemove(pair);
                }
            }
        }

        public void RemoveMisses()
        {
            Interlocked.Increment(ref _version);
            foreach (var pair in _entries)
            {
                if (pair.Value.Value is null)
                {
                    _entries.TryRemove(pair);
                }
            }
        }

        public void Clear()
        {
            Interlocked.Increment(ref _version);
            _entries.Clear();
        }

        public void Update(string id, Func<T, T> change)
        {
            if (_entries.TryGetValue(id, out var entry) && entry.Value is { } value)
            {
                _entries.TryUpdate(id, entry with { Value = change(value) }, entry);
            }
        }

        private async Task<T?> LoadAsync(string id, Func<Task<T?>> load)
        {
            try
            {
                // Always finish asynchronously, so this task is in _loading before its finally removes it.
                await Task.Yield();
                var version = Volatile.Read(ref _version);
                var value = await load();
                if (_ttlMs > 0 && (value is not null || _entries.Count < MaxEntries) && version == Volatile.Read(ref _version))
                {
                    if (_entries.Count >= MaxEntries)
                    {
                        Sweep();
                    }

                    _entries[id] = new Entry(value, Environment.TickCount64 + _ttlMs);
                }

                return value;
            }
            finally
            {
                // A failed read is not remembered: the next request tries again.
                _loading.TryRemove(id, out _);
            }
        }

        private void Sweep()
        {
            var now = Environment.TickCount64;
            foreach (var pair in _entries)
            {
                if (pair.Value.ExpiresAtMs <= now)
                {
                    _entries.TryRemove(pair);
                }
            }
        }

        private sealed record Entry(T? Value, long ExpiresAtMs);
    }
}
