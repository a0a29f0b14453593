using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Sessions;

/// <summary>
/// One session turn as a pipeline stage, whichever transport carries it (HTTP, WebSocket): reads the session and builds
/// the prompt (prepare), creates the session and stores the user's message once the call is admitted (commit), and
/// stores the reply when the turn ends — complete, or marked truncated (settle).
/// </summary>
/// <remarks>
/// The turn takes one <c>message</c>, an optional <c>session_id</c> (none: a new session), <c>system_prompt</c> (a new
/// session's only), <c>model</c> and the sampling fields. The reply is captured by wrapping the backend
/// (<see cref="ReplyCapture"/>), so relays and writers stay unaware of sessions. A session belongs to the caller's team
/// (or the operator); another owner's session is a 404 like a missing one.
/// </remarks>
internal sealed partial class SessionStage(ISessionStore store, int maxPromptChars, int maxMessages, ILogger logger, int maxSessions = 0) : CallStage
{
    private readonly StringBuilder _reply = new();
    private ChatSession? _session;
    private NewChatSession? _newSession;
    private string _message = string.Empty;
    private string? _finishReason;
    private string? _error;
    private int _droppedTurns;

    /// <summary>The session (once committed).</summary>
    public ChatSession Session => _session ?? throw new InvalidOperationException("The session turn is not committed yet.");

    /// <summary>What the done and error events say about the session.</summary>
    public PortalSession PortalInfo => new(Session.Id, _droppedTurns);

    /// <summary>How many earlier messages were left out of the prompt.</summary>
    public int DroppedTurns => _droppedTurns;

    public override async ValueTask PrepareAsync(ChatCall call, CancellationToken cancellationToken)
    {
        string? sessionId;
        string? systemPrompt;
        using (var document = JsonInput.Parse(call.Body))
        {
            var root = document.RootElement;
            if (root.TryGetProperty("messages", out _) || root.TryGetProperty("prompt", out _))
            {
                throw ChatException.BadRequest(
                    "A session turn takes one \"message\" (the session keeps the history); send messages to /api/llm/chat/stream instead.",
                    root.TryGetProperty("messages", out _) ? "messages" : "prompt", "invalid_value");
            }

            _message = ReadText(root, "message", required: true, maxPromptChars)!;
            sessionId = OptionalString(root, "session_id");
            systemPrompt = ReadText(root, "system_prompt", required: false, maxPromptChars);
        }

        var ownerId = call.Caller.OwnerId;
        var parsed = call.Request;
        if (sessionId is not null)
        {
            // Only the newest messages that can fit the session's context are read: a turn costs the same at turn 10 and 1,000.
            _session = await store.GetSessionForTurnAsync(ownerId, sessionId, cancellationToken) ?? throw SluiceErrors.NotFound("session", sessionId);
            if (_session.MessageCount + 2 > maxMessages)
            {
                // Refused before the model runs: the turn's question and its reply would not both fit.
                throw SluiceErrors.SessionFull(_session.Id, _session.MessageCount, maxMessages);
            }

            if (systemPrompt is not null && systemPrompt != (_session.SystemPrompt ?? string.Empty))
            {
                throw ChatException.BadRequest(
                    "system_prompt is set when a session is created and cannot change within it. Leave it out, or start a new session (omit session_id) with the new system prompt.",
                    "system_prompt", "invalid_value");
            }
        }
        else
        {
            _newSession = new NewChatSession(
                NewChatSession.DefaultMaxContextTokens, systemPrompt, parsed.Model.Length > 0 ? parsed.Model : null, KeyId: call.Caller.Key?.Id, MaxSessionsPerOwner: maxSessions);
        }

        var history = _session ?? new ChatSession
        {
            Id = string.Empty,
            Owner = ownerId,
            MaxContextTokens = NewChatSession.DefaultMaxContextTokens,
            MessageCount = 0,
            CreatedAt = default,
            UpdatedAt = default,
        };
        var (messages, dropped) = SessionContext.Build(history, _session?.SystemPrompt ?? systemPrompt ?? string.Empty, _message, parsed.MaxTokens);
        _droppedTurns = dropped;

        // No raw body: upstreams get the built conversation, not the client's session fields.
        call.Request = parsed with
        {
            Model = parsed.Model.Length > 0 ? parsed.Model : _session?.Model ?? string.Empty,
            Messages = messages,
            RawBody = ReadOnlyMemory<byte>.Empty,
            Stream = true,
        };
    }

    public override async ValueTask CommitAsync(ChatCall call, CancellationToken cancellationToken)
    {
        var ownerId = call.Caller.OwnerId;
        try
        {
            _session ??= await store.CreateSessionAsync(ownerId, _newSession!, cancellationToken);
        }
        catch (SessionLimitException limit)
        {
            throw SluiceErrors.TooManySessions(limit.Limit);
        }

        try
        {
            // One place is kept for the reply, so a session never holds more than maxMessages.
            await store.AppendSessionMessageAsync(
                ownerId, _session.Id, new NewSessionMessage(ChatRoles.User, _message, ContextTokens: ContextCost(_message)), maxMessages - 1, cancellationToken);
        }
        catch (SessionFullException full)
        {
            throw SluiceErrors.SessionFull(full.SessionId, full.Messages, maxMessages);
        }

        call.Backend = new ReplyCapture(call.Backend!, this);
    }

    /// <summary>
    /// Stores the reply: complete when the turn completed, otherwise truncated with the text produced so far. A session
    /// deleted meanwhile keeps nothing; a store failure is logged.
    /// </summary>
    public override async ValueTask SettleAsync(ChatCall call, UsageStatus status, ChatUsage usage)
    {
        if (_session is null)
        {
            return;
        }

        var truncated = status != UsageStatus.Completed;
        var error = !truncated ? null : _error ?? (status == UsageStatus.Abandoned ? "cancelled: the client left or the stream was cancelled" : "failed");
        var text = _reply.ToString();

        // An interrupted reply with no text is never sent again (see SessionContext), so it costs a later turn nothing.
        var message = new NewSessionMessage(
            ChatRoles.Assistant, text, truncated, truncated ? null : _finishReason, usage.PromptTokens, usage.CompletionTokens, error,
            truncated && text.Length == 0 ? 0 : ContextCost(text));
        try
        {
            // Not the request's token: the client leaving is exactly when the truncated reply must still be kept.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await store.AppendSessionMessageAsync(_session.Owner, _session.Id, message, timeout.Token);
        }
        catch (StoreNotFoundException)
        {
            LogSessionGone(logger, _session.Id);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogStoreFailed(logger, ex, _session.Id, _reply.Length);
        }
    }

    /// <summary>What a stored message costs in a later turn's prompt, as <see cref="SessionContext"/> counts it.</summary>
    internal static int ContextCost(string content) => TokenCounter.PerMessageOverhead + TokenCounter.Count(content);

    private static string? OptionalString(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw ChatException.BadRequest($"{name} must be a string.", name, "invalid_type");
        }

        var text = value.GetString()!.Trim();
        return text.Length == 0 ? null : text;
    }

    /// <summary>A text field of a turn or a new session, within the prompt limit.</summary>
    internal static string? ReadText(JsonElement root, string name, bool required, int maxChars)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return required
                ? throw ChatException.BadRequest($"{name} is required: the user's turn as a string, e.g. \"{name}\": \"How do rivers form?\".", name, "missing_required_parameter")
                : null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw ChatException.BadRequest($"{name} must be a string.", name, "invalid_type");
        }

        var text = value.GetString()!;
        if (required && string.IsNullOrWhiteSpace(text))
        {
            throw ChatException.BadRequest($"{name} is empty. Send the user's turn as a non-empty string.", name, "empty_value");
        }

        if (text.Length > maxChars)
        {
            throw ChatException.BadRequest(
                $"{name} is {text.Length} characters; the limit is {maxChars}. Shorten it or raise Limits:MaxPromptChars.",
                name, "string_above_max_length");
        }

        return text.Length == 0 ? null : text;
    }

    private void Observe(ChatStreamEvent streamEvent)
    {
        if (PortalEvents.TextOf(streamEvent) is { } text)
        {
            _reply.Append(text);
        }

        _finishReason = PortalEvents.FinishOf(streamEvent) ?? _finishReason;
        if (streamEvent is ErrorEvent error)
        {
            _error = error.Error.Message;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Session {SessionId} was deleted before its reply ended; the reply is not kept")]
    private static partial void LogSessionGone(ILogger logger, string sessionId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not store the reply of session {SessionId} ({Length} characters)")]
    private static partial void LogStoreFailed(ILogger logger, Exception ex, string sessionId, int length);

    /// <summary>The model, wrapped so that the reply is captured as it streams.</summary>
    private sealed class ReplyCapture(IChatBackend inner, SessionStage stage) : DelegatingChatBackend(inner)
    {
        public override async IAsyncEnumerable<ChatStreamEvent> StreamAsync(
            ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            await using var events = InnerBackend.StreamAsync(request, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
            while (true)
            {
                try
                {
                    if (!await events.MoveNextAsync())
                    {
                        yield break;
                    }
                }
                catch (ChatException ex)
                {
                    stage._error = ex.Error.Message;
                    throw;
                }

                stage.Observe(events.Current);
                yield return events.Current;
            }
        }
    }
}
