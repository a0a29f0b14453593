using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Endpoints;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
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
    ModelResolver resolver,
    HttpCalls calls,
    GatewayOptions options,
    ILogger<SessionEndpoints> logger)
{
    /// <summary>The response header naming the session a turn belongs to.</summary>
    public const string SessionIdHeader = "x-sluice-session-id";

    /// <summary>The response header saying how many earlier messages were left out of the prompt.</summary>
    public const string DroppedTurnsHeader = "x-sluice-context-dropped-turns";

    /// <summary>Messages per page of <c>GET /api/sessions/{id}</c> unless <c>limit</c> says otherwise.</summary>
    private const int DefaultMessagePage = 100;

    private const int MaxTitleChars = 200;
    private const int MaxMetadataKeyChars = 64;
    private const int MaxMetadataValueChars = 512;
    private const int MaxMetadataEntries = 16;

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/api/sessions", c => ApiHandler.RunAsync(c, () => CreateAsync(c))).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/sessions", c => ApiHandler.RunAsync(c, () => ListAsync(c))).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/sessions/{id}", c => ApiHandler.RunAsync(c, () => GetAsync(c))).WithPolicy(EndpointPolicy.Key);
        app.MapDelete("/api/sessions/{id}", c => ApiHandler.RunAsync(c, () => DeleteAsync(c))).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/llm/chat/session/stream", StreamAsync).WithPolicy(EndpointPolicy.Key);
    }

    /// <summary>Who owns the caller's sessions.</summary>
    public static string OwnerOf(Caller caller) => caller.OwnerId;

    private static string Route(HttpContext context) => context.Request.RouteValues["id"] as string ?? string.Empty;

    private async Task CreateAsync(HttpContext context)
    {
        var caller = context.GetCaller();
        using var body = await ApiJson.ReadAsync(context, options.Limits.MaxRequestBodyBytes);
        var root = ApiJson.RequireObject(body);
        var model = ApiJson.OptionalName(root, "model", NameKind.ModelName);
        if (model is not null)
        {
            // A typo is reported now, not at the first turn.
            await resolver.ResolveAsync(model, CallDialect.Session, context.RequestAborted);
        }

        var title = ApiJson.OptionalName(root, "title", NameKind.Label, MaxTitleChars);

        ChatSession session;
        try
        {
            session = await tenancy.Store.CreateSessionAsync(
                OwnerOf(caller),
                new NewChatSession(
                    ReadContextBudget(root),
                    SessionStage.ReadText(root, "system_prompt", required: false, options.Limits.MaxPromptChars),
                    model,
                    title,
                    ReadMetadata(root),
                    caller.Key?.Id,
                    options.Sessions.MaxPerTeam),
                context.RequestAborted);
        }
        catch (SessionLimitException limit)
        {
            throw SluiceErrors.TooManySessions(limit.Limit);
        }

        await ApiJson.WriteAsync(context, StatusCodes.Status201Created, json => WriteSession(json, session, withMessages: false));
    }

    private async Task ListAsync(HttpContext context)
    {
        var (limit, offset) = ApiJson.Page(context, defaultLimit: 20);

        // One more than asked tells whether there is a next page.
        var page = await tenancy.Store.ListSessionsAsync(OwnerOf(context.GetCaller()), limit + 1, offset, context.RequestAborted);
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

    /// <summary>
    /// <c>GET /api/sessions/{id}</c>: the session and one page of its messages — the newest <c>limit</c> (default 100,
    /// at most 1000) before message id <c>before</c>, oldest first — with <c>has_more</c> and <c>next_before</c> (the id to
    /// pass as <c>before</c> for the previous page). A response is bounded however long the session is.
    /// </summary>
    private async Task GetAsync(HttpContext context)
    {
        var id = Route(context);
        var page = ReadMessagePage(context);
        var session = await tenancy.Store.GetSessionAsync(OwnerOf(context.GetCaller()), id, page, context.RequestAborted)
            ?? throw SluiceErrors.NotFound("session", id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteSession(json, session, withMessages: true));
    }

    private static SessionMessagePage ReadMessagePage(HttpContext context)
    {
        var (limit, _) = ApiJson.Page(context, DefaultMessagePage);
        var text = context.Request.Query["before"].ToString();
        if (text.Length == 0)
        {
            return new SessionMessagePage(limit);
        }

        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var before) || before < 1)
        {
            throw ChatException.BadRequest(
                $"Query parameter before must be a message id (a positive integer, the next_before of the previous page); got \"{SluiceErrors.Echo(text)}\".", "before");
        }

        return new SessionMessagePage(limit, before);
    }

    private async Task DeleteAsync(HttpContext context)
    {
        var id = Route(context);
        if (!await tenancy.Store.DeleteSessionAsync(OwnerOf(context.GetCaller()), id, context.RequestAborted))
        {
            throw SluiceErrors.NotFound("session", id);
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

    /// <summary><c>POST /api/llm/chat/session/stream</c>: one turn, streamed as portal events through the call pipeline.</summary>
    public Task StreamAsync(HttpContext context)
    {
        var stage = new SessionStage(tenancy.Store, options.Limits.MaxPromptChars, options.Sessions.MaxMessages, logger, options.Sessions.MaxPerTeam);
        var answer = new HttpAnswer(
            _ => new PortalStreamFormat(new PortalStreamWriter(stage.PortalInfo)),
            Completion: null,
            Resumable: true,
            OnAnswer: (http, _) =>
            {
                http.Response.Headers[SessionIdHeader] = stage.Session.Id;
                http.Response.Headers[DroppedTurnsHeader] = stage.DroppedTurns.ToString(CultureInfo.InvariantCulture);
            });
        return calls.RunAsync(context, CallDialect.Session, answer, stage);
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
            if (metadata.Count == MaxMetadataEntries)
            {
                throw ChatException.BadRequest($"metadata takes at most {MaxMetadataEntries} entries.", "metadata", "object_above_max_size");
            }

            // A bad key is not echoed: it is exactly what must not reach logs and pages as it is.
            if (NameRules.Check(NameKind.Label, entry.Name, MaxMetadataKeyChars) is { } problem)
            {
                throw ChatException.BadRequest($"A key of metadata {problem}", "metadata", "invalid_value");
            }
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw ChatException.BadRequest($"metadata.{entry.Name} must be a string.", $"metadata.{entry.Name}", "invalid_type");
            }

            metadata[entry.Name] = ApiJson.CheckName(entry.Value.GetString()!, $"metadata.{entry.Name}", NameKind.Text, MaxMetadataValueChars);
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
            json.WriteBoolean("has_more", session.HasOlderMessages);
            if (session.HasOlderMessages && session.Messages.Count > 0)
            {
                json.WriteNumber("next_before", session.Messages[0].Id);
            }
            else
            {
                json.WriteNull("next_before");
            }
        }

        json.WriteEndObject();
    }
}
