using System.Buffers;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Sessions;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>GET /api/llm/ws</c>: chat over one WebSocket. The client sends <c>{"type": "chat", "id", "messages", …}</c>
/// (the same fields as <c>/api/llm/chat/stream</c>) and <c>{"type": "cancel", "id"}</c>; the server answers
/// <c>{"type": "chunk", "id", "content"}</c>, <c>{"type": "done", "id", "finish_reason", "usage"}</c> or
/// <c>{"type": "error", "id", "error", "code"}</c>. Requests run concurrently, their messages interleaved by id.
/// </summary>
/// <remarks>
/// Authentication is the HTTP upgrade's (the same keys as every <c>/api</c> request); with a virtual key each chat
/// request is admitted (model access, credits, limits) and billed to the key's team on its own, as over HTTP, and a
/// refusal answers that request with an error message while the socket stays open.
/// One writer loop per socket sends everything (WebSocket sends must not overlap); request tasks only queue
/// messages. The message bodies are the portal's (<see cref="PortalEvents"/>), written once for both transports.
/// </remarks>
internal sealed class WebSocketEndpoint(
    ChatCompletionsEndpoint chat, SessionEndpoints sessions, CallAdmission admission, GatewayOptions options, UsageReporter usage)
{
    private readonly ChatRequestLimits _limits = new() { MaxPromptChars = options.Limits.MaxPromptChars };

    public async Task HandleAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ErrorResponses.WriteAsync(context, StatusCodes.Status400BadRequest, new ErrorInfo(
                "GET /api/llm/ws expects a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket). Use a WebSocket client, or POST /api/llm/chat/stream for SSE.",
                ErrorTypes.InvalidRequest, null, "websocket_required"));
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        using var closing = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        var outbox = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
        var running = new Dictionary<string, (CancellationTokenSource Cancel, Task Task)>(StringComparer.Ordinal);
        var writer = WriteLoopAsync(socket, outbox.Reader, closing.Token);
        try
        {
            await ReadLoopAsync(context, socket, outbox.Writer, running, closing.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
        {
            // The client vanished without a close handshake.
        }
        finally
        {
            Task[] tasks;
            lock (running)
            {
                // The client closed or vanished: whatever is still generating stops (and says so, if it can).
                tasks = [.. running.Values.Select(r => r.Task)];
                foreach (var (cancel, _) in running.Values)
                {
                    cancel.Cancel();
                }
            }

            await Task.WhenAll(tasks).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            outbox.Writer.TryComplete();
            await writer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                try
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", context.RequestAborted);
                }
                catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
                {
                    // Gone meanwhile.
                }
            }
        }
    }

    private async Task ReadLoopAsync(
        HttpContext context,
        WebSocket socket, ChannelWriter<byte[]> outbox, Dictionary<string, (CancellationTokenSource Cancel, Task Task)> running, CancellationToken closing)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            buffer.ResetWrittenCount();
            ValueWebSocketReceiveResult result;
            do
            {
                result = await socket.ReceiveAsync(buffer.GetMemory(4096), closing);
                buffer.Advance(result.Count);
                if (buffer.WrittenCount > options.Limits.MaxRequestBodyBytes)
                {
                    await socket.CloseAsync(WebSocketCloseStatus.MessageTooBig, "message too big", closing);
                    return;
                }
            }
            while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

            if (result.MessageType == WebSocketMessageType.Close)
            {
                // A clean close: requests in flight are cancelled, then the server closes its side.
                return;
            }

            var message = buffer.WrittenMemory.ToArray();
            string? id = null;
            try
            {
                using var doc = JsonDocument.Parse(message);
                var root = doc.RootElement;
                id = root.TryGetProperty("id", out var idValue) && idValue.ValueKind == JsonValueKind.String ? idValue.GetString() : null;
                var type = root.TryGetProperty("type", out var typeValue) && typeValue.ValueKind == JsonValueKind.String ? typeValue.GetString() : null;
                if (string.IsNullOrEmpty(id))
                {
                    throw new ChatException(400, new ErrorInfo("Every message needs a string \"id\" that names the request, e.g. {\"type\": \"chat\", \"id\": \"r1\", \"messages\": [...]}.", ErrorTypes.InvalidRequest, "id", "missing_required_parameter"));
                }

                switch (type)
                {
                    case "chat" when root.TryGetProperty("session_id", out _) || root.TryGetProperty("message", out _):
                        StartSessionTurn(context, id, message, outbox, running, closing);
                        break;
                    case "chat":
                        Start(context, id, message, outbox, running, closing);
                        break;
                    case "cancel":
                        lock (running)
                        {
                            if (running.TryGetValue(id, out var request))
                            {
                                request.Cancel.Cancel();
                            }
                        }

                        break;
                    default:
                        throw new ChatException(400, new ErrorInfo($"Unknown message type '{type}'. Send {{\"type\": \"chat\", \"id\", \"messages\"}} or {{\"type\": \"cancel\", \"id\"}}.", ErrorTypes.InvalidRequest, "type", "invalid_value"));
                }
            }
            catch (JsonException ex)
            {
                Queue(outbox, json => PortalEvents.WriteError(json, new ErrorInfo($"The message is not valid JSON ({ex.Message}). Send one JSON object per WebSocket text message.", ErrorTypes.InvalidRequest, null, "invalid_json"), "error", id));
            }
            catch (ChatException ex)
            {
                Queue(outbox, json => PortalEvents.WriteError(json, ex.Error, "error", id));
            }
        }
    }

    private void Start(
        HttpContext context, string id, byte[] message, ChannelWriter<byte[]> outbox, Dictionary<string, (CancellationTokenSource Cancel, Task Task)> running, CancellationToken closing)
    {
        var request = ChatRequestParser.Parse(message, _limits);
        var model = chat.ResolveConfiguredModel(request.Model);
        request = ChatRequests.WithModel(request, model.Name, stream: true);
        Register(id, running, closing, async cancel =>
        {
            // A virtual key's calls are admitted (access, credits, limits) and billed one by one, as over HTTP.
            CallLease lease;
            UsageOwner? owner;
            try
            {
                (lease, owner) = await TenantCall.AdmitAsync(context, admission, model.Name, request);
            }
            catch (ChatException ex)
            {
                Queue(outbox, json => PortalEvents.WriteError(json, ex.Error, "error", id));
                return;
            }

            await using (lease)
            {
                await RunAsync(id, model.Backend, request, outbox, null, owner, cancel);
            }
        });
    }

    /// <summary>A session turn (<c>session_id</c> and/or <c>message</c>): the session is read and the user's message stored first.</summary>
    private void StartSessionTurn(
        HttpContext context, string id, byte[] message, ChannelWriter<byte[]> outbox, Dictionary<string, (CancellationTokenSource Cancel, Task Task)> running, CancellationToken closing)
    {
        Register(id, running, closing, async cancel =>
        {
            SessionTurn turn;
            CallLease lease;
            UsageOwner? owner;
            try
            {
                (turn, _, lease, owner) = await sessions.BeginTurnAsync(context, Caller.Of(context), message, admit: true, cancel);
            }
            catch (ChatException ex)
            {
                Queue(outbox, json => PortalEvents.WriteError(json, ex.Error, "error", id));
                return;
            }
            catch (Sluice.Storage.StoreNotFoundException ex)
            {
                Queue(outbox, json => PortalEvents.WriteError(json, ApiErrors.NotFound(ex.Kind, ex.Id).Error, "error", id));
                return;
            }
            catch (Exception ex) when (ApiErrors.IsStoreFailure(ex))
            {
                Queue(outbox, json => PortalEvents.WriteError(json, ApiErrors.StoreUnavailable(ex).Error, "error", id));
                return;
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                return;
            }

            await using (lease)
            {
                await RunAsync(id, turn.Backend, turn.Request, outbox, turn, owner, cancel);
            }
        });
    }

    private static void Register(
        string id, Dictionary<string, (CancellationTokenSource Cancel, Task Task)> running, CancellationToken closing, Func<CancellationToken, Task> run)
    {
        lock (running)
        {
            if (running.ContainsKey(id))
            {
                throw new ChatException(400, new ErrorInfo($"Request '{id}' is still running. Use a new id for each request, or cancel this one first.", ErrorTypes.InvalidRequest, "id", "duplicate_id"));
            }

            var cancel = CancellationTokenSource.CreateLinkedTokenSource(closing);
            var task = Task.Run(() => run(cancel.Token), CancellationToken.None);
            running[id] = (cancel, task);
            _ = task.ContinueWith(
                _ =>
                {
                    lock (running)
                    {
                        running.Remove(id);
                    }

                    cancel.Dispose();
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    private async Task RunAsync(
        string id,
        Sluice.Providers.IChatBackend backend,
        ChatRequest request,
        ChannelWriter<byte[]> outbox,
        SessionTurn? turn,
        UsageOwner? owner,
        CancellationToken cancel)
    {
        var requestId = RequestIds.Next();
        var meter = new StreamRelay.StreamMeter(Stopwatch.GetTimestamp(), request);
        string? finish = null;
        try
        {
            await foreach (var streamEvent in backend.StreamAsync(request, cancel).WithCancellation(cancel))
            {
                if (streamEvent is ErrorEvent error)
                {
                    throw new ChatException(502, error.Error);
                }

                meter.Observe(streamEvent);
                finish = PortalEvents.FinishOf(streamEvent) ?? finish;
                if (PortalEvents.TextOf(streamEvent) is { } text)
                {
                    Queue(outbox, json => PortalEvents.WriteContent(json, text, "chunk", id));
                }
            }

            meter.Status = UsageStatus.Completed;
            var final = meter.Usage;
            if (turn is not null)
            {
                // Stored before done is sent: a client reading the session next sees the reply.
                await turn.StoreReplyAsync(UsageStatus.Completed, final);
            }

            Queue(outbox, json => PortalEvents.WriteDone(json, final, finish, "done", id, turn?.PortalInfo));
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            meter.Status = UsageStatus.Abandoned;
            if (turn is not null)
            {
                await turn.StoreReplyAsync(UsageStatus.Abandoned, meter.Usage);
            }

            Queue(outbox, json => PortalEvents.WriteError(json, new ErrorInfo("Cancelled: the answer is incomplete.", ErrorTypes.InvalidRequest, null, "cancelled"), "error", id));
        }
        catch (ChatException ex)
        {
            meter.Fail(ex.Error.Code ?? ex.Error.Type);
            if (turn is not null)
            {
                await turn.StoreReplyAsync(UsageStatus.Failed, meter.Usage);
            }

            Queue(outbox, json => PortalEvents.WriteError(json, ex.Error, "error", id, turn?.PortalInfo));
        }
#pragma warning disable CA1031 // Any backend failure must reach the client as an error message, never as silence.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            meter.Fail("internal_error");
            if (turn is not null)
            {
                await turn.StoreReplyAsync(UsageStatus.Failed, meter.Usage);
            }

            Queue(outbox, json => PortalEvents.WriteError(json, new ErrorInfo(
                $"The model backend failed unexpectedly ({ex.GetType().Name}). Retry the request; if it keeps failing, report request id {requestId}.",
                ErrorTypes.Server, null, "backend_error"), "error", id));
        }
        finally
        {
            usage.Report(meter.ToRecord(new RelaySettings(requestId, 0, TimeSpan.Zero, 0, owner), request, stream: true));
        }
    }

    private static void Queue(ChannelWriter<byte[]> outbox, Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, PortalEvents.WriterOptions))
        {
            write(json);
        }

        outbox.TryWrite(buffer.WrittenSpan.ToArray());
    }

    private static async Task WriteLoopAsync(WebSocket socket, ChannelReader<byte[]> outbox, CancellationToken closing)
    {
        // The only place that sends: WebSocket sends must never overlap.
        await foreach (var message in outbox.ReadAllAsync(closing))
        {
            if (socket.State is not (WebSocketState.Open or WebSocketState.CloseReceived))
            {
                continue;
            }

            await socket.SendAsync(message, WebSocketMessageType.Text, endOfMessage: true, closing);
        }
    }
}
