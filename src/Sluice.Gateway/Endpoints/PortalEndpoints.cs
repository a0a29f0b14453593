using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Portal;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>POST /api/llm/chat/stream</c>: the portal's stateless stream — <c>messages</c>, <c>temperature</c>,
/// <c>top_p</c>, <c>max_tokens</c>, optional <c>model</c> — answered with <c>{"content"}</c>, <c>{"done"}</c> and
/// <c>{"error"}</c> SSE events through the same relay as <c>/v1</c> (pings, disconnects, accounting, resume).
/// </summary>
internal sealed class PortalEndpoints(
    ModelCatalog catalog,
    ModelGroupRegistry groups,
    CallAdmission admission,
    GatewayOptions options,
    StreamRelay relay,
    StreamRegistry streams)
{
    private readonly ChatRequestLimits _limits = new() { MaxPromptChars = options.Limits.MaxPromptChars };
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);

    public async Task StreamAsync(HttpContext context)
    {
        var start = Stopwatch.GetTimestamp();
        var requestId = RequestIds.Next();
        context.Response.Headers["x-request-id"] = requestId;
        ChatRequest request;
        ModelEntry model;
        CallLease lease;
        UsageOwner? owner;
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            request = ChatRequestParser.Parse(body, _limits);
            model = await ChatCompletionsEndpoint.ResolveModelAsync(catalog, groups, request.Model, context.RequestAborted);
            (lease, owner) = await TenantCall.AdmitAsync(context, admission, model.Name, request);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        // Always streamed, whatever the body says; the usage goes into the done event.
        request = ChatRequests.WithModel(request, model.Name, stream: true);
        var settings = new RelaySettings(requestId, start, _pingInterval, options.Streaming.MaxPendingBytes, owner);
        var format = new PortalStreamFormat(new PortalStreamWriter());
        await using (lease)
        {
            await relay.RelayAsync(context, model.Backend, request, format, settings, streams.Begin(context, format));
        }
    }
}
