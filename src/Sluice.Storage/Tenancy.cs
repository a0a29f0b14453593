namespace Sluice.Storage;

/// <summary>The top of the tenancy tree: an organization owns teams.</summary>
/// <param name="Id">Stable id, <c>org_…</c>.</param>
/// <param name="Name">Display name, unique across organizations.</param>
/// <param name="CreatedAt">When it was created.</param>
public sealed record Organization(string Id, string Name, DateTimeOffset CreatedAt);

/// <summary>
/// Optional rate limits, for a team or a single key. <see langword="null"/> means "no limit at this level".
/// </summary>
/// <param name="RequestsPerMinute">Requests admitted per minute.</param>
/// <param name="TokensPerMinute">Tokens (prompt plus completion) admitted per minute.</param>
/// <param name="ConcurrentStreams">Requests in flight at once.</param>
public sealed record RateLimits(int? RequestsPerMinute = null, int? TokensPerMinute = null, int? ConcurrentStreams = null)
{
    /// <summary>No limits.</summary>
    public static RateLimits None { get; } = new();
}

/// <summary>A team: the unit that holds credits, model access and keys.</summary>
public sealed record Team
{
    /// <summary>Stable id, <c>team_…</c>. The tenancy boundary for keys, jobs, credits and usage.</summary>
    public required string Id { get; init; }

    /// <summary>The owning organization.</summary>
    public required string OrganizationId { get; init; }

    /// <summary>Display name, unique within the organization.</summary>
    public required string Name { get; init; }

    /// <summary>Every credit ever granted (the initial allocation plus positive additions).</summary>
    public required long CreditsAllocated { get; init; }

    /// <summary>Credits left; never negative.</summary>
    public required long CreditsRemaining { get; init; }

    /// <summary>The model groups this team may use.</summary>
    public required IReadOnlyList<string> ModelGroups { get; init; }

    /// <summary>Team-wide rate limits.</summary>
    public required RateLimits Limits { get; init; }

    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
}

/// <summary>What a new team starts with.</summary>
/// <param name="Name">Display name, unique within the organization.</param>
/// <param name="InitialCredits">Credits granted at creation (recorded in the ledger when above zero).</param>
/// <param name="ModelGroups">Model groups the team may use; none when <see langword="null"/>.</param>
/// <param name="Limits">Team-wide rate limits; none when <see langword="null"/>.</param>
/// <param name="FirstKey">Options of the key created with the team; defaults when <see langword="null"/>.</param>
/// <param name="Id">
/// The team id chosen by the caller (letters, digits, <c>_</c>, <c>-</c>, <c>.</c>; at most 64 characters); a
/// generated <c>team_…</c> id when <see langword="null"/>.
/// </param>
public sealed record NewTeam(
    string Name,
    long InitialCredits,
    IReadOnlyList<string>? ModelGroups = null,
    RateLimits? Limits = null,
    NewKey? FirstKey = null,
    string? Id = null);

/// <summary>A new team and its first key; the only time that key's secret is available.</summary>
/// <param name="Team">The team.</param>
/// <param name="FirstKey">The key created with it, secret included.</param>
public sealed record CreatedTeam(Team Team, CreatedKey FirstKey);
