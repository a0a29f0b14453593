namespace Sluice.Storage;

/// <summary>Options of <see cref="SluiceStoreFactory.OpenAsync"/>.</summary>
public sealed record SluiceStoreOptions
{
    /// <summary>The clock for timestamps, key expiry, rate windows and leases (tests use a manual one).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>How long a SQLite writer waits for another process's write lock before failing.</summary>
    public TimeSpan SqliteBusyTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
