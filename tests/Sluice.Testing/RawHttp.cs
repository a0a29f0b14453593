using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Sluice.Testing;

/// <summary>
/// HTTP/1.1 over a plain socket, for requests no <see cref="HttpClient"/> would send: bad header bytes, bad chunking,
/// oversized lines, partial requests. Reads one response (Content-Length, chunked, or until the server closes).
/// </summary>
public static class RawHttp
{
    /// <summary>Sends <paramref name="request"/> as it is and reads the response; null when the server closed without one.</summary>
    /// <param name="baseAddress">The server.</param>
    /// <param name="request">The bytes to send.</param>
    /// <param name="timeout">How long to wait for the whole response.</param>
    /// <param name="pauseAfterSend">Wait this long after sending before reading (a client that stalls mid-request).</param>
    public static async Task<RawResponse?> SendAsync(Uri baseAddress, byte[] request, TimeSpan? timeout = null, TimeSpan? pauseAfterSend = null)
    {
        ArgumentNullException.ThrowIfNull(baseAddress);
        ArgumentNullException.ThrowIfNull(request);
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        using var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(baseAddress.Host, baseAddress.Port, cts.Token);
        var stream = client.GetStream();
        try
        {
            await stream.WriteAsync(request, cts.Token);
            await stream.FlushAsync(cts.Token);
        }
        catch (IOException)
        {
            // The server may answer and close before it has read everything (e.g. an oversized header): read what it sent.
        }

        if (pauseAfterSend is { } pause)
        {
            await Task.Delay(pause, cts.Token);
        }

        return await ReadResponseAsync(stream, cts.Token);
    }

    /// <summary>Builds a request from lines (joined with CRLF, blank line added) and an optional body.</summary>
    public static byte[] Build(IEnumerable<string> headLines, byte[]? body = null)
    {
        var head = Encoding.Latin1.GetBytes(string.Join("\r\n", headLines) + "\r\n\r\n");
        return body is null ? head : [.. head, .. body];
    }

    private static async Task<RawResponse?> ReadResponseAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int headEnd;
        while ((headEnd = IndexOf(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), "\r\n\r\n"u8)) < 0)
        {
            var read = await ReadSomeAsync(stream, chunk, cancellationToken);
            if (read == 0)
            {
                return buffer.Length == 0 ? null : throw new InvalidDataException($"The server closed mid-headers: {Encoding.Latin1.GetString(buffer.ToArray())}");
            }

            buffer.Write(chunk, 0, read);
        }

        var all = buffer.ToArray();
        var headText = Encoding.Latin1.GetString(all, 0, headEnd);
        var lines = headText.Split("\r\n");
        var statusParts = lines[0].Split(' ', 3);
        var status = int.Parse(statusParts[1], CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
            }
        }

        var rest = new MemoryStream();
        rest.Write(all, headEnd + 4, all.Length - headEnd - 4);
        byte[] body;
        if (headers.TryGetValue("Content-Length", out var lengthText) && int.TryParse(lengthText, CultureInfo.InvariantCulture, out var length))
        {
            while (rest.Length < length)
            {
                var read = await ReadSomeAsync(stream, chunk, cancellationToken);
                if (read == 0)
                {
                    break;
                }

                rest.Write(chunk, 0, read);
            }

            body = rest.ToArray()[..Math.Min(length, (int)rest.Length)];
        }
        else if (headers.TryGetValue("Transfer-Encoding", out var encoding) && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            while (IndexOf(rest.GetBuffer().AsSpan(0, (int)rest.Length), "0\r\n\r\n"u8) < 0)
            {
                var read = await ReadSomeAsync(stream, chunk, cancellationToken);
                if (read == 0)
                {
                    break;
                }

                rest.Write(chunk, 0, read);
            }

            body = Dechunk(rest.ToArray());
        }
        else
        {
            int read;
            while ((read = await ReadSomeAsync(stream, chunk, cancellationToken)) > 0)
            {
                rest.Write(chunk, 0, read);
            }

            body = rest.ToArray();
        }

        return new RawResponse(status, headers, body);
    }

    private static async Task<int> ReadSomeAsync(NetworkStream stream, byte[] chunk, CancellationToken cancellationToken)
    {
        try
        {
            return await stream.ReadAsync(chunk, cancellationToken);
        }
        catch (IOException)
        {
            // A reset after the response counts as the end.
            return 0;
        }
    }

    private static byte[] Dechunk(byte[] data)
    {
        var body = new MemoryStream();
        var position = 0;
        while (position < data.Length)
        {
            var lineEnd = IndexOf(data.AsSpan(position), "\r\n"u8);
            if (lineEnd < 0)
            {
                break;
            }

            var sizeText = Encoding.ASCII.GetString(data, position, lineEnd).Split(';')[0];
            var size = int.Parse(sizeText, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            position += lineEnd + 2;
            if (size == 0)
            {
                break;
            }

            body.Write(data, position, Math.Min(size, data.Length - position));
            position += size + 2;
        }

        return body.ToArray();
    }

    private static int IndexOf(ReadOnlySpan<byte> data, ReadOnlySpan<byte> value) => data.IndexOf(value);
}

/// <summary>One HTTP response read off a raw socket.</summary>
/// <param name="Status">The status code.</param>
/// <param name="Headers">The headers (last value wins).</param>
/// <param name="Body">The body, de-chunked.</param>
public sealed record RawResponse(int Status, IReadOnlyDictionary<string, string> Headers, byte[] Body)
{
    /// <summary>The body as UTF-8 text.</summary>
    public string Text => Encoding.UTF8.GetString(Body);
}
