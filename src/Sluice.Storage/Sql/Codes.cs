namespace Sluice.Storage.Sql;

/// <summary>The text stored for each enum value (stable, lower-case; never renumbered like an int would be).</summary>
internal static class Codes
{
    public static string Of(JobStatus status) => status switch
    {
        JobStatus.Created => "created",
        JobStatus.Completed => "completed",
        JobStatus.Failed => "failed",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "Unknown job status."),
    };

    public static JobStatus JobStatusOf(string code) => code switch
    {
        "created" => JobStatus.Created,
        "completed" => JobStatus.Completed,
        "failed" => JobStatus.Failed,
        _ => throw new InvalidDataException($"Unknown job status '{code}' in the database; upgrade Sluice."),
    };

    public static string Of(JobCharge charge) => charge switch
    {
        JobCharge.Pending => "pending",
        JobCharge.Charged => "charged",
        JobCharge.NotBillable => "not_billable",
        JobCharge.InsufficientCredits => "insufficient_credits",
        _ => throw new ArgumentOutOfRangeException(nameof(charge), charge, "Unknown job charge."),
    };

    public static JobCharge JobChargeOf(string code) => code switch
    {
        "pending" => JobCharge.Pending,
        "charged" => JobCharge.Charged,
        "not_billable" => JobCharge.NotBillable,
        "insufficient_credits" => JobCharge.InsufficientCredits,
        _ => throw new InvalidDataException($"Unknown job charge '{code}' in the database; upgrade Sluice."),
    };

    public static string Of(CallStatus status) => status switch
    {
        CallStatus.Completed => "completed",
        CallStatus.Failed => "failed",
        CallStatus.Abandoned => "abandoned",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "Unknown call status."),
    };

    public static CallStatus CallStatusOf(string code) => code switch
    {
        "completed" => CallStatus.Completed,
        "failed" => CallStatus.Failed,
        "abandoned" => CallStatus.Abandoned,
        _ => throw new InvalidDataException($"Unknown call status '{code}' in the database; upgrade Sluice."),
    };
}
