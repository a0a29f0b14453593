using Sluice.Gateway.Accounting;
using Sluice.Protocol;

namespace Sluice.Gateway.Mqtt;

/// <summary>
/// Decides whether an MQTT request may run — the bridge's authentication hook. Without a key system the
/// registered implementation allows everything; a key system registers its own (before the gateway is built) to
/// require and check <c>api_key</c>, and may return a per-request <see cref="IUsageSink"/> to bill the key.
/// </summary>
public interface IMqttRequestAuthenticator
{
    /// <summary>Checks one request. Called after the request is parsed and before any model work starts.</summary>
    ValueTask<MqttAuthResult> AuthenticateAsync(MqttAuthRequest request, CancellationToken cancellationToken);
}

/// <summary>What the authenticator sees of a request.</summary>
/// <param name="Id">The client's request id.</param>
/// <param name="ApiKey">The request's <c>api_key</c>, if any.</param>
/// <param name="Model">The model asked for.</param>
/// <param name="Topic">The topic the request arrived on.</param>
public sealed record MqttAuthRequest(string Id, string? ApiKey, string Model, string Topic);

/// <summary>An authentication decision.</summary>
public sealed class MqttAuthResult
{
    private static readonly MqttAuthResult AllowedWithoutBilling = new(null, null);

    private MqttAuthResult(ErrorInfo? error, IUsageSink? billing)
    {
        Error = error;
        Billing = billing;
    }

    /// <summary>Why the request is refused; null when allowed.</summary>
    public ErrorInfo? Error { get; }

    /// <summary>Receives this request's usage in addition to the gateway's sinks (e.g. to bill the key).</summary>
    public IUsageSink? Billing { get; }

    /// <summary>Whether the request may run.</summary>
    public bool Allowed => Error is null;

    /// <summary>Allows the request, optionally billing its usage to <paramref name="billing"/>.</summary>
    public static MqttAuthResult Allow(IUsageSink? billing = null) => billing is null ? AllowedWithoutBilling : new MqttAuthResult(null, billing);

    /// <summary>Refuses the request; <paramref name="error"/> is sent to the client (say what to do next).</summary>
    public static MqttAuthResult Deny(ErrorInfo error) => new(error ?? throw new ArgumentNullException(nameof(error)), null);
}

/// <summary>The default when no key system is configured: every request is allowed and <c>api_key</c> is ignored.</summary>
internal sealed class AllowAllMqttAuthenticator : IMqttRequestAuthenticator
{
    public ValueTask<MqttAuthResult> AuthenticateAsync(MqttAuthRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(MqttAuthResult.Allow());
}
