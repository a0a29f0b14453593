using Sluice.Protocol;

namespace Sluice.Cli.Client;

/// <summary>One message of the conversation sent to the model.</summary>
/// <param name="Role"><c>system</c>, <c>user</c> or <c>assistant</c>.</param>
/// <param name="Content">The text.</param>
internal sealed record ChatTurn(string Role, string Content);

/// <summary>What to ask the model. Null values are left out of the request (the server's defaults apply).</summary>
internal sealed class ChatStreamRequest
{
    /// <summary>The model; null lets the gateway choose its default.</summary>
    public string? Model { get; init; }

    /// <summary>The conversation so far, ending with the user's turn.</summary>
    public required IReadOnlyList<ChatTurn> Messages { get; init; }

    /// <summary><c>max_tokens</c>.</summary>
    public int? MaxTokens { get; init; }

    /// <summary><c>temperature</c>.</summary>
    public double? Temperature { get; init; }

    /// <summary><c>seed</c>: same seed, same answer (for models that honour it).</summary>
    public long? Seed { get; init; }

    /// <summary><c>metadata</c>: string pairs (Sluice's simulated models read fault switches from it).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}

/// <summary>Something the stream delivered.</summary>
internal abstract record ChatStreamUpdate;

/// <summary>The model that answers (sent once, with the first chunk that names it).</summary>
internal sealed record ModelUpdate(string Model) : ChatStreamUpdate;

/// <summary>The stored session the turn went to (with <c>--session</c>; sent when the first turn created it, or once per turn).</summary>
internal sealed record SessionUpdate(string SessionId) : ChatStreamUpdate;

/// <summary>A piece of answer text (never empty).</summary>
internal sealed record ContentUpdate(string Text) : ChatStreamUpdate;

/// <summary>Why the model stopped: <c>stop</c>, <c>length</c>, <c>tool_calls</c>…</summary>
internal sealed record FinishUpdate(string Reason) : ChatStreamUpdate;

/// <summary>The server's token counts (requested with <c>stream_options.include_usage</c>).</summary>
internal sealed record UsageUpdate(int PromptTokens, int CompletionTokens) : ChatStreamUpdate;

/// <summary>How a request failed, one per exit code.</summary>
internal enum ChatFailureKind
{
    /// <summary>No connection could be made (refused, unknown host, network down).</summary>
    Connection,

    /// <summary>The server answered 4xx: the request was wrong.</summary>
    Client,

    /// <summary>The server answered 5xx (or something that is not an event stream).</summary>
    Server,

    /// <summary>The stream broke after it started: an error frame, a lost connection, or no <c>[DONE]</c>.</summary>
    MidStream,

    /// <summary>A time limit was hit.</summary>
    Timeout,
}

/// <summary>A chat request failed; <see cref="Exception.Message"/> says what happened and what to do next.</summary>
internal sealed class ChatClientException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ChatClientException(ChatFailureKind kind, string message, int? statusCode = null, ErrorInfo? error = null, TimeSpan? retryAfter = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        StatusCode = statusCode;
        Error = error;
        RetryAfter = retryAfter;
    }

    /// <summary>The failure class.</summary>
    public ChatFailureKind Kind { get; }

    /// <summary>The HTTP status, when the server answered with an error status.</summary>
    public int? StatusCode { get; }

    /// <summary>The server's error body, when it sent one.</summary>
    public ErrorInfo? Error { get; }

    /// <summary>The server's <c>Retry-After</c>, when it sent one.</summary>
    public TimeSpan? RetryAfter { get; }
}
