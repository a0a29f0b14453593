namespace Sluice.Storage.Tests;

/// <summary>A clock the test moves by hand; thread-safe, so concurrent store calls all see one instant.</summary>
public sealed class ManualTime(DateTimeOffset start) : TimeProvider
{
    private long _ticks = start.UtcTicks;

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}
