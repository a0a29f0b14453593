using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Sluice.Client.Internal;
using Sluice.Protocol;
using Sluice.Protocol.Sse;

namespace Sluice.Client.Sessions;

/// <summary>
/// Server-side conversations (<c>/api/sessions</c>): the gateway stores the system prompt and every message, trims old
/// turns to the session's context budget, and keeps interrupted replies marked truncated. A turn sends one message.
/// </summary>
/// <remarks>
/// Sessions belong to the key's team. Turns stream with the same resume, timeouts and error types as
/// <see cref="SluiceChatClient"/>. <see cref="AsChatClient"/> exposes sessions through <see cref="IChatClient"/> with
/// <see cref="ChatOptions.ConversationId"/> as the session id. Thread-safe.
/// </remarks>
public sealed class SluiceSessionsClient : IDisposable
{
    /// <summary>The <see cref="ChatResponseUpdate.AdditionalProperties"/> key on a turn's last update: how many earlier messages were left out of the prompt.</summary>
    public const string DroppedTurnsProperty = "sluice.dropped_turns";

    private const string SessionIdHeader = "x-sluice-session-id";

    // The most the gateway returns per GET /api/sessions/{id}.
    private const int MessagePage = 1000;

    private readonly SluiceTransport _transport;

    /// <summary>Creates a client.</summary>
    /// <param name="options">Where to connect (the server root) and the limits.</param>
    /// <param name="httpClient">An <see cref="HttpClient"/> to use (not disposed by this client), or null to own one.</param>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    public SluiceSessionsClient(SluiceClientOptions options, HttpClient? httpClient = null) =>
        _transport = new SluiceTransport(options, httpClient);

    /// <summary>Creates a session (<c>POST /api/sessions</c>).</summary>
    /// <param name="request">System prompt, model, context budget, title and metadata; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The session, with no messages yet.</returns>
    /// <exception cref="SluiceException">The call failed (e.g. <see cref="SluiceBadRequestException"/> naming the field).</exception>
    public async Task<SluiceSession> CreateSessionAsync(CreateSessionRequest? request = null, CancellationToken cancellationToken = default)
    {
        var payload = JsonBody.Write(json =>
        {
            JsonBody.WriteOptional(json, "system_prompt", request?.SystemPrompt);
            JsonBody.WriteOptional(json, "model", request?.Model);
            JsonBody.WriteOptional(json, "title", request?.Title);
            if (request?.MaxContextTokens is { } budget)
            {
                json.WriteNumber("max_context_tokens", budget);
            }

            if (request?.Metadata is { } metadata)
            {
                json.WriteStartObject("metadata");
                foreach (var (key, value) in metadata)
                {
                    json.WriteString(key, value);
                }

                json.WriteEndObject();
            }
        });
        using var document = await _transport.SendJsonAsync(HttpMethod.Post, _transport.Endpoints.Api("/api/sessions"), payload, idempotent: false, cancellationToken).ConfigureAwait(false);
        return SluiceSession.FromJson(document.RootElement);
    }

    /// <summary>Lists the team's sessions, most recently used first (<c>GET /api/sessions</c>).</summary>
    /// <param name="limit">Most sessions to return; null for the server's default (20).</param>
    /// <param name="offset">Sessions to skip; null for none.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The page.</returns>
    /// <exception cref="SluiceException">The call failed.</exception>
    public async Task<SluiceSessionPage> ListSessionsAsync(int? limit = null, int? offset = null, CancellationToken cancellationToken = default)
    {
        var url = _transport.Endpoints.Api("/api/sessions" + JsonBody.PageQuery(limit, offset));
        using var document = await _transport.SendJsonAsync(HttpMethod.Get, url, null, idempotent: true, cancellationToken).ConfigureAwait(false);
        var root = document.RootElement;
        var sessions = root.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Array
            ? data.EnumerateArray().Select(SluiceSession.FromJson).ToList()
            : [];
        return new SluiceSessionPage(sessions, Json.Bool(root, "has_more") ?? false);
    }

    /// <summary>
    /// Reads a session with all its messages (<c>GET /api/sessions/{id}</c>, page after page: the gateway returns at most
    /// 1000 messages per response, newest first by page).
    /// </summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The session.</returns>
    /// <exception cref="SluiceNotFoundException">There is no such session for this key's team.</exception>
    public async Task<SluiceSession> GetSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        SluiceSession? newest = null;
        var pages = new List<IReadOnlyList<SluiceSessionMessage>>();
        long? before = null;
        do
        {
            var query = "?limit=" + MessagePage.ToString(CultureInfo.InvariantCulture)
                + (before is { } id ? "&before=" + id.ToString(CultureInfo.InvariantCulture) : string.Empty);
            using var document = await _transport.SendJsonAsync(HttpMethod.Get, new Uri(SessionUrl(sessionId) + query), null, idempotent: true, cancellationToken)
                .ConfigureAwait(false);
            var page = SluiceSession.FromJson(document.RootElement);
            newest ??= page;
            pages.Add(page.Messages);
            before = Json.Bool(document.RootElement, "has_more") == true ? Json.Long(document.RootElement, "next_before") : null;
        }
        while (before is not null);

        pages.Reverse();
        return newest with { Messages = [.. pages.SelectMany(p => p)] };
    }

    /// <summary>Deletes a session and its messages (<c>DELETE /api/sessions/{id}</c>).</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when the session is gone.</returns>
    /// <exception cref="SluiceNotFoundException">There is no such session for this key's team.</exception>
    public async Task DeleteSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        using var document = await _transport.SendJsonAsync(HttpMethod.Delete, SessionUrl(sessionId), null, idempotent: true, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends one message to a session and streams the reply (<c>POST /api/llm/chat/session/stream</c>). Every update
    /// carries the session id in <see cref="ChatResponseUpdate.ConversationId"/>; the last one carries the finish
    /// reason, <see cref="UsageContent"/> and <see cref="DroppedTurnsProperty"/>.
    /// </summary>
    /// <param name="sessionId">The session, or null to create one (with <paramref name="systemPrompt"/>).</param>
    /// <param name="message">The user's message.</param>
    /// <param name="options">Model (for this turn), temperature, top-p, max output tokens and seed; null for the session's.</param>
    /// <param name="systemPrompt">For a new session: its system prompt.</param>
    /// <param name="cancellationToken">Cancels the turn (the server stops generating and keeps the reply as truncated).</param>
    /// <returns>The updates, as they arrive.</returns>
    /// <exception cref="SluiceException">The turn failed (<see cref="SluiceStreamException"/> after it started).</exception>
    public IAsyncEnumerable<ChatResponseUpdate> StreamTurnAsync(
        string? sessionId, string message, ChatOptions? options = null, string? systemPrompt = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(message);
        var model = options?.ModelId ?? (sessionId is null ? _transport.Options.DefaultModel : null);
        var payload = JsonBody.Write(json =>
        {
            JsonBody.WriteOptional(json, "session_id", sessionId);
            json.WriteString("message", message);
            JsonBody.WriteOptional(json, "system_prompt", systemPrompt);
            JsonBody.WriteOptional(json, "model", model);
            if (options?.Temperature is { } temperature)
            {
                json.WriteNumber("temperature", temperature);
            }

            if (options?.TopP is { } topP)
            {
                json.WriteNumber("top_p", topP);
            }

            if (options?.MaxOutputTokens is { } max)
            {
                json.WriteNumber("max_tokens", max);
            }

            if (options?.Seed is { } seed)
            {
                json.WriteNumber("seed", seed);
            }
        });
        return StreamTurnCoreAsync(payload, sessionId, cancellationToken);
    }

    /// <summary>
    /// An <see cref="IChatClient"/> over sessions: each call sends the last user message of <c>messages</c> as one turn of
    /// the session named by <see cref="ChatOptions.ConversationId"/> (a new session when none — its system prompt taken
    /// from the system messages — whose id comes back in <see cref="ChatResponse.ConversationId"/>). Earlier messages
    /// are not sent: the session holds the history. Shares this client's connections; disposing it does nothing.
    /// </summary>
    /// <returns>The chat client.</returns>
    public IChatClient AsChatClient() => new SessionChatClient(this);

    /// <summary>Releases the connection pool (when the client created it).</summary>
    public void Dispose() => _transport.Dispose();

    private async IAsyncEnumerable<ChatResponseUpdate> StreamTurnCoreAsync(byte[] payload, string? sessionId, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var url = _transport.Endpoints.Api("/api/llm/chat/session/stream");
        var turn = new TurnState { SessionId = sessionId };
        await foreach (var update in _transport.StreamEventsAsync(url, payload, turn.Decode, turn.OnResponse, cancellationToken).ConfigureAwait(false))
        {
            yield return update;
        }
    }

    private Uri SessionUrl(string sessionId)
    {
        ArgumentException.ThrowIfNullOrEmpty(sessionId);
        return _transport.Endpoints.Api("/api/sessions/" + Uri.EscapeDataString(sessionId));
    }



    /// <summary>Decodes one turn's portal events (<c>{"content"}</c>, <c>{"done"}</c>, <c>{"error"}</c>).</summary>
    private sealed class TurnState
    {
        private string? _responseId;

        public string? SessionId { get; set; }

        public void OnResponse(HttpResponseMessage response)
        {
            _responseId = ErrorMapper.RequestIdOf(response);
            if (response.Headers.TryGetValues(SessionIdHeader, out var ids))
            {
                SessionId = ids.FirstOrDefault() ?? SessionId;
            }
        }

        public DecodedEvent<ChatResponseUpdate> Decode(SseEvent sseEvent, string? requestId)
        {
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(sseEvent.Data);
            }
            catch (JsonException ex)
            {
                throw new SluiceStreamException(
                    $"The server sent an event that is not JSON ({ex.Message}). The answer is incomplete; check that the address points at a Sluice gateway.",
                    new SluiceErrorDetails(RequestId: requestId),
                    ex);
            }

            using (document)
            {
                var root = document.RootElement;
                if (Json.String(root, "error") is { } error)
                {
                    throw ErrorMapper.FromErrorEvent(new ErrorInfo(error, ErrorTypes.Server, null, Json.String(root, "code")), requestId);
                }

                if (Json.String(root, "content") is { } text)
                {
                    return new DecodedEvent<ChatResponseUpdate>(NewUpdate([new TextContent(text)]), HasTokens: text.Length > 0);
                }

                if (Json.Bool(root, "done") == true)
                {
                    SessionId = Json.String(root, "session_id") ?? SessionId;
                    var usage = Json.Object(root, "usage");
                    var update = NewUpdate(usage is { } u
                        ? [new UsageContent(new UsageDetails
                        {
                            InputTokenCount = Json.Long(u, "prompt_tokens"),
                            OutputTokenCount = Json.Long(u, "completion_tokens"),
                            TotalTokenCount = Json.Long(u, "total_tokens"),
                        })]
                        : []);
                    update.FinishReason = Json.String(root, "finish_reason") is { } reason ? new ChatFinishReason(reason) : null;
                    update.AdditionalProperties = new AdditionalPropertiesDictionary { [DroppedTurnsProperty] = (int)(Json.Long(root, "dropped_turns") ?? 0) };
                    return new DecodedEvent<ChatResponseUpdate>(update, End: true, Finished: true);
                }

                // Unknown events are skipped: newer servers may add some.
                return default;
            }
        }

        private ChatResponseUpdate NewUpdate(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ConversationId = SessionId,
            ResponseId = _responseId,
        };
    }

    private sealed class SessionChatClient(SluiceSessionsClient sessions) : IChatClient
    {
        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(messages);
            var list = messages as IReadOnlyList<ChatMessage> ?? [.. messages];
            var last = list.LastOrDefault(m => m.Role == ChatRole.User)
                ?? throw new ArgumentException("A session turn needs a user message; the session holds the rest of the history.", nameof(messages));
            var sessionId = options?.ConversationId;
            string? systemPrompt = null;
            if (sessionId is null)
            {
                var system = string.Join("\n", list.Where(m => m.Role == ChatRole.System).Select(m => m.Text));
                systemPrompt = system.Length > 0 ? system : null;
            }

            return sessions.StreamTurnAsync(sessionId, last.Text, options, systemPrompt, cancellationToken);
        }

        public Task<ChatResponse> GetResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

        public object? GetService(Type serviceType, object? serviceKey = null) =>
            serviceKey is null && serviceType is not null && serviceType.IsInstanceOfType(this) ? this
            : serviceKey is null && serviceType == typeof(SluiceSessionsClient) ? sessions
            : null;

        public void Dispose()
        {
            // The sessions client owns the connections.
        }
    }
}
