using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Gateway.Sessions;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Storage;

namespace Sluice.Gateway.WebSockets;

/// <summary>
/// <c>GET /api/llm/ws</c>: chat over one WebSocket. The client sends <c>{"type": "chat", "id", "messages", …}</c>
/// (the fields of <c>/api/llm/chat/stream</c>), a session turn <c>{"type": "chat", "id", "message"[, "session_id"]}</c>,
/// or <c>{"type": "cancel", "id"}</c>; the server answers <c>{"type": "chunk", "id", "content"}</c> (or
/// <c>"tool_calls"</c>), <c>{"type": "done", "id", "finish_reason", "usage"}</c> or <c>{"type": "error", "id", "error",
/// "code"}</c>. Requests run concurrently through the call pipeline (admitted, limited and billed one by one, as over
/// HTTP), their messages interleaved by id.
/// </summary>
/// <remarks>
/// Authentication is the upgrade's. A bad message (not JSON, not an object, unknown type) is answered with an error for
/// that message; the socket and its other requests carry on. What one socket can make the gateway hold is bounded
/// (<see cref="WebSocketChatOptions"/>): requests per socket and per key, and a bounded outbox — a client that stops
/// reading pauses its generations, which are cancelled after <c>SlowClientTimeoutSeconds</c>.
/// </remarks>
internal sealed partial class WebSocketEndpoint(
    CallPipeline pipeline, TenancyRuntime tenancy, WebSocketKeyLimiter keyLimiter, GatewayOptions options, ILogger<WebSocketEndpoint> logger)
{
    /// <summary>Longest request id: it is repeated in every message of the answer.</summary>
    public const int MaxIdChars = 64;

    private const int MaxDepth = 64;

    public async Task HandleAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, new ErrorInfo(
                "GET /api/llm/ws expects a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket). Use a WebSocket client, or POST /api/llm/chat/stream for SSE.",
                ErrorTypes.InvalidRequest, null, "websocket_required"));
            return;
        }

        var caller = context.GetCaller();
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        await using var connection = new WebSocketConnection(socket, options.WebSocket, context.RequestAborted);
        try
        {
            await ReadLoopAsync(connection, caller, (context.RequestServices.GetService(typeof(RequestBodyBudget)) as RequestBodyBudget)?.Open(context));
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
        {
            // The client vanished without a close handshake.
        }
    }

    private async Task ReadLoopAsync(WebSocketConnection connection, Caller caller, RequestBodyBudget.Lease? held)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        while (await connection.ReceiveAsync(buffer, options.Limits.MaxRequestBodyBytes, held) is { } message)
        {
            if (buffer.Capacity > 64 * 1024)
            {
                // A large message's buffer is not kept for the socket's life (thousands of idle sockets each holding
                // megabytes): the next message starts small again.
                buffer = new ArrayBufferWriter<byte>(4096);
            }

            string? id = null;
            try
            {
                using var document = ParseMessage(message, out id);
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    throw ChatException.BadRequest("Each message must be a JSON object, e.g. {\"type\": \"chat\", \"id\": \"r1\", \"messages\": [...]}.", null, "invalid_type");
                }

                var type = root.TryGetProperty("type", out var typeValue) && typeValue.ValueKind == JsonValueKind.String ? typeValue.GetString() : null;
                if (string.IsNullOrEmpty(id))
                {
                    throw ChatException.BadRequest("Every message needs a string \"id\" that names the request, e.g. {\"type\": \"chat\", \"id\": \"r1\", \"messages\": [...]}.", "id", "missing_required_parameter");
                }

                switch (type)
                {
                    case "chat":
                        var turn = root.TryGetProperty("session_id", out _) || root.TryGetProperty("message", out _);
                        Start(connection, caller, id, message, turn);
                        break;
                    case "cancel":
                        connection.Cancel(id);
                        break;
                    default:
                        throw ChatException.BadRequest($"Unknown message type '{type}'. Send {{\"type\": \"chat\", \"id\", \"messages\"}} or {{\"type\": \"cancel\", \"id\"}}.", "type");
                }
            }
            catch (ChatException ex)
            {
                await connection.SendFinalAsync(json => Protocol.Portal.PortalEvents.WriteError(json, ex.Error, "error", id));
            }
        }
    }

    /// <summary>
    /// Parses one message (every string checked, see <see cref="JsonInput"/>) and reads its request id — also when the
    /// message is refused, so that the error names the request it refuses whenever the id itself is readable.
    /// </summary>
    private static JsonDocument ParseMessage(ReadOnlyMemory<byte> message, out string? id)
    {
        id = null;
        JsonDocument document;
        try
        {
            document = JsonInput.Parse(message, MaxDepth, "The message", "Send one UTF-8 JSON object per WebSocket text message.");
        }
        catch (ChatException) when (IdOfRefused(message) is { } readable)
        {
            id = readable;
            throw;
        }

        var root = document.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("id", out var value) && value.ValueKind == JsonValueKind.String)
        {
            var text = value.GetString()!;

            // The id is repeated in every message of its answer: a long one would multiply the socket's memory and traffic.
            if (NameRules.Check(NameKind.Label, text, MaxIdChars) is { } problem)
            {
                document.Dispose();
                throw ChatException.BadRequest($"id {problem}", "id", "invalid_value");
            }

            id = text;
        }

        return document;
    }

    // The id of a message refused as a whole, when it is an acceptable id on its own (checked before it is read).
    private static string? IdOfRefused(ReadOnlyMemory<byte> message)
    {
        try
        {
            using var document = JsonDocument.Parse(message, new JsonDocumentOptions { MaxDepth = MaxDepth });
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("id", out var value) || value.ValueKind != JsonValueKind.String)
            {
                return null;
            }

            var raw = value.GetRawText();
            JsonInput.Validate(System.Text.Encoding.UTF8.GetBytes(raw));
            var id = value.GetString()!;
            return NameRules.Check(NameKind.Label, id, MaxIdChars) is null ? id : null;
        }
        catch (Exception ex) when (ex is JsonException or ChatException)
        {
            return null;
        }
    }

    private void Start(WebSocketConnection connection, Caller caller, string id, ReadOnlyMemory<byte> message, bool sessionTurn)
    {
        var keyId = caller.Key?.Id ?? caller.OwnerId;
        if (!keyLimiter.TryEnter(keyId, options.WebSocket.MaxConcurrentRequestsPerKey))
        {
            throw new ChatException(429, new ErrorInfo(
                $"This key already runs {options.WebSocket.MaxConcurrentRequestsPerKey} WebSocket requests at once (WebSocket:MaxConcurrentRequestsPerKey). Wait for one to finish.",
                ErrorTypes.RateLimit, null, "too_many_requests"));
        }

        try
        {
            connection.Run(id, async cancel =>
            {
                var stage = sessionTurn ? new SessionStage(tenancy.Store, options.Limits.MaxPromptChars, options.Sessions.MaxMessages, logger, options.Sessions.MaxPerTeam) : null;
                var call = pipeline.Begin(RequestIds.Next(), caller, sessionTurn ? CallDialect.Session : CallDialect.WebSocket, cancel);
                call.Body = message;
                await pipeline.RunAsync(call, new WebSocketResponder(connection, id, stage, cancel), stage);
            }, () => keyLimiter.Exit(keyId));
        }
        catch
        {
            keyLimiter.Exit(keyId);
            throw;
        }
    }
}
