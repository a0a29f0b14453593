namespace Sluice.Storage;

/// <summary>Options of <see cref="SluiceStoreFactory.OpenAsync"/>.</summary>
public sealed record SluiceStoreOptions
{
    /// <summary>The clock for timestamps, key expiry, rate windows and leases (tests use a manual one).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>How long a SQLite writer waits for another process's write lock before failing.</summary>
    public TimeSpan SqliteBusyTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a job may stay open. Each open job holds one of its team's credits; a job not completed within this time
    /// expires: it is failed, never charged, and its hold is released.
    /// </summary>
    public TimeSpan OpenJobLifetime { get; init; } = TimeSpan.FromHours(24);
}
