namespace Sluice.Gateway.Calls;

/// <summary>Short, unique, URL-safe request ids (time-ordered, so logs and ledgers sort by arrival).</summary>
internal static class RequestIds
{
    public static string Next() => Guid.CreateVersion7().ToString("N");
}
