using System.Text.Json;
using Sluice.Client.Internal;

namespace Sluice.Client.Sessions;

/// <summary>What <c>POST /api/sessions</c> takes; every field is optional.</summary>
public sealed class CreateSessionRequest
{
    /// <summary><c>system_prompt</c>: sent first with every turn, never trimmed, fixed for the session's life.</summary>
    public string? SystemPrompt { get; init; }

    /// <summary><c>model</c>: the model (or group) turns use unless a turn names another.</summary>
    public string? Model { get; init; }

    /// <summary><c>max_context_tokens</c>: prompt plus reply budget (default 4096 on the server); older turns are left out to fit.</summary>
    public int? MaxContextTokens { get; init; }

    /// <summary><c>title</c>: a label for session lists (default: the start of the first message).</summary>
    public string? Title { get; init; }

    /// <summary><c>metadata</c>: up to 16 string entries kept with the session.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}

/// <summary>A stored conversation (<c>GET /api/sessions/{id}</c>; <see cref="Messages"/> is empty in listings).</summary>
/// <param name="Id"><c>id</c>, <c>sess_…</c>.</param>
/// <param name="Title"><c>title</c>.</param>
/// <param name="Model"><c>model</c>, the default model of its turns.</param>
/// <param name="SystemPrompt"><c>system_prompt</c>.</param>
/// <param name="MaxContextTokens"><c>max_context_tokens</c>.</param>
/// <param name="MessageCount"><c>message_count</c>.</param>
/// <param name="CreatedAt"><c>created_at</c>.</param>
/// <param name="UpdatedAt"><c>updated_at</c>: when a message was last added.</param>
/// <param name="Metadata"><c>metadata</c>.</param>
/// <param name="Messages"><c>messages</c>, oldest first.</param>
public sealed record SluiceSession(
    string Id,
    string? Title,
    string? Model,
    string? SystemPrompt,
    int MaxContextTokens,
    long MessageCount,
    DateTimeOffset? CreatedAt,
    DateTimeOffset? UpdatedAt,
    IReadOnlyDictionary<string, string> Metadata,
    IReadOnlyList<SluiceSessionMessage> Messages)
{
    internal static SluiceSession FromJson(JsonElement root)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (Json.Object(root, "metadata") is { } values)
        {
            foreach (var entry in values.EnumerateObject())
            {
                if (entry.Value.ValueKind == JsonValueKind.String)
                {
                    metadata[entry.Name] = entry.Value.GetString()!;
                }
            }
        }

        var messages = new List<SluiceSessionMessage>();
        if (root.TryGetProperty("messages", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            messages.AddRange(list.EnumerateArray().Select(SluiceSessionMessage.FromJson));
        }

        return new SluiceSession(
            Json.String(root, "id") ?? throw new SluiceServerException("The server's session has no \"id\". Check that the address points at a Sluice gateway."),
            Json.String(root, "title"),
            Json.String(root, "model"),
            Json.String(root, "system_prompt"),
            (int)(Json.Long(root, "max_context_tokens") ?? 0),
            Json.Long(root, "message_count") ?? messages.Count,
            Json.Time(root, "created_at"),
            Json.Time(root, "updated_at"),
            metadata,
            messages);
    }
}

/// <summary>One stored message of a session.</summary>
/// <param name="Id"><c>id</c>: increasing within the session.</param>
/// <param name="Role"><c>role</c>: <c>user</c> or <c>assistant</c>.</param>
/// <param name="Content"><c>content</c>: for a truncated reply, the text produced before the interruption.</param>
/// <param name="Truncated"><c>truncated</c>: the reply was interrupted (client left, cancelled or failed).</param>
/// <param name="FinishReason"><c>finish_reason</c> of a complete reply.</param>
/// <param name="PromptTokens"><c>usage.prompt_tokens</c> of the call that produced a reply.</param>
/// <param name="CompletionTokens"><c>usage.completion_tokens</c> of a reply.</param>
/// <param name="Error"><c>error</c>: why a reply was interrupted.</param>
/// <param name="CreatedAt"><c>created_at</c>.</param>
public sealed record SluiceSessionMessage(
    long Id,
    string Role,
    string Content,
    bool Truncated,
    string? FinishReason,
    long? PromptTokens,
    long? CompletionTokens,
    string? Error,
    DateTimeOffset? CreatedAt)
{
    internal static SluiceSessionMessage FromJson(JsonElement root)
    {
        var usage = Json.Object(root, "usage");
        return new SluiceSessionMessage(
            Json.Long(root, "id") ?? 0,
            Json.String(root, "role") ?? string.Empty,
            Json.String(root, "content") ?? string.Empty,
            Json.Bool(root, "truncated") ?? false,
            Json.String(root, "finish_reason"),
            usage is { } u ? Json.Long(u, "prompt_tokens") : null,
            usage is { } c ? Json.Long(c, "completion_tokens") : null,
            Json.String(root, "error"),
            Json.Time(root, "created_at"));
    }
}

/// <summary>A page of <c>GET /api/sessions</c>, most recently used first.</summary>
/// <param name="Sessions">The sessions (without messages).</param>
/// <param name="HasMore">True when a later page has more.</param>
public sealed record SluiceSessionPage(IReadOnlyList<SluiceSession> Sessions, bool HasMore);
