using System.Buffers;
using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using Sluice.Protocol;
using Sluice.Protocol.OpenAI;

namespace Sluice.Gateway.Http;

/// <summary>
/// At most <c>Limits:MaxConnectionsPerClient</c> connections open at once from one remote address, so one client
/// cannot hold every connection the gateway allows (<c>Limits:MaxConnections</c>) and keep everyone else out.
/// </summary>
/// <remarks>
/// One over the limit gets a 503 with a JSON body saying why (<c>too_many_connections</c>) and is closed before Kestrel
/// reads a byte of it. IPv6 clients are counted by their /64. Counted per connection, not per request: a kept-alive connection pays once. Behind a reverse
/// proxy every connection comes from the proxy's address — set the limit to the whole <c>Limits:MaxConnections</c> there.
/// </remarks>
internal sealed partial class ConnectionsPerClient(long limit, ILogger logger, TimeProvider time, Observability.GatewayMetrics? metrics)
{
    /// <summary>
    /// The most the default allows one address (half of <c>Limits:MaxConnections</c> up to this): with the usual
    /// open-file limits of a million, half would let one client hold hundreds of thousands of idle connections (~10 KB
    /// each).
    /// </summary>
    public const long DefaultCap = 10_000;

    /// <summary>The limit when none is configured: half of <paramref name="maxConnections"/>, at most <see cref="DefaultCap"/>; 0 (none) without a gateway-wide limit.</summary>
    public static long DefaultLimit(long? maxConnections) => maxConnections is { } all ? Math.Clamp(all / 2, 1, DefaultCap) : 0;

    private static readonly KeyValuePair<string, object?> PerClient = new("reason", "per_client");

    private readonly CountsByKey<IPAddress> _open = new();
    private readonly LogThrottle _log = new(time, TimeSpan.FromMinutes(1));
    private long _turnedAway;

    /// <summary>The response a connection over the limit gets.</summary>
    internal static readonly byte[] Refusal = BuildRefusal();

    /// <summary>Adds the limit as the endpoint's first connection middleware.</summary>
    public void Apply(ListenOptions listen) => listen.Use(next => connection => HandleAsync(connection, next));

    private async Task HandleAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        if (connection.RemoteEndPoint is not IPEndPoint { Address: var raw })
        {
            await next(connection);
            return;
        }

        var address = ClientOf(raw);
        if (!_open.TryAdd(address, 1, limit))
        {
            await RefuseAsync(connection, address);
            return;
        }

        try
        {
            await next(connection);
        }
        finally
        {
            _open.Subtract(address, 1);
        }
    }

    /// <summary>
    /// The address a connection is counted under: IPv4 as it is (mapped ones unmapped), IPv6 by its /64 — one host
    /// usually holds a whole /64, and counting each of its addresses apart would let it take every connection.
    /// </summary>
    internal static IPAddress ClientOf(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }

        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6 || IPAddress.IsLoopback(address))
        {
            return address;
        }

        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes);
    }

    private async Task RefuseAsync(ConnectionContext connection, IPAddress address)
    {
        var total = Interlocked.Increment(ref _turnedAway);
        metrics?.ConnectionsRefused.Add(1, PerClient);
        if (_log.ShouldLog())
        {
            LogRefused(logger, address.ToString(), limit, total);
        }

        try
        {
            // The client may be writing its request: the answer goes out before the connection closes, unread.
            await connection.Transport.Output.WriteAsync(Refusal);
            await connection.Transport.Output.CompleteAsync();
        }
        catch (Exception ex) when (ex is IOException or ConnectionResetException or ObjectDisposedException or InvalidOperationException)
        {
            // Gone already.
        }
    }

    private static byte[] BuildRefusal()
    {
        var body = new ArrayBufferWriter<byte>(512);
        OpenAIErrorWriter.Write(body, new ErrorInfo(
            "Too many connections from your address are open at once (the gateway's Limits:MaxConnectionsPerClient). " +
            "Reuse kept-alive connections or close idle ones, then retry.",
            ErrorTypes.RateLimit, null, "too_many_connections"));
        var head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\n" +
                   $"Content-Length: {body.WrittenCount.ToString(CultureInfo.InvariantCulture)}\r\n\r\n";
        return [.. Encoding.ASCII.GetBytes(head), .. body.WrittenSpan];
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Turning away connections from {Address}: it holds Limits:MaxConnectionsPerClient ({Limit}) already ({Total} turned away since start, from every address). Behind a reverse proxy every connection comes from its address: set Limits:MaxConnectionsPerClient to Limits:MaxConnections.")]
    private static partial void LogRefused(ILogger logger, string address, long limit, long total);
}
