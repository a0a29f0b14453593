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
    private const int HashChars = 2 * SHA256.HashSizeInBytes;

    // Keys are cached by their secret's hash and also found by id (the ledger's token counting asks by id).
    private readonly Cache<VirtualKey> _keys = new(options.Tenancy.KeyCacheSeconds, key => key.Id);
    private readonly Cache<Team> _teams = new(options.Tenancy.KeyCacheSeconds);

    /// <summary>The active key with this secret, or <see langword="null"/> (unknown, revoked or expired).</summary>
    public ValueTask<VirtualKey?> FindKeyAsync(ReadOnlyMemory<char> secret, CancellationToken cancellationToken)
    {
        // The secret's hash in hex is made on the stack: a warm lookup (nearly every request) allocates nothing.
        Span<char> hash = stackalloc char[HashChars];
        HashOf(secret.Span, hash);
        return _keys.TryGetFresh(hash, out var cached)
            ? ValueTask.FromResult(ActiveOrNull(cached))
            : LoadKeyAsync(secret.ToString(), new string(hash), cancellationToken);
    }

    private async ValueTask<VirtualKey?> LoadKeyAsync(string secret, string hash, CancellationToken cancellationToken) =>
        ActiveOrNull(await _keys.GetAsync(hash, () => runtime.Store.FindKeyBySecretAsync(secret, CancellationToken.None), cancellationToken));

    // Expiry is checked on every use, so a cached key stops at its expiry time, not up to a cache period later.
    private VirtualKey? ActiveOrNull(VirtualKey? key) => key is not null && key.IsActiveAt(runtime.Time.GetUtcNow()) ? key : null;

    private static void HashOf(ReadOnlySpan<char> secret, Span<char> hex)
    {
        var length = Encoding.UTF8.GetByteCount(secret);
        var rented = length > 256 ? System.Buffers.ArrayPool<byte>.Shared.Rent(length) : null;
        try
        {
            Span<byte> utf8 = rented ?? stackalloc byte[256];
            Encoding.UTF8.GetBytes(secret, utf8);
            Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(utf8[..length], digest);
            Convert.TryToHexString(digest, hex, out _);
        }
        finally
        {
            if (rented is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>The team (possibly up to the cache time old), or <see langword="null"/>.</summary>
    public ValueTask<Team?> GetTeamAsync(string teamId, CancellationToken cancellationToken) =>
        // A fresh entry is answered before the loader (a closure and a delegate, made on entry to the method that
        // captures) exists: nearly every call is one.
        _teams.TryGetFresh(teamId, out var cached) ? ValueTask.FromResult(cached) : LoadTeamAsync(teamId, cancellationToken);

    private ValueTask<Team?> LoadTeamAsync(string teamId, CancellationToken cancellationToken) =>
        _teams.GetAsync(teamId, () => runtime.Store.GetTeamAsync(teamId, CancellationToken.None), cancellationToken);

    /// <summary>The cached team, if any, without a database read.</summary>
    public Team? PeekTeam(string teamId) => _teams.Peek(teamId);

    /// <summary>The cached key with this id, if any, without a database read (an index lookup, not a scan of the cache).</summary>
    public VirtualKey? PeekKey(string keyId) => _keys.PeekById(keyId);

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
    /// <param name="seconds">How long an entry is used.</param>
    /// <param name="idOf">A cached value's own id, for <see cref="PeekById"/> (null: not indexed).</param>
    private sealed class Cache<T>(double seconds, Func<T, string>? idOf = null)
        where T : class
    {
        // Misses (unknown keys) are cached too, so junk keys do not each cost a query — while the cache is modest.
        private const int MaxEntries = 100_000;

        private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, Task<T?>> _loading = new(StringComparer.Ordinal);

        // A value's own id → its cache id. Only found values are indexed (never misses, which callers can make up), so
        // it holds at most one entry per real key; a stale entry points at nothing and is checked on use.
        private readonly ConcurrentDictionary<string, string> _byValueId = new(StringComparer.Ordinal);
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

        /// <summary>The cached answer (a value, or null for a known miss) while it is fresh, looked up without a string.</summary>
        public bool TryGetFresh(ReadOnlySpan<char> id, out T? value)
        {
            if (_ttlMs > 0 && _entries.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(id, out var cached) && cached.ExpiresAtMs > Environment.TickCount64)
            {
                value = cached.Value;
                return true;
            }

            value = null;
            return false;
        }

        public T? Peek(string id) => _entries.TryGetValue(id, out var entry) ? entry.Value : null;

        public T? PeekById(string valueId) =>
            idOf is not null && _byValueId.TryGetValue(valueId, out var id) && _entries.TryGetValue(id, out var entry)
            && entry.Value is { } value && idOf(value) == valueId ? value : null;

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
                    if (idOf is not null)
                    {
                        _byValueId.TryRemove(new KeyValuePair<string, string>(idOf(value), pair.Key));
                    }
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
            _byValueId.Clear();
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

                    var entry = new Entry(value, Environment.TickCount64 + _ttlMs);
                    _entries[id] = entry;
                    if (value is not null && idOf is not null)
                    {
                        _byValueId[idOf(value)] = id;
                    }

                    // A removal (a revoked key) between the check above and the store would have missed this entry:
                    // removals bump the version before they look, so checking again after the store closes the gap.
                    if (version != Volatile.Read(ref _version))
                    {
                        _entries.TryRemove(new KeyValuePair<string, Entry>(id, entry));
                    }
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
