using System.Globalization;
using System.Security.Cryptography;

namespace Sluice.Storage.Sql;

/// <summary>
/// Identifiers that sort by creation: 12 hex digits of Unix milliseconds, 4 of a per-process sequence, 16 random.
/// Lists ordered by (created time, id) therefore keep creation order even for objects made in the same millisecond
/// — a GUIDv7's bits after the timestamp are random, which made same-millisecond order arbitrary.
/// </summary>
internal static class Ids
{
    private static long _last;

    public static string New(string prefix, DateTimeOffset now)
    {
        var candidate = now.ToUnixTimeMilliseconds() << 16;
        long next;
        long last;
        do
        {
            last = Volatile.Read(ref _last);
            next = Math.Max(candidate, last + 1);
        }
        while (Interlocked.CompareExchange(ref _last, next, last) != last);

        Span<byte> random = stackalloc byte[8];
        RandomNumberGenerator.Fill(random);
        return string.Create(
            CultureInfo.InvariantCulture,
            $"{prefix}_{next:x16}{BitConverter.ToUInt64(random):x16}");
    }

    /// <summary>The caller's id when given (validated), otherwise a new generated one.</summary>
    public static string Chosen(string? id, string prefix, DateTimeOffset now, string paramName)
    {
        if (id is null)
        {
            return New(prefix, now);
        }

        if (NameRules.Check(NameKind.Id, id) is { } problem)
        {
            throw new ArgumentException($"The id {problem} Leave it out to get a generated one.", paramName);
        }

        return id;
    }
}
