namespace Sluice.Storage.Sql;

/// <summary>Object ids: a readable type prefix and a time-ordered UUIDv7, so listings sort by creation.</summary>
internal static class Ids
{
    public const int MaxClientIdLength = 64;

    public static string New(string prefix, DateTimeOffset now) => prefix + "_" + Guid.CreateVersion7(now).ToString("N");

    /// <summary>The caller's id when given (validated), otherwise a new generated one.</summary>
    public static string Chosen(string? id, string prefix, DateTimeOffset now, string paramName)
    {
        if (id is null)
        {
            return New(prefix, now);
        }

        if (id.Length is 0 or > MaxClientIdLength || !id.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
        {
            throw new ArgumentException(
                $"An id must be 1 to {MaxClientIdLength} characters of letters, digits, '_', '-' and '.'; leave it out to get a generated one.",
                paramName);
        }

        return id;
    }
}
