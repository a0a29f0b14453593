using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
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
    private EndpointPolicy(bool requiresKey, ErrorDialect errors)
    {
        RequiresKey = requiresKey;
        Errors = errors;
    }

    /// <summary>Needs a key (or open local mode), errors in the OpenAI shape.</summary>
    public static EndpointPolicy Key { get; } = new(true, ErrorDialect.OpenAI);

    /// <summary>Needs a key, errors in Anthropic's shape with <c>request-id</c>.</summary>
    public static EndpointPolicy AnthropicKey { get; } = new(true, ErrorDialect.Anthropic);

    /// <summary>Needs a key, errors in Ollama's <c>{"error": "…"}</c> shape.</summary>
    public static EndpointPolicy OllamaKey { get; } = new(true, ErrorDialect.Ollama);

    /// <summary>No key: the web chat page, liveness, the JSON 404.</summary>
    public static EndpointPolicy Public { get; } = new(false, ErrorDialect.OpenAI);

    public bool RequiresKey { get; }

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
    public static async Task AuthenticateAsync(HttpContext context, RequestDelegate next)
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

        if (policy.RequiresKey)
        {
            var authenticator = context.RequestServices.GetRequiredService<KeyAuthenticator>();
            var (caller, error) = await authenticator.AuthenticateAsync(TokenOf(context.Request), context.RequestAborted);
            if (error is not null)
            {
                await ErrorResponses.WriteAsync(context, error, policy.Errors);
                return;
            }

            context.Features.Set(caller);
        }

        await next(context);
    }

    /// <summary>The key from <c>Authorization: Bearer …</c> or <c>x-api-key</c>.</summary>
    public static string? TokenOf(HttpRequest request)
    {
        var authorization = request.Headers.Authorization;
        if (!StringValues.IsNullOrEmpty(authorization))
        {
            var value = authorization.ToString().Trim();
            if (value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                var token = value["Bearer ".Length..].Trim();
                return token.Length == 0 ? null : token;
            }
        }

        var apiKey = request.Headers["x-api-key"].ToString().Trim();
        return apiKey.Length == 0 ? null : apiKey;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Refused a request to {Endpoint}: the endpoint declares no key policy")]
    private static partial void LogUndeclared(ILogger logger, string endpoint);
}
