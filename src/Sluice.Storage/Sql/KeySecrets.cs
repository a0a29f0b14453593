using System.Security.Cryptography;
using System.Text;

namespace Sluice.Storage.Sql;

/// <summary>Virtual key secrets: generation, the stored hash and the listing prefix.</summary>
internal static class KeySecrets
{
    public const string Scheme = "sk-sluice-";

    /// <summary>Characters of the secret kept in clear for listings: the scheme plus six random characters.</summary>
    public const int PrefixLength = 16;

    public static string NewSecret()
    {
        // 30 random bytes = 240 bits, 40 URL-safe base64 characters without padding.
        var random = RandomNumberGenerator.GetBytes(30);
        return Scheme + Convert.ToBase64String(random).Replace('+', '-').Replace('/', '_');
    }

    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    public static string PrefixOf(string secret) => secret[..PrefixLength];

    /// <summary>Cheap shape check before hashing, so junk headers never reach the database.</summary>
    public static bool LooksLikeSecret(string? secret) =>
        secret is { Length: > PrefixLength and < 256 } && secret.StartsWith(Scheme, StringComparison.Ordinal);
}
