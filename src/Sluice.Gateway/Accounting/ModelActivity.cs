using System.Collections.Concurrent;

namespace Sluice.Gateway.Accounting;

/// <summary>
/// When each model last finished answering, from the usage records: what Ollama's <c>GET /api/ps</c> lists as the
/// models "loaded" now (Sluice loads nothing, so a model counts as running for <see cref="KeepAlive"/> after its last
/// answer, Ollama's default keep-alive).
/// </summary>
internal sealed class ModelActivity(TimeProvider time) : IUsageSink
{
    /// <summary>How long a model stays listed after its last answer (Ollama's default <c>keep_alive</c>).</summary>
    public static readonly TimeSpan KeepAlive = TimeSpan.FromMinutes(5);

    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastUsed = new(StringComparer.Ordinal);

    public void Record(UsageRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        _lastUsed[record.Model] = time.GetUtcNow();
    }

    /// <summary>The models used within <see cref="KeepAlive"/>, most recent first, with when they drop off the list.</summary>
    public IReadOnlyList<(string Model, DateTimeOffset ExpiresAt)> Running()
    {
        var now = time.GetUtcNow();
        return [.. _lastUsed
            .Select(pair => (pair.Key, ExpiresAt: pair.Value + KeepAlive))
            .Where(entry => entry.ExpiresAt > now)
            .OrderByDescending(entry => entry.ExpiresAt)];
    }
}
