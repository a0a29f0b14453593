namespace Sluice.Storage;

/// <summary>The answer of <see cref="IRateLimitStore.TryConsumeAsync"/>.</summary>
/// <param name="Allowed">True when the amount was admitted (and counted).</param>
/// <param name="Used">The amount counted in the current window after this call.</param>
/// <param name="Remaining">What may still be admitted in the current window.</param>
/// <param name="ResetAt">When the current window ends.</param>
public sealed record RateLimitDecision(bool Allowed, long Used, long Remaining, DateTimeOffset ResetAt)
{
    /// <summary>How long until the window resets, from <paramref name="now"/> (never negative): a <c>Retry-After</c>.</summary>
    public TimeSpan RetryAfter(DateTimeOffset now) => ResetAt > now ? ResetAt - now : TimeSpan.Zero;
}

/// <summary>The answer of <see cref="IRateLimitStore.AcquireConcurrencyAsync"/>.</summary>
/// <param name="Acquired">True when a slot was taken.</param>
/// <param name="LeaseId">The slot's lease, to release or renew; <see langword="null"/> when not acquired.</param>
/// <param name="Active">Slots held for the key after this call (expired leases not counted).</param>
/// <param name="ExpiresAt">When the lease lapses unless renewed; <see langword="null"/> when not acquired.</param>
public sealed record ConcurrencyLease(bool Acquired, string? LeaseId, int Active, DateTimeOffset? ExpiresAt);
