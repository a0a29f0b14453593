namespace Sluice.Storage;

/// <summary>
/// A virtual API key as stored: the secret itself is never kept, only its SHA-256 hash and a short prefix
/// so people can tell keys apart in a listing.
/// </summary>
public sealed record VirtualKey
{
    /// <summary>Stable id, <c>key_…</c> (not secret).</summary>
    public required string Id { get; init; }

    /// <summary>The owning team.</summary>
    public required string TeamId { get; init; }

    /// <summary>A label chosen by the creator.</summary>
    public required string Name { get; init; }

    /// <summary>The first characters of the secret, e.g. <c>sk-sluice-Ab3dE9</c>, for listings.</summary>
    public required string Prefix { get; init; }

    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>When it stops working, if ever.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>When it was revoked, if it was.</summary>
    public DateTimeOffset? RevokedAt { get; init; }

    /// <summary>Models this key may use; empty means every model the team may use.</summary>
    public required IReadOnlyList<string> AllowedModels { get; init; }

    /// <summary>Model groups this key may use; empty means every group the team may use.</summary>
    public required IReadOnlyList<string> AllowedModelGroups { get; init; }

    /// <summary>Per-key rate limits, on top of the team's.</summary>
    public required RateLimits Limits { get; init; }

    /// <summary>True when the key authenticates at <paramref name="now"/>: not revoked and not expired.</summary>
    public bool IsActiveAt(DateTimeOffset now) => RevokedAt is null && (ExpiresAt is null || ExpiresAt > now);
}

/// <summary>Options of a new key.</summary>
/// <param name="Name">A label; defaults to <c>default</c>.</param>
/// <param name="ExpiresAt">When the key stops working; never when <see langword="null"/>.</param>
/// <param name="AllowedModels">Models the key may use; all of the team's when <see langword="null"/> or empty.</param>
/// <param name="AllowedModelGroups">Model groups the key may use; all of the team's when <see langword="null"/> or empty.</param>
/// <param name="Limits">Per-key rate limits; none when <see langword="null"/>.</param>
public sealed record NewKey(
    string? Name = null,
    DateTimeOffset? ExpiresAt = null,
    IReadOnlyList<string>? AllowedModels = null,
    IReadOnlyList<string>? AllowedModelGroups = null,
    RateLimits? Limits = null);

/// <summary>A key just created, with its secret: show it to the user once, it cannot be read back.</summary>
/// <param name="Key">The stored key.</param>
/// <param name="Secret">The secret, <c>sk-sluice-…</c>.</param>
public sealed record CreatedKey(VirtualKey Key, string Secret);
