namespace Sluice.Storage;

/// <summary>
/// What a store shared by several gateway processes adds (PostgreSQL): the directory of running instances, so one
/// can forward a request to another, and change notifications, so cached tenancy data is dropped everywhere at once.
/// </summary>
/// <remarks>
/// A store that implements it is shared; one that does not (SQLite) serves one process and needs neither.
/// </remarks>
public interface IClusterStore
{
    /// <summary>Records (or refreshes) a running instance and the URL the others reach it at; its heartbeat is now.</summary>
    Task RegisterInstanceAsync(string instanceId, Uri internalUrl, CancellationToken cancellationToken);

    /// <summary>Refreshes the instance's heartbeat; false when its row is gone (then register again).</summary>
    Task<bool> HeartbeatAsync(string instanceId, CancellationToken cancellationToken);

    /// <summary>Removes the instance (a clean stop); unknown ids are ignored.</summary>
    Task RemoveInstanceAsync(string instanceId, CancellationToken cancellationToken);

    /// <summary>The instance, or <see langword="null"/> when none has this id.</summary>
    Task<GatewayInstance?> GetInstanceAsync(string instanceId, CancellationToken cancellationToken);

    /// <summary>
    /// Listens for <see cref="StoreChange"/>s made by any process (this one included) on a connection of its own, until
    /// <paramref name="cancellationToken"/> is cancelled or the connection fails (it throws then; call it again).
    /// <paramref name="listening"/> runs once the subscription is in place: anything changed before it was not
    /// delivered, so callers drop their caches there.
    /// </summary>
    Task ListenAsync(Action<StoreChange> changed, Action listening, CancellationToken cancellationToken);
}

/// <summary>A gateway instance in the shared directory.</summary>
/// <param name="Id">Its id (stream ids end with it).</param>
/// <param name="InternalUrl">Where the other instances reach it.</param>
/// <param name="StartedAt">When it registered.</param>
/// <param name="HeartbeatAt">Its last heartbeat: an instance that stopped without removing itself goes stale.</param>
public sealed record GatewayInstance(string Id, Uri InternalUrl, DateTimeOffset StartedAt, DateTimeOffset HeartbeatAt);

/// <summary>What changed, for caches: a key, a team (limits, model groups, credits), a model group, or "a key was created".</summary>
/// <param name="Kind">One of <c>key</c>, <c>team</c>, <c>group</c>, <c>key-created</c>.</param>
/// <param name="Id">The key id, team id or group name; empty for <c>key-created</c>.</param>
public sealed record StoreChange(string Kind, string Id)
{
    /// <summary>A key changed (revoked).</summary>
    public static StoreChange Key(string keyId) => new("key", keyId);

    /// <summary>A team changed: limits, model groups, credits.</summary>
    public static StoreChange Team(string teamId) => new("team", teamId);

    /// <summary>A model group was created.</summary>
    public static StoreChange ModelGroup(string name) => new("group", name);

    /// <summary>A key was created: a secret remembered as unknown may be valid now.</summary>
    public static StoreChange KeyCreated { get; } = new("key-created", string.Empty);

    /// <summary>The notification payload: <c>kind:id</c>.</summary>
    public string Encode() => Kind + ":" + Id;

    /// <summary>Reads a payload written by <see cref="Encode"/>; null for anything else.</summary>
    public static StoreChange? Decode(string payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        var colon = payload.IndexOf(':', StringComparison.Ordinal);
        return colon <= 0 ? null : new StoreChange(payload[..colon], payload[(colon + 1)..]);
    }
}
