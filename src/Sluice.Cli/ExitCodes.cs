namespace Sluice.Cli;

/// <summary>Process exit codes; distinct per failure class so scripts can react.</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    public const int Usage = 2;
    public const int Config = 3;
    public const int ConnectionRefused = 10;
    public const int ClientError = 11;
    public const int ServerError = 12;
    public const int MidStreamError = 13;
    public const int Timeout = 14;
    public const int BudgetMissed = 15;
    public const int Cancelled = 130;
}
