using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol.Portal;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// <c>POST /api/llm/chat/stream</c>: the portal's stateless stream — <c>messages</c>, <c>temperature</c>,
/// <c>top_p</c>, <c>max_tokens</c>, optional <c>model</c>, <c>tools</c> — answered with <c>{"content"}</c>,
/// <c>{"tool_calls"}</c>, <c>{"done"}</c> and <c>{"error"}</c> SSE events (always streamed, resumable), through the same
/// pipeline as <c>/v1</c>.
/// </summary>
internal sealed class PortalEndpoints(HttpCalls calls)
{
    private static readonly HttpAnswer Answer = new(_ => new PortalStreamFormat(new PortalStreamWriter()), Completion: null, Resumable: true);

    public Task StreamAsync(HttpContext context) => calls.RunAsync(context, CallDialect.Portal, Answer);
}
