using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Sessions;

/// <summary>
/// One turn of a session: the stored session, the prompt built for it, and the reply as it streams — stored once the
/// turn ends, complete or marked truncated, whichever transport carried it.
/// </summary>
/// <remarks>
/// The reply is captured by wrapping the backend (<see cref="Backend"/>), so relays and writers stay unaware of
/// sessions. Events arrive one at a time from one consumer; <see cref="StoreReplyAsync"/> runs after the last one.
/// </remarks>
internal sealed partial class SessionTurn
{
    private readonly ISluiceStore _store;
    private readonly ILogger _logger;
    private readonly StringBuilder _reply = new();
    private string? _finishReason;
    private string? _error;
    private int _stored;

    public SessionTurn(ISluiceStore store, ILogger logger, ChatSession session, ChatRequest request, IChatBackend backend, int droppedTurns)
    {
        _store = store;
        _logger = logger;
        Session = session;
        Request = request;
        DroppedTurns = droppedTurns;
        Backend = new Recording(backend, this);
    }

    public ChatSession Session { get; }

    /// <summary>The request sent to the model: system prompt, kept history, the new message.</summary>
    public ChatRequest Request { get; }

    /// <summary>How many earlier messages were left out of the prompt.</summary>
    public int DroppedTurns { get; }

    /// <summary>The model, wrapped so that the reply is captured as it streams.</summary>
    public IChatBackend Backend { get; }

    public PortalSession PortalInfo => new(Session.Id, DroppedTurns);

    /// <summary>The reply so far (the full reply once the stream has ended).</summary>
    public string ReplyText => _reply.ToString();

    /// <summary>
    /// Stores the reply once (later calls do nothing): complete when <paramref name="status"/> is completed, otherwise
    /// truncated with the text produced so far. A session deleted meanwhile keeps nothing; a store failure is logged.
    /// </summary>
    public async ValueTask StoreReplyAsync(UsageStatus status, ChatUsage usage)
    {
        if (Interlocked.Exchange(ref _stored, 1) != 0)
        {
            return;
        }

        var truncated = status != UsageStatus.Completed;
        var error = !truncated ? null : _error ?? (status == UsageStatus.Abandoned ? "cancelled: the client left or the stream was cancelled" : "failed");
        var message = new NewSessionMessage(
            ChatRoles.Assistant, _reply.ToString(), truncated, truncated ? null : _finishReason, usage.PromptTokens, usage.CompletionTokens, error);
        try
        {
            // Not the request's token: the client leaving is exactly when the truncated reply must still be kept.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _store.AppendSessionMessageAsync(Session.Owner, Session.Id, message, timeout.Token);
        }
        catch (StoreNotFoundException)
        {
            LogSessionGone(_logger, Session.Id);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogStoreFailed(_logger, ex, Session.Id, _reply.Length);
        }
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

    private sealed class Recording(IChatBackend inner, SessionTurn turn) : IChatBackend
    {
        public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            await using var events = inner.StreamAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
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
                    turn._error = ex.Error.Message;
                    throw;
                }

                turn.Observe(events.Current);
                yield return events.Current;
            }
        }
    }
}
