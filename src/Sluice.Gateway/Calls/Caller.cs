using Sluice.Storage;

namespace Sluice.Gateway.Calls;

/// <summary>
/// Who is calling, as established by the key authenticator for every guarded HTTP endpoint, WebSocket and MQTT
/// request. Transport-neutral: HTTP reads it with <c>HttpContext.GetCaller()</c>, which fails when the endpoint
/// declared no authentication (fail closed, never open by default).
/// </summary>
internal sealed class Caller
{
    private Caller(CallerKind kind, VirtualKey? key)
    {
        Kind = kind;
        Key = key;
    }

    /// <summary>No master key is configured and no virtual key was sent: everything is allowed, nothing is billed.</summary>
    public static Caller Open { get; } = new(CallerKind.Open, null);

    /// <summary>The master key.</summary>
    public static Caller Operator { get; } = new(CallerKind.Operator, null);

    public CallerKind Kind { get; }

    /// <summary>The virtual key, for <see cref="CallerKind.Team"/>.</summary>
    public VirtualKey? Key { get; }

    /// <summary>The key's team, for <see cref="CallerKind.Team"/>.</summary>
    public string? TeamId => Key?.TeamId;

    /// <summary>True for the operator and in open mode: may use the admin endpoints and see every team.</summary>
    public bool IsOperator => Kind != CallerKind.Team;

    /// <summary>The owner of the objects this caller creates (sessions, streams): its team, or the operator.</summary>
    public string OwnerId => TeamId ?? SessionOwners.Operator;

    public static Caller ForKey(VirtualKey key) => new(CallerKind.Team, key);

    /// <summary>Whether this caller may see an object owned by <paramref name="ownerId"/> (the operator sees all).</summary>
    public bool MayAccess(string ownerId) => IsOperator || string.Equals(ownerId, TeamId, StringComparison.Ordinal);

    /// <summary>Throws the 403 for team keys on operator endpoints.</summary>
    public void RequireOperator()
    {
        if (!IsOperator)
        {
            throw SluiceErrors.OperatorOnly();
        }
    }

    /// <summary>Throws the 404 when a team key names a team other than its own (exactly like a missing team).</summary>
    public void RequireTeam(string teamId)
    {
        if (!IsOperator && !string.Equals(TeamId, teamId, StringComparison.Ordinal))
        {
            throw SluiceErrors.NotFound("team", teamId);
        }
    }
}

/// <summary>The kinds of <see cref="Caller"/>.</summary>
internal enum CallerKind
{
    /// <summary>Open local mode without a key.</summary>
    Open,

    /// <summary>The master key.</summary>
    Operator,

    /// <summary>A team's virtual key.</summary>
    Team,
}
