using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// Establishes the <see cref="Caller"/> of every <c>/v1</c> and <c>/api</c> request from
/// <c>Authorization: Bearer …</c> or <c>x-api-key</c>. With a master key configured every such request needs a
/// key; without one (open local mode) requests without a Sluice key pass as <see cref="Caller.Open"/>, while a
/// <c>sk-sluice-…</c> key that is sent is still checked (and billed).
/// </summary>
internal sealed class Authenticator(GatewayOptions options, TenantDirectory directory)
{
    private const string VirtualKeyScheme = "sk-sluice-";

    private readonly byte[]? _masterKey = options.MasterKey is { } key ? Encoding.UTF8.GetBytes(key) : null;

    public static bool Guards(PathString path) => path.StartsWithSegments("/v1") || path.StartsWithSegments("/api");

    /// <summary>Middleware: authenticates guarded paths, answers 401 itself, otherwise continues.</summary>
    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (Guards(context.Request.Path))
        {
            var caller = await AuthenticateAsync(context);
            if (caller is null)
            {
                return;
            }

            context.Features.Set(caller);
        }

        await next(context);
    }

    private async ValueTask<Caller?> AuthenticateAsync(HttpContext context)
    {
        var token = TokenOf(context.Request);
        if (token is null)
        {
            if (_masterKey is null)
            {
                return Caller.Open;
            }

            await ErrorResponses.WriteAsync(context, StatusCodes.Status401Unauthorized, new ErrorInfo(
                "This gateway requires an API key. Send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with your team's virtual key " +
                "(sk-sluice-…) or the operator's master key.",
                ErrorTypes.Authentication, null, "missing_api_key"));
            return null;
        }

        if (_masterKey is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(token), _masterKey))
        {
            return Caller.Operator;
        }

        if (_masterKey is null && !token.StartsWith(VirtualKeyScheme, StringComparison.Ordinal))
        {
            // Open mode: clients that must send some key (SDKs) may send anything that is not a Sluice key.
            return Caller.Open;
        }

        Storage.VirtualKey? key;
        try
        {
            key = token.StartsWith(VirtualKeyScheme, StringComparison.Ordinal) ? await directory.FindKeyAsync(token, context.RequestAborted) : null;
        }
        catch (Exception ex) when (ApiErrors.IsStoreFailure(ex))
        {
            await ErrorResponses.WriteAsync(context, ApiErrors.StoreUnavailable(ex));
            return null;
        }

        if (key is not null)
        {
            return Caller.ForKey(key);
        }

        // One answer for unknown, revoked and expired keys: the response says nothing about which.
        await ErrorResponses.WriteAsync(context, StatusCodes.Status401Unauthorized, new ErrorInfo(
            "The API key is not valid: it is unknown, revoked or expired. Check the key you send, or ask the operator for a new virtual key.",
            ErrorTypes.Authentication, null, "invalid_api_key"));
        return null;
    }

    private static string? TokenOf(HttpRequest request)
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
}
