using Microsoft.AspNetCore.Http;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>Who is calling, as established by <see cref="Authenticator"/> for every <c>/v1</c> and <c>/api</c> request.</summary>
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

    public static Caller ForKey(VirtualKey key) => new(CallerKind.Team, key);

    /// <summary>The caller of this request (open when authentication did not run, e.g. <c>/health</c>).</summary>
    public static Caller Of(HttpContext context) => context.Features.Get<Caller>() ?? Open;

    /// <summary>Throws the 403 for team keys on operator endpoints.</summary>
    public void RequireOperator()
    {
        if (!IsOperator)
        {
            throw ApiErrors.OperatorOnly();
        }
    }

    /// <summary>Throws the 404 when a team key names a team other than its own (exactly like a missing team).</summary>
    public void RequireTeam(string teamId)
    {
        if (!IsOperator && !string.Equals(TeamId, teamId, StringComparison.Ordinal))
        {
            throw ApiErrors.NotFound("team", teamId);
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
