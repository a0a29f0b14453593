using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Sluice.Gateway.Calls;

/// <summary>
/// Request and stream ids: GUIDv7 (48 bits of Unix milliseconds, then random bits), as 32 lowercase hex digits.
/// </summary>
/// <remarks>
/// The random bits come from the operating system's cryptographic generator, as <see cref="Guid.CreateVersion7()"/>'s
/// do, but fetched 4 KiB at a time per thread: <see cref="Guid.CreateVersion7()"/> read 16 bytes of /dev/urandom with
/// its own system call for every id, two per proxied stream.
/// </remarks>
internal static class RequestIds
{
    private const int RandomBufferBytes = 4096;

    [ThreadStatic]
    private static byte[]? t_random;

    [ThreadStatic]
    private static int t_used;

    private const int HexChars = 32;

    /// <summary>A new id, e.g. <c>019aef6c3b2a7c41b2d95e0f6a1c3d7e</c>.</summary>
    public static string Next()
    {
        Span<byte> id = stackalloc byte[16];
        Fill(id);
        return Convert.ToHexStringLower(id);
    }

    /// <summary>A new id between <paramref name="prefix"/> and <paramref name="suffix"/>, made as one string.</summary>
    public static string Next(string prefix, string suffix)
    {
        Span<byte> id = stackalloc byte[16];
        Fill(id);
        Span<char> hex = stackalloc char[HexChars];
        Convert.TryToHexStringLower(id, hex, out _);
        return string.Concat(prefix, hex, suffix);
    }

    private static void Fill(Span<byte> id)
    {
        TakeRandom(id[6..]);

        // RFC 9562 layout: unix_ts_ms (48 bits) | ver (4) = 7 | rand_a (12) | var (2) = 0b10 | rand_b (62).
        Span<byte> time = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(time, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        time[2..].CopyTo(id);
        id[6] = (byte)(0x70 | (id[6] & 0x0F));
        id[8] = (byte)(0x80 | (id[8] & 0x3F));
    }

    private static void TakeRandom(Span<byte> into)
    {
        var random = t_random;
        if (random is null || t_used + into.Length > RandomBufferBytes)
        {
            random = t_random ??= new byte[RandomBufferBytes];
            RandomNumberGenerator.Fill(random);
            t_used = 0;
        }

        var bytes = random.AsSpan(t_used, into.Length);
        bytes.CopyTo(into);

        // Used bytes are wiped so they cannot be handed out twice or read back later.
        bytes.Clear();
        t_used += into.Length;
    }
}
