using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;

namespace Sluice.Gateway.Http;

/// <summary>The per-request facts the HTTP pipeline establishes: the request id (every response) and the caller.</summary>
internal static class HttpCallContext
{
    /// <summary>The request id header every response carries.</summary>
    public const string RequestIdHeader = "x-request-id";

    /// <summary>Anthropic's name for it, which its SDKs put in exceptions (sent on Anthropic-dialect endpoints).</summary>
    public const string AnthropicRequestIdHeader = "request-id";

    /// <summary>
    /// The caller the endpoint's key policy established. Throws when none ran: an endpoint that consults the caller
    /// must declare a key policy (see <see cref="EndpointPolicy"/>) — there is no open default to fall back to.
    /// </summary>
    public static Caller GetCaller(this HttpContext context) =>
        context.Features.Get<Caller>()
        ?? throw new InvalidOperationException(
            $"{context.Request.Method} {context.Request.Path} consulted the caller, but its endpoint declares no key policy. Declare one with RequireKey().");

    /// <summary>This request's id (assigned by the first middleware).</summary>
    public static string GetRequestId(this HttpContext context) =>
        context.Features.Get<RequestIdFeature>()?.Id ?? throw new InvalidOperationException("The request-id middleware did not run.");

    /// <summary>Middleware: gives every request an id and every response its header (errors and 401s included).</summary>
    public static Task AssignRequestIdAsync(HttpContext context, RequestDelegate next)
    {
        var id = RequestIds.Next();
        context.Features.Set(new RequestIdFeature(id));
        context.Response.Headers[RequestIdHeader] = id;
        if (context.GetEndpoint()?.Metadata.GetMetadata<EndpointPolicy>() is { Errors.SendsRequestIdHeader: true })
        {
            context.Response.Headers[AnthropicRequestIdHeader] = id;
        }

        return next(context);
    }

    private sealed record RequestIdFeature(string Id);
}
