namespace Sluice.Gateway.Accounting;

/// <summary>How a request ended.</summary>
public enum UsageStatus
{
    /// <summary>The answer was delivered completely.</summary>
    Completed,

    /// <summary>The backend or gateway failed.</summary>
    Failed,

    /// <summary>The client went away before the end.</summary>
    Abandoned,
}

/// <summary>What one request used; reported for every request, whatever its outcome.</summary>
public sealed record UsageRecord
{
    /// <summary>The gateway's request id (also the <c>x-request-id</c> header).</summary>
    public required string RequestId { get; init; }

    /// <summary>The model name the client asked for.</summary>
    public required string Model { get; init; }

    /// <summary>Whether the request was streamed.</summary>
    public required bool Stream { get; init; }

    /// <summary>Prompt tokens.</summary>
    public required int PromptTokens { get; init; }

    /// <summary>Completion tokens delivered (or generated, when the backend reported it).</summary>
    public required int CompletionTokens { get; init; }

    /// <summary>True when the counts are estimated from the text because the backend reported none.</summary>
    public required bool Estimated { get; init; }

    /// <summary>How the request ended.</summary>
    public required UsageStatus Status { get; init; }

    /// <summary>Time from the request to the first answer event, if there was one.</summary>
    public TimeSpan? TimeToFirstToken { get; init; }

    /// <summary>Time from the request to its end.</summary>
    public required TimeSpan Duration { get; init; }

    /// <summary>The error code, for failed requests.</summary>
    public string? ErrorCode { get; init; }

    /// <summary>The team billed, when the caller used a virtual key (or worked within a team's job).</summary>
    public string? TeamId { get; init; }

    /// <summary>The virtual key used, if any.</summary>
    public string? KeyId { get; init; }

    /// <summary>The job the call belonged to, if any.</summary>
    public string? JobId { get; init; }

    /// <summary>Prompt plus completion tokens.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>
/// The one accounting hook: receives a <see cref="UsageRecord"/> for every chat request — streamed or not,
/// finished, failed or abandoned. Called after the response is complete, so it never delays tokens;
/// implementations must not block (queue work instead).
/// </summary>
public interface IUsageSink
{
    /// <summary>Records one request's usage.</summary>
    void Record(UsageRecord record);
}
