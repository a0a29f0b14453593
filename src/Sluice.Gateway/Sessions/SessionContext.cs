using Microsoft.AspNetCore.Http;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Storage;

namespace Sluice.Gateway.Sessions;

/// <summary>
/// Builds the prompt of one session turn: the system prompt, as much recent history as fits, and the new message.
/// </summary>
/// <remarks>
/// The budget is the session's <c>max_context_tokens</c> minus the reply budget (the turn's <c>max_tokens</c>, or
/// <see cref="DefaultReplyBudget"/>). The oldest messages are left out first (they stay stored); a reply whose question
/// was left out goes too, so the prompt never starts with an orphaned answer. The system prompt and the new message
/// are never left out: when they alone do not fit, the turn is refused with a 400 naming <c>message</c>.
/// </remarks>
internal static class SessionContext
{
    /// <summary>The reply budget when the turn names no <c>max_tokens</c>.</summary>
    public const int DefaultReplyBudget = 512;

    public static (List<ChatMessage> Messages, int DroppedTurns) Build(ChatSession session, string systemPrompt, string message, int? maxTokens)
    {
        var reply = maxTokens ?? DefaultReplyBudget;
        var fixedPart = new List<ChatMessage>(2);
        if (systemPrompt.Length > 0)
        {
            fixedPart.Add(new ChatMessage(ChatRoles.System, systemPrompt));
        }

        fixedPart.Add(new ChatMessage(ChatRoles.User, message));
        var used = TokenCounter.CountPrompt(fixedPart);
        if (used + reply > session.MaxContextTokens)
        {
            throw new ChatException(StatusCodes.Status400BadRequest, new ErrorInfo(
                $"The system prompt and this message take {used} tokens and the reply needs {reply}, more than the session's max_context_tokens ({session.MaxContextTokens}). " +
                "Shorten the message, lower max_tokens, or start a session with a larger max_context_tokens.",
                ErrorTypes.InvalidRequest, "message", "context_length_exceeded"));
        }

        // History worth sending: an interrupted reply that produced no text tells the model nothing.
        var history = session.Messages.Where(m => !(m.Truncated && m.Content.Length == 0)).ToList();
        var budget = session.MaxContextTokens - reply - used;
        var keepFrom = history.Count;
        for (var i = history.Count - 1; i >= 0; i--)
        {
            var cost = TokenCounter.PerMessageOverhead + TokenCounter.Count(history[i].Content);
            if (cost > budget)
            {
                break;
            }

            budget -= cost;
            keepFrom = i;
        }

        while (keepFrom < history.Count && history[keepFrom].Role != ChatRoles.User)
        {
            keepFrom++;
        }

        var messages = new List<ChatMessage>(history.Count - keepFrom + 2);
        if (systemPrompt.Length > 0)
        {
            messages.Add(fixedPart[0]);
        }

        messages.AddRange(history.Skip(keepFrom).Select(m => new ChatMessage(m.Role, m.Content)));
        messages.Add(fixedPart[^1]);

        // Empty interrupted replies are not history, so they are not reported as trimmed either. Messages too old to be
        // read at all (beyond the session's whole context, see ISessionStore.GetSessionForTurnAsync) were left out too.
        var unread = (int)Math.Max(0, session.MessageCount - session.Messages.Count);
        return (messages, keepFrom + unread);
    }
}
