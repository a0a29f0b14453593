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
    public ValueTask<(Caller? Caller, ChatException? Error)> AuthenticateAsync(string? token, CancellationToken cancellationToken) =>
        AuthenticateAsync(token.AsMemory(), cancellationToken);

    /// <summary>The caller presenting <paramref name="token"/> (empty: no key), or the 401/503 to answer.</summary>
    public async ValueTask<(Caller? Caller, ChatException? Error)> AuthenticateAsync(ReadOnlyMemory<char> token, CancellationToken cancellationToken)
    {
        if (token.IsEmpty)
        {
            return _masterKey is null ? (Caller.Open, null) : (null, SluiceErrors.MissingKey());
        }

        if (_masterKey is not null && IsMasterKey(token.Span))
        {
            return (Caller.Operator, null);
        }

        if (!token.Span.StartsWith(VirtualKeyScheme, StringComparison.Ordinal))
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

    private bool IsMasterKey(ReadOnlySpan<char> token) => FixedTimeMatches(token, _masterKey);

    /// <summary>
    /// Whether <paramref name="presented"/> is the secret whose UTF-8 bytes are <paramref name="accepted"/>, compared in
    /// constant time for secrets of its length (as <see cref="CryptographicOperations.FixedTimeEquals"/> does). The
    /// presented key is encoded on the stack: every request presents one.
    /// </summary>
    internal static bool FixedTimeMatches(ReadOnlySpan<char> presented, ReadOnlySpan<byte> accepted)
    {
        var count = Encoding.UTF8.GetByteCount(presented);
        if (count != accepted.Length)
        {
            return false;
        }

        Span<byte> bytes = count <= 512 ? stackalloc byte[count] : new byte[count];
        Encoding.UTF8.GetBytes(presented, bytes);
        return CryptographicOperations.FixedTimeEquals(bytes, accepted);
    }
}
