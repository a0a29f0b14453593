using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Endpoints;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Sessions;

/// <summary>
/// Sessions (see docs/sessions.md): <c>/api/sessions</c> create, list, read and delete, and one streamed turn with
/// <c>POST /api/llm/chat/session/stream</c> (portal events). A session belongs to the caller's team, or to the operator
/// for the master key and open mode; another owner's session answers 404 like a missing one.
/// </summary>
internal sealed class SessionEndpoints(
    TenancyRuntime tenancy,
    ModelCatalog catalog,
    ModelGroupRegistry groups,
    CallAdmission admission,
    GatewayOptions options,
    StreamRelay relay,
    StreamRegistry streams,
    ILogger<SessionEndpoints> logger)
{
    /// <summary>The response header naming the session a turn belongs to.</summary>
    public const string SessionIdHeader = "x-sluice-session-id";

    /// <summary>The response header saying how many earlier messages were left out of the prompt.</summary>
    public const string DroppedTurnsHeader = "x-sluice-context-dropped-turns";

    private const int MaxTitleChars = 200;
    private const int MaxMetadataKeyChars = 64;
    private const int MaxMetadataValueChars = 512;

    private readonly ChatRequestLimits _turnLimits = new() { MaxPromptChars = options.Limits.MaxPromptChars, MessagesOptional = true };
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/api/sessions", c => ApiErrors.RunAsync(c, () => CreateAsync(c)));
        app.MapGet("/api/sessions", c => ApiErrors.RunAsync(c, () => ListAsync(c)));
        app.MapGet("/api/sessions/{id}", c => ApiErrors.RunAsync(c, () => GetAsync(c)));
        app.MapDelete("/api/sessions/{id}", c => ApiErrors.RunAsync(c, () => DeleteAsync(c)));
        app.MapPost("/api/llm/chat/session/stream", StreamAsync);
    }

    /// <summary>Who owns the caller's sessions.</summary>
    public static string OwnerOf(Caller caller) => caller.TeamId ?? SessionOwners.Operator;

    private static string Route(HttpContext context) => context.Request.RouteValues["id"] as string ?? string.Empty;

    private async Task CreateAsync(HttpContext context)
    {
        var caller = Caller.Of(context);
        using var body = await ApiJson.ReadAsync(context, options.Limits.MaxRequestBodyBytes);
        var root = ApiJson.RequireObject(body);
        var model = ApiJson.OptionalString(root, "model");
        if (model is not null)
        {
            // A typo is reported now, not at the first turn.
            await ChatCompletionsEndpoint.ResolveModelAsync(catalog, groups, model, context.RequestAborted);
        }

        var title = ApiJson.OptionalString(root, "title");
        if (title is { Length: > MaxTitleChars })
        {
            throw ChatException.BadRequest($"title is {title.Length} characters; the limit is {MaxTitleChars}.", "title", "string_above_max_length");
        }

        var session = await tenancy.Store.CreateSessionAsync(
            OwnerOf(caller),
            new NewChatSession(
                ReadContextBudget(root),
                ReadText(root, "system_prompt", required: false),
                model,
                title,
                ReadMetadata(root),
                caller.Key?.Id),
            context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status201Created, json => WriteSession(json, session, withMessages: false));
    }

    private async Task ListAsync(HttpContext context)
    {
        var (limit, offset) = ApiJson.Page(context, defaultLimit: 20);

        // One more than asked tells whether there is a next page.
        var page = await tenancy.Store.ListSessionsAsync(OwnerOf(Caller.Of(context)), limit + 1, offset, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("object", "list");
            json.WriteStartArray("data");
            foreach (var session in page.Take(limit))
            {
                WriteSession(json, session, withMessages: false);
            }

            json.WriteEndArray();
            json.WriteBoolean("has_more", page.Count > limit);
            json.WriteEndObject();
        });
    }

    private async Task GetAsync(HttpContext context)
    {
        var id = Route(context);
        var session = await tenancy.Store.GetSessionAsync(OwnerOf(Caller.Of(context)), id, context.RequestAborted)
            ?? throw ApiErrors.NotFound("session", id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteSession(json, session, withMessages: true));
    }

    private async Task DeleteAsync(HttpContext context)
    {
        var id = Route(context);
        if (!await tenancy.Store.DeleteSessionAsync(OwnerOf(Caller.Of(context)), id, context.RequestAborted))
        {
            throw ApiErrors.NotFound("session", id);
        }

        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("id", id);
            json.WriteString("object", "session.deleted");
            json.WriteBoolean("deleted", true);
            json.WriteEndObject();
        });
    }

    /// <summary><c>POST /api/llm/chat/session/stream</c>: one turn, streamed as portal events through the shared relay.</summary>
    public async Task StreamAsync(HttpContext context)
    {
        var start = Stopwatch.GetTimestamp();
        var requestId = RequestIds.Next();
        context.Response.Headers["x-request-id"] = requestId;
        SessionTurn turn;
        ModelEntry model;
        CallLease lease;
        UsageOwner? owner;
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            (turn, model, lease, owner) = await BeginTurnAsync(context, Caller.Of(context), body, admit: true, context.RequestAborted);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex);
            return;
        }
        catch (StoreNotFoundException ex)
        {
            await ErrorResponses.WriteAsync(context, ApiErrors.NotFound(ex.Kind, ex.Id));
            return;
        }
        catch (Exception ex) when (ApiErrors.IsStoreFailure(ex))
        {
            await ErrorResponses.WriteAsync(context, ApiErrors.StoreUnavailable(ex));
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        context.Response.Headers[SessionIdHeader] = turn.Session.Id;
        context.Response.Headers[DroppedTurnsHeader] = turn.DroppedTurns.ToString(CultureInfo.InvariantCulture);

        // The reply is stored before the done (or error) event goes out, so a client reading the session right after
        // sees it; a client that left gets it stored, truncated, once the generation has stopped.
        var settings = new RelaySettings(
            requestId, start, _pingInterval, options.Streaming.MaxPendingBytes, owner, (status, usage) => turn.StoreReplyAsync(status, usage));
        var format = new PortalStreamFormat(new PortalStreamWriter(turn.PortalInfo));
        await using (lease)
        {
            await relay.RelayAsync(context, turn.Backend, turn.Request, format, settings, streams.Begin(context, format));
        }

        await turn.StoreReplyAsync(Accounting.UsageStatus.Abandoned, new ChatUsage(TokenCounter.CountPrompt(turn.Request.Messages), 0));
    }

    /// <summary>
    /// Validates a turn (<c>message</c>, optional <c>session_id</c>, <c>system_prompt</c>, <c>model</c> and sampling
    /// fields), admits it, creates the session when none is named, stores the user's message and builds the prompt.
    /// </summary>
    public async Task<(SessionTurn Turn, ModelEntry Model, CallLease Lease, UsageOwner? Owner)> BeginTurnAsync(
        HttpContext context, Caller caller, ReadOnlyMemory<byte> body, bool admit, CancellationToken cancellationToken)
    {
        var parsed = ChatRequestParser.Parse(body, _turnLimits);
        string message;
        string? sessionId;
        string? systemPrompt;
        using (var document = JsonDocument.Parse(body))
        {
            var root = document.RootElement;
            if (root.TryGetProperty("messages", out _) || root.TryGetProperty("prompt", out _))
            {
                throw ChatException.BadRequest(
                    "A session turn takes one \"message\" (the session keeps the history); send messages to /api/llm/chat/stream instead.",
                    root.TryGetProperty("messages", out _) ? "messages" : "prompt", "invalid_value");
            }

            message = ReadText(root, "message", required: true)!;
            sessionId = ApiJson.OptionalString(root, "session_id");
            systemPrompt = ReadText(root, "system_prompt", required: false);
        }

        var store = tenancy.Store;
        var ownerId = OwnerOf(caller);
        ChatSession? session = null;
        if (sessionId is not null)
        {
            session = await store.GetSessionAsync(ownerId, sessionId, cancellationToken) ?? throw ApiErrors.NotFound("session", sessionId);
            if (systemPrompt is not null && systemPrompt != (session.SystemPrompt ?? string.Empty))
            {
                throw ChatException.BadRequest(
                    "system_prompt is set when a session is created and cannot change within it. Leave it out, or start a new session (omit session_id) with the new system prompt.",
                    "system_prompt", "invalid_value");
            }
        }

        var modelName = parsed.Model.Length > 0 ? parsed.Model : session?.Model ?? string.Empty;
        var model = await ChatCompletionsEndpoint.ResolveModelAsync(catalog, groups, modelName, cancellationToken);
        var contextBudget = session?.MaxContextTokens ?? NewChatSession.DefaultMaxContextTokens;
        var prompt = session?.SystemPrompt ?? systemPrompt ?? string.Empty;
        var (messages, dropped) = SessionContext.Build(
            session ?? new ChatSession
            {
                Id = string.Empty,
                Owner = ownerId,
                MaxContextTokens = contextBudget,
                MessageCount = 0,
                CreatedAt = default,
                UpdatedAt = default,
            },
            prompt,
            message,
            parsed.MaxTokens);
        var request = ChatRequests.WithMessages(parsed, model.Name, messages);

        var (lease, owner) = admit ? await TenantCall.AdmitAsync(context, admission, model.Name, request) : (CallLease.None, null);
        try
        {
            session ??= await store.CreateSessionAsync(
                ownerId,
                new NewChatSession(contextBudget, systemPrompt, parsed.Model.Length > 0 ? parsed.Model : null, KeyId: caller.Key?.Id),
                cancellationToken);
            await store.AppendSessionMessageAsync(ownerId, session.Id, new NewSessionMessage(ChatRoles.User, message), cancellationToken);
        }
        catch
        {
            await lease.DisposeAsync();
            throw;
        }

        return (new SessionTurn(store, logger, session, request, model.Backend, dropped), model, lease, owner);
    }

    private string? ReadText(JsonElement root, string name, bool required)
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

        if (text.Length > options.Limits.MaxPromptChars)
        {
            throw ChatException.BadRequest(
                $"{name} is {text.Length} characters; the limit is {options.Limits.MaxPromptChars}. Shorten it or raise Limits:MaxPromptChars.",
                name, "string_above_max_length");
        }

        return text.Length == 0 ? null : text;
    }

    private static int ReadContextBudget(JsonElement root)
    {
        var value = ApiJson.OptionalLong(root, "max_context_tokens") ?? NewChatSession.DefaultMaxContextTokens;
        if (value is < NewChatSession.MinContextTokens or > NewChatSession.MaxContextTokensLimit)
        {
            throw ChatException.BadRequest(
                $"max_context_tokens must be between {NewChatSession.MinContextTokens} and {NewChatSession.MaxContextTokensLimit} (got {value}).",
                "max_context_tokens");
        }

        return (int)value;
    }

    private static Dictionary<string, string>? ReadMetadata(JsonElement root)
    {
        if (!root.TryGetProperty("metadata", out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw ChatException.BadRequest("metadata must be an object of string values, e.g. {\"app\": \"support\"}.", "metadata", "invalid_type");
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw ChatException.BadRequest($"metadata.{entry.Name} must be a string.", "metadata", "invalid_type");
            }

            if (entry.Name.Length > MaxMetadataKeyChars || entry.Value.GetString()!.Length > MaxMetadataValueChars)
            {
                throw ChatException.BadRequest(
                    $"metadata keys take at most {MaxMetadataKeyChars} characters and values at most {MaxMetadataValueChars}.", "metadata", "string_above_max_length");
            }

            metadata[entry.Name] = entry.Value.GetString()!;
            if (metadata.Count > 16)
            {
                throw ChatException.BadRequest("metadata takes at most 16 entries.", "metadata");
            }
        }

        return metadata;
    }

    private static void WriteSession(Utf8JsonWriter json, ChatSession session, bool withMessages)
    {
        json.WriteStartObject();
        json.WriteString("id", session.Id);
        json.WriteString("object", "session");
        json.WriteString("title", session.Title);
        json.WriteString("model", session.Model);
        json.WriteString("system_prompt", session.SystemPrompt);
        json.WriteNumber("max_context_tokens", session.MaxContextTokens);
        json.WriteStartObject("metadata");
        foreach (var (key, value) in session.Metadata)
        {
            json.WriteString(key, value);
        }

        json.WriteEndObject();
        json.WriteNumber("message_count", session.MessageCount);
        json.WriteNumber("created_at", session.CreatedAt.ToUnixTimeSeconds());
        json.WriteNumber("updated_at", session.UpdatedAt.ToUnixTimeSeconds());
        if (withMessages)
        {
            json.WriteStartArray("messages");
            foreach (var message in session.Messages)
            {
                json.WriteStartObject();
                json.WriteNumber("id", message.Id);
                json.WriteString("role", message.Role);
                json.WriteString("content", message.Content);
                json.WriteBoolean("truncated", message.Truncated);
                if (message.FinishReason is not null)
                {
                    json.WriteString("finish_reason", message.FinishReason);
                }

                if (message.Error is not null)
                {
                    json.WriteString("error", message.Error);
                }

                if (message.PromptTokens is { } prompt && message.CompletionTokens is { } completion)
                {
                    json.WriteStartObject("usage");
                    json.WriteNumber("prompt_tokens", prompt);
                    json.WriteNumber("completion_tokens", completion);
                    json.WriteNumber("total_tokens", prompt + completion);
                    json.WriteEndObject();
                }

                json.WriteNumber("created_at", message.CreatedAt.ToUnixTimeSeconds());
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        json.WriteEndObject();
    }
}
