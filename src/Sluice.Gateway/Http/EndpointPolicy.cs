using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using System.Text;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Sluice.Protocol;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;

namespace Sluice.Gateway.Http;

/// <summary>
/// What every mapped endpoint must declare: whether it needs a key, and the dialect its errors (401 included) are
/// written in. Authentication fails closed: an endpoint that declares nothing is refused at start-up
/// (<see cref="EndpointPolicies.Verify"/>) and, should one slip through, at request time.
/// </summary>
internal sealed class EndpointPolicy
{
    private EndpointPolicy(bool requiresKey, ErrorDialect errors, bool scrape = false)
    {
        RequiresKey = requiresKey;
        Errors = errors;
        IsScrape = scrape;
    }

    /// <summary>Needs a key (or open local mode), errors in the OpenAI shape.</summary>
    public static EndpointPolicy Key { get; } = new(true, ErrorDialect.OpenAI);

    /// <summary>Needs a key, errors in Anthropic's shape with <c>request-id</c>.</summary>
    public static EndpointPolicy AnthropicKey { get; } = new(true, ErrorDialect.Anthropic);

    /// <summary>Needs a key, errors in Ollama's <c>{"error": "…"}</c> shape.</summary>
    public static EndpointPolicy OllamaKey { get; } = new(true, ErrorDialect.Ollama);

    /// <summary>No key: the web chat page, liveness, the JSON 404.</summary>
    public static EndpointPolicy Public { get; } = new(false, ErrorDialect.OpenAI);

    /// <summary>
    /// <c>GET /metrics</c>: the master key or the scrape token (<c>Observability:Metrics:ScrapeToken</c>); never a team
    /// key (metrics span every team). Open only in open local mode without a scrape token.
    /// </summary>
    public static EndpointPolicy Scrape { get; } = new(true, ErrorDialect.OpenAI, scrape: true);

    public bool RequiresKey { get; }

    /// <summary>Whether this is the scrape policy (master key or scrape token, see <see cref="Scrape"/>).</summary>
    public bool IsScrape { get; }

    public ErrorDialect Errors { get; }
}

/// <summary>Declaring and enforcing <see cref="EndpointPolicy"/>.</summary>
internal static partial class EndpointPolicies
{
    /// <summary>Declares the endpoint's policy.</summary>
    public static TBuilder WithPolicy<TBuilder>(this TBuilder builder, EndpointPolicy policy)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(policy);

    /// <summary>Throws when a mapped endpoint declares no policy (called once the routes are mapped).</summary>
    public static void Verify(IEnumerable<Endpoint> endpoints)
    {
        var undeclared = endpoints.Where(e => e.Metadata.GetMetadata<EndpointPolicy>() is null).Select(e => e.DisplayName).ToList();
        if (undeclared.Count > 0)
        {
            throw new InvalidOperationException(
                $"These endpoints declare no key policy (WithPolicy): {string.Join(", ", undeclared)}. Every endpoint must say whether it needs a key.");
        }
    }

    /// <summary>
    /// Middleware (after routing): establishes the caller for endpoints that need a key, answers 401 in the endpoint's
    /// dialect itself, refuses endpoints without a declared policy.
    /// </summary>
    /// <param name="next">The rest of the pipeline.</param>
    /// <param name="services">The application's (root) services: the authenticator is a singleton, and asking the
    /// request's services for it made every request create its DI scope.</param>
    public static RequestDelegate Authenticate(RequestDelegate next, IServiceProvider services) =>
        context => AuthenticateAsync(context, next, services);

    private static Task AuthenticateAsync(HttpContext context, RequestDelegate next, IServiceProvider services)
    {
        // The common case (a key found in the cache, or an endpoint that needs none) hands the request on without an
        // async state machine of its own: that was an object per request, alive for the whole stream.
        if (context.GetEndpoint()?.Metadata.GetMetadata<EndpointPolicy>() is { IsScrape: false } policy)
        {
            if (!policy.RequiresKey)
            {
                return next(context);
            }

            var authenticating = services.GetRequiredService<KeyAuthenticator>().AuthenticateAsync(TokenOf(context.Request), context.RequestAborted);
            if (!authenticating.IsCompletedSuccessfully)
            {
                return AuthenticatedAsync(context, next, policy, authenticating);
            }

            var (caller, error) = authenticating.Result;
            if (error is not null)
            {
                return RefuseAsync(context, policy, error);
            }

            context.Features.Set(caller);
            return next(context);
        }

        return AuthenticateSlowAsync(context, next);
    }

    private static async Task AuthenticatedAsync(HttpContext context, RequestDelegate next, EndpointPolicy policy, ValueTask<(Caller? Caller, ChatException? Error)> authenticating)
    {
        var (caller, error) = await authenticating;
        if (error is not null)
        {
            await RefuseAsync(context, policy, error);
            return;
        }

        context.Features.Set(caller);
        await next(context);
    }

    private static Task RefuseAsync(HttpContext context, EndpointPolicy policy, ChatException error)
    {
        context.RequestServices.GetRequiredService<CallTelemetry>().AuthFailed(error.StatusCode);
        return ErrorResponses.WriteAsync(context, error, policy.Errors);
    }

    // No route, no policy, or a scrape.
    private static async Task AuthenticateSlowAsync(HttpContext context, RequestDelegate next)
    {
        var endpoint = context.GetEndpoint();
        if (endpoint is null)
        {
            // No route at all (the fallback answers every path, so only a request the router rejected): nothing runs.
            await next(context);
            return;
        }

        var policy = endpoint.Metadata.GetMetadata<EndpointPolicy>();
        if (policy is null)
        {
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Authentication");
            LogUndeclared(logger, endpoint.DisplayName ?? context.Request.Path.Value ?? "?");
            await ErrorResponses.WriteAsync(context, StatusCodes.Status403Forbidden, new Protocol.ErrorInfo(
                "This endpoint declares no key policy, so it is refused. Report it to the operator.",
                Protocol.ErrorTypes.Permission, null, "endpoint_not_configured"));
            return;
        }

        if (ScrapeRefusal(context) is { } refusal)
        {
            await RefuseAsync(context, policy, refusal);
            return;
        }

        context.Features.Set(Caller.Operator);
        await next(context);
    }

    /// <summary>Null when the request may scrape: the master key, the scrape token, or open mode without a token.</summary>
    private static ChatException? ScrapeRefusal(HttpContext context)
    {
        var options = context.RequestServices.GetRequiredService<GatewayOptions>();
        var scrapeToken = options.Observability.Metrics.ScrapeToken;
        if (options.MasterKey is null && scrapeToken is null)
        {
            return null;
        }

        var token = TokenOf(context.Request);
        if (token.IsEmpty)
        {
            return SluiceErrors.MissingKey();
        }

        foreach (var accepted in (ReadOnlySpan<string?>)[options.MasterKey, scrapeToken])
        {
            if (accepted is not null && KeyAuthenticator.FixedTimeMatches(token.Span, Encoding.UTF8.GetBytes(accepted)))
            {
                return null;
            }
        }

        return SluiceErrors.InvalidKey();
    }

    /// <summary>
    /// The key from <c>Authorization: Bearer …</c> or <c>x-api-key</c>, as a slice of the header's value (empty: none).
    /// A slice, not a new string: every authenticated request reads it.
    /// </summary>
    public static ReadOnlyMemory<char> TokenOf(HttpRequest request)
    {
        var authorization = request.Headers.Authorization;
        if (!StringValues.IsNullOrEmpty(authorization))
        {
            var value = authorization.ToString().AsMemory().Trim();
            if (value.Span.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                return value["Bearer ".Length..].Trim();
            }
        }

        return request.Headers["x-api-key"].ToString().AsMemory().Trim();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Refused a request to {Endpoint}: the endpoint declares no key policy")]
    private static partial void LogUndeclared(ILogger logger, string endpoint);
}
