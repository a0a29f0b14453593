namespace Sluice.Storage;

/// <summary>One gateway call in the usage ledger (append-only).</summary>
public sealed record UsageEntry
{
    /// <summary>Increasing id, assigned by the store (0 before it is stored).</summary>
    public long Id { get; init; }

    /// <summary>The team billed.</summary>
    public required string TeamId { get; init; }

    /// <summary>The key used, if any.</summary>
    public string? KeyId { get; init; }

    /// <summary>The job the call belonged to, if any.</summary>
    public string? JobId { get; init; }

    /// <summary>The gateway's request id, if any.</summary>
    public string? RequestId { get; init; }

    /// <summary>The model called.</summary>
    public required string Model { get; init; }

    /// <summary>Prompt tokens.</summary>
    public required long PromptTokens { get; init; }

    /// <summary>Completion tokens.</summary>
    public required long CompletionTokens { get; init; }

    /// <summary>Time to the first token, if there was one.</summary>
    public TimeSpan? TimeToFirstToken { get; init; }

    /// <summary>Time from the request to its end.</summary>
    public required TimeSpan Duration { get; init; }

    /// <summary>How the call ended.</summary>
    public required CallStatus Status { get; init; }

    /// <summary>When it happened; the store's clock when left at the default.</summary>
    public DateTimeOffset CreatedAt { get; init; }
}
