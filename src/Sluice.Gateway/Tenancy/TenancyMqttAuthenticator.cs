using System.Security.Cryptography;
using System.Text;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Mqtt;
using Sluice.Protocol;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// With keys on (a master key is configured), an MQTT request needs an <c>api_key</c>: the master key, or a virtual
/// key whose team may use the model and has credits; a virtual key's usage is billed to its team like an HTTP call.
/// </summary>
internal sealed class TenancyMqttAuthenticator(TenantDirectory directory, LedgerUsageSink ledger, GatewayOptions options) : IMqttRequestAuthenticator
{
    private readonly byte[]? _masterKey = options.MasterKey is { } key ? Encoding.UTF8.GetBytes(key) : null;

    public async ValueTask<MqttAuthResult> AuthenticateAsync(MqttAuthRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_masterKey is null)
        {
            return MqttAuthResult.Allow();
        }

        if (string.IsNullOrEmpty(request.ApiKey))
        {
            return Deny(ErrorTypes.Authentication, "missing_api_key", "api_key is required: this gateway has keys on. Send a virtual key (sk-sluice-…) in the request's api_key field.");
        }

        if (CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(request.ApiKey), _masterKey))
        {
            return MqttAuthResult.Allow();
        }

        var key = request.ApiKey.StartsWith("sk-sluice-", StringComparison.Ordinal)
            ? await directory.FindKeyAsync(request.ApiKey, cancellationToken)
            : null;
        if (key is null)
        {
            return Deny(ErrorTypes.Authentication, "invalid_api_key", "api_key is not a valid key (unknown, revoked or expired). Ask the operator for a new one.");
        }

        var team = await directory.GetTeamAsync(key.TeamId, cancellationToken);
        if (team is null || !CallAdmission.MayUse(key, team, request.Model))
        {
            return MqttAuthResult.Deny(ApiErrors.ModelNotAllowed(request.Model).Error);
        }

        if (team.CreditsRemaining < 1)
        {
            return MqttAuthResult.Deny(ApiErrors.InsufficientCredits(team.Id, team.CreditsRemaining).Error);
        }

        return MqttAuthResult.Allow(new TeamBilling(ledger, key.TeamId, key.Id));
    }

    private static MqttAuthResult Deny(string type, string code, string message) =>
        MqttAuthResult.Deny(new ErrorInfo(message, type, "api_key", code));

    private sealed class TeamBilling(LedgerUsageSink ledger, string teamId, string keyId) : IUsageSink
    {
        public void Record(UsageRecord record) => ledger.Record(record with { TeamId = teamId, KeyId = keyId });
    }
}
