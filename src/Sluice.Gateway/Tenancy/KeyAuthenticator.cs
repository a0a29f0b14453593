using System.Security.Cryptography;
using System.Text;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Protocol;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// Turns a presented key into a <see cref="Caller"/> — for HTTP (the <c>Authorization</c> / <c>x-api-key</c> header),
/// WebSocket (the upgrade's) and MQTT (a request's <c>api_key</c>) alike. With a master key configured every call
/// needs a key; without one (open local mode) a call without a Sluice key passes as <see cref="Caller.Open"/>, while a
/// <c>sk-sluice-…</c> key that is sent is still checked (and billed).
/// </summary>
internal sealed class KeyAuthenticator(GatewayOptions options, TenantDirectory directory)
{
    /// <summary>The prefix of virtual keys.</summary>
    public const string VirtualKeyScheme = "sk-sluice-";

    private readonly byte[]? _masterKey = options.MasterKey is { } key ? Encoding.UTF8.GetBytes(key) : null;

    /// <summary>Whether keys are required (a master key is configured).</summary>
    public bool RequiresKeys => _masterKey is not null;

    /// <summary>The caller presenting <paramref name="token"/> (null or empty: no key), or the 401/503 to answer.</summary>
    public async ValueTask<(Caller? Caller, ChatException? Error)> AuthenticateAsync(string? token, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(token))
        {
            return _masterKey is null ? (Caller.Open, null) : (null, SluiceErrors.MissingKey());
        }

        if (_masterKey is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(token), _masterKey))
        {
            return (Caller.Operator, null);
        }

        if (!token.StartsWith(VirtualKeyScheme, StringComparison.Ordinal))
        {
            // Open mode: clients that must send some key (SDKs) may send anything that is not a Sluice key.
            return _masterKey is null ? (Caller.Open, null) : (null, SluiceErrors.InvalidKey());
        }

        try
        {
            var key = await directory.FindKeyAsync(token, cancellationToken);
            return key is null ? (null, SluiceErrors.InvalidKey()) : (Caller.ForKey(key), null);
        }
        catch (Exception ex) when (SluiceErrors.IsStoreFailure(ex))
        {
            return (null, SluiceErrors.StoreUnavailable(ex));
        }
    }
}
