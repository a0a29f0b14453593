namespace Sluice.Providers.Routing;

/// <summary>A named, ordered list of models: a request for the group tries them in order (fallback).</summary>
public sealed class ModelGroupOptions
{
    /// <summary>The name clients ask for.</summary>
    public string Name { get; set; } = string.Empty;

    /// <summary>Member model names, in priority order.</summary>
    public List<string> Models { get; set; } = [];

    /// <summary>A sentence shown in <c>/v1/models</c>.</summary>
    public string? Description { get; set; }
}

/// <summary>How failures before the first token are retried.</summary>
public sealed class RetryOptions
{
    /// <summary>First backoff delay; doubles per attempt, with jitter.</summary>
    public int BaseDelayMs { get; set; } = 250;

    /// <summary>Longest backoff delay.</summary>
    public int MaxDelayMs { get; set; } = 4_000;

    /// <summary>
    /// An upstream's <c>Retry-After</c> is honoured up to this many seconds; a longer one moves on to the next
    /// model of the group at once (or returns the 429 to the client when there is none).
    /// </summary>
    public double MaxRetryAfterSeconds { get; set; } = 10;
}
