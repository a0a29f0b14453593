namespace Sluice.Storage.Sql;

/// <summary>Object ids: a readable type prefix and a time-ordered UUIDv7, so listings sort by creation.</summary>
internal static class Ids
{
    public static string New(string prefix, DateTimeOffset now) => prefix + "_" + Guid.CreateVersion7(now).ToString("N");
}
