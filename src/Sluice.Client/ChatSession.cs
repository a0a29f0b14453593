using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Sluice.Protocol;

namespace Sluice.Client;

/// <summary>
/// A conversation over any <see cref="IChatClient"/>: a system prompt, a history that records each reply (streamed
/// replies included, as they complete), and trimming of the oldest turns to a context budget. The system prompt is
/// never trimmed. Not thread-safe: one turn at a time.
/// </summary>
/// <remarks>
/// A turn that fails or is cancelled before any text arrived is forgotten (its user message is removed, so retrying
/// does not send it twice). A turn interrupted after text arrived keeps the partial reply, marked with
/// <see cref="TruncatedProperty"/> in its <see cref="ChatMessage.AdditionalProperties"/>: the user saw it, the model should too.
/// </remarks>
public sealed class ChatSession
{
    /// <summary>The <see cref="ChatMessage.AdditionalProperties"/> key set to <c>true</c> on an interrupted reply.</summary>
    public const string TruncatedProperty = "sluice.truncated";

    private readonly IChatClient _client;
    private readonly List<ChatMessage> _history = [];

    /// <summary>Creates a session.</summary>
    /// <param name="client">The chat client (a <see cref="SluiceChatClient"/> or any other provider's).</param>
    /// <param name="systemPrompt">Opens every request; null or empty for none.</param>
    /// <param name="options">Options sent with every turn (a turn's own options override them); null for none.</param>
    public ChatSession(IChatClient client, string? systemPrompt = null, ChatOptions? options = null)
    {
        _client = client ?? throw new ArgumentNullException(nameof(client));
        SystemPrompt = systemPrompt;
        Options = options;
    }

    /// <summary>The system prompt sent first with every request; never trimmed.</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>Options sent with every turn.</summary>
    public ChatOptions? Options { get; set; }

    /// <summary>
    /// Longest conversation to send, in estimated tokens (<see cref="TokenCounter"/>), reply budget included; null (the
    /// default) for no trimming. Before each request the oldest turns are dropped until system prompt + history +
    /// <see cref="ReplyTokenReserve"/> fit. The newest user message is always sent.
    /// </summary>
    public int? MaxContextTokens { get; set; }

    /// <summary>
    /// Tokens kept free for the reply when trimming; null (the default) uses the turn's <c>MaxOutputTokens</c>, else 0.
    /// </summary>
    public int? ReplyTokenReserve { get; set; }

    /// <summary>The conversation so far, oldest first, without the system prompt.</summary>
    public IReadOnlyList<ChatMessage> History => _history;

    /// <summary>How many messages trimming has dropped since the session began (or was cleared).</summary>
    public int DroppedMessageCount { get; private set; }

    /// <summary>Forgets the history (the system prompt stays).</summary>
    public void Clear()
    {
        _history.Clear();
        DroppedMessageCount = 0;
    }

    /// <summary>Adds a message to the history without sending anything (e.g. to restore a saved conversation).</summary>
    /// <param name="message">The message.</param>
    public void Add(ChatMessage message) => _history.Add(message ?? throw new ArgumentNullException(nameof(message)));

    /// <summary>Sends <paramref name="userMessage"/> and streams the reply; the reply joins the history when the stream ends.</summary>
    /// <param name="userMessage">What the user says.</param>
    /// <param name="options">Options for this turn; null for <see cref="Options"/>.</param>
    /// <param name="cancellationToken">Cancels the turn.</param>
    /// <returns>The reply's updates, as they arrive.</returns>
    /// <exception cref="ArgumentException"><paramref name="userMessage"/> is empty.</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> StreamAsync(
        string userMessage,
        ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(userMessage))
        {
            throw new ArgumentException("The message is empty; say something.", nameof(userMessage));
        }

        var turnOptions = options ?? Options;
        _history.Add(new ChatMessage(ChatRole.User, userMessage));
        var request = BuildRequest(turnOptions);
        var updates = new List<ChatResponseUpdate>();
        var completed = false;
        try
        {
            await foreach (var update in _client.GetStreamingResponseAsync(request, turnOptions, cancellationToken).ConfigureAwait(false))
            {
                updates.Add(update);
                yield return update;
            }

            completed = true;
        }
        finally
        {
            Record(updates, completed);
        }
    }

    /// <summary>Sends <paramref name="userMessage"/> and returns the whole reply (which joins the history).</summary>
    /// <param name="userMessage">What the user says.</param>
    /// <param name="options">Options for this turn; null for <see cref="Options"/>.</param>
    /// <param name="cancellationToken">Cancels the turn.</param>
    /// <returns>The reply.</returns>
    public Task<ChatResponse> SendAsync(string userMessage, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        StreamAsync(userMessage, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <summary>
    /// The messages the next request sends: the system prompt, then the history trimmed to
    /// <see cref="MaxContextTokens"/> (trimming drops the oldest turns from the history for good).
    /// </summary>
    /// <param name="options">The turn's options (for the reply reserve).</param>
    /// <returns>A new list.</returns>
    public IList<ChatMessage> BuildRequest(ChatOptions? options = null)
    {
        Trim(options ?? Options);
        var messages = new List<ChatMessage>(_history.Count + 1);
        if (!string.IsNullOrEmpty(SystemPrompt))
        {
            messages.Add(new ChatMessage(ChatRole.System, SystemPrompt));
        }

        messages.AddRange(_history);
        return messages;
    }

    /// <summary>Estimated tokens of what the next request would send (system prompt and whole history).</summary>
    public int EstimateTokens()
    {
        var total = 3 + (string.IsNullOrEmpty(SystemPrompt) ? 0 : TokenCounter.PerMessageOverhead + TokenCounter.Count(SystemPrompt));
        foreach (var message in _history)
        {
            total += EstimateTokens(message);
        }

        return total;
    }

    /// <summary>Estimated tokens of one message: its text, function calls and results, plus framing.</summary>
    /// <param name="message">The message.</param>
    public static int EstimateTokens(ChatMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var total = TokenCounter.PerMessageOverhead;
        foreach (var content in message.Contents)
        {
            total += content switch
            {
                TextContent text => TokenCounter.Count(text.Text),
                FunctionCallContent call => TokenCounter.Count(call.Name) + (call.Arguments?.Sum(a => TokenCounter.Count(a.Key) + TokenCounter.Count(a.Value?.ToString() ?? string.Empty)) ?? 0),
                FunctionResultContent result => TokenCounter.Count(result.Result?.ToString() ?? string.Empty),
                _ => 0,
            };
        }

        return total;
    }

    private void Trim(ChatOptions? options)
    {
        if (MaxContextTokens is not { } budget)
        {
            return;
        }

        var limit = budget - (ReplyTokenReserve ?? options?.MaxOutputTokens ?? 0);
        var total = EstimateTokens();
        var lastUser = _history.FindLastIndex(m => m.Role == ChatRole.User);
        while (total > limit && _history.Count > 0 && lastUser > 0)
        {
            // Drop whole turns: the oldest message and whatever answers it (assistant replies, tool calls and
            // results) up to the next user message, so no tool result is left without its call.
            var end = 1;
            while (end < _history.Count && _history[end].Role != ChatRole.User)
            {
                end++;
            }

            if (end > lastUser)
            {
                break;
            }

            for (var i = 0; i < end; i++)
            {
                total -= EstimateTokens(_history[i]);
            }

            _history.RemoveRange(0, end);
            DroppedMessageCount += end;
            lastUser -= end;
        }
    }

    private void Record(List<ChatResponseUpdate> updates, bool completed)
    {
        var reply = updates.Count == 0 ? null : updates.ToChatResponse();
        var replyMessages = reply?.Messages.Where(m => m.Contents.Any(c => c is TextContent { Text.Length: > 0 } or FunctionCallContent)).ToList() ?? [];
        if (replyMessages.Count == 0)
        {
            if (!completed)
            {
                // Nothing arrived: forget the question, so that retrying does not send it twice.
                _history.RemoveAt(_history.Count - 1);
            }

            return;
        }

        foreach (var message in replyMessages)
        {
            if (!completed)
            {
                (message.AdditionalProperties ??= [])[TruncatedProperty] = true;
            }

            // Usage is bookkeeping, not conversation.
            var usage = message.Contents.Where(c => c is UsageContent).ToList();
            foreach (var content in usage)
            {
                message.Contents.Remove(content);
            }

            _history.Add(message);
        }
    }
}
