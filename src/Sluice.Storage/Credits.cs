namespace Sluice.Storage;

/// <summary>One row of a team's append-only credit ledger.</summary>
/// <param name="Id">Increasing id; orders the ledger.</param>
/// <param name="TeamId">The team.</param>
/// <param name="Amount">Credits added (positive) or charged (negative).</param>
/// <param name="Reason">Why, e.g. <c>initial allocation</c>, <c>job</c> or an operator's note.</param>
/// <param name="JobId">The job charged, for job charges.</param>
/// <param name="BalanceAfter">The team's balance right after this row.</param>
/// <param name="CreatedAt">When it was written.</param>
public sealed record CreditTransaction(
    long Id,
    string TeamId,
    long Amount,
    string Reason,
    string? JobId,
    long BalanceAfter,
    DateTimeOffset CreatedAt);

/// <summary>Ledger reasons written by the store itself.</summary>
public static class CreditReasons
{
    /// <summary>The credits a team was created with.</summary>
    public const string InitialAllocation = "initial allocation";

    /// <summary>The charge for one completed job.</summary>
    public const string JobCharge = "job";
}
