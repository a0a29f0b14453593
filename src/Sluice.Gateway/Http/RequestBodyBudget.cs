using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Protocol;

namespace Sluice.Gateway.Http;

/// <summary>
/// Request bodies held in memory at once, bounded per caller (<c>Limits:MaxBodyBytesPerClient</c>) and in all
/// (<c>Limits:MaxBodyBytes</c>). Without it, one client that sent nearly 4 MiB on each of hundreds of connections and
/// then trickled the last bytes made the gateway hold them all (300 connections: 1.4 GB resident).
/// </summary>
/// <remarks>
/// A body counts from its first byte over <see cref="FreeBytes"/> (chat requests are far smaller: the common call never
/// touches the budget) until its request ends, since the call keeps the bytes that long; a WebSocket message while it
/// arrives (the socket's request lasts as long as the socket). The caller is the virtual key,
/// or the remote address (IPv6 by /64) for the operator, open mode and endpoints without a key.
/// </remarks>
internal sealed class RequestBodyBudget(long perClient, long total)
{
    /// <summary>Bytes of a body that never count (a request line's worth of JSON).</summary>
    internal const int FreeBytes = 16 * 1024;

    private const string All = "";

    private readonly CountsByKey<string> _held = new(StringComparer.Ordinal);

    public long PerClient => perClient;

    public long Total => total;

    /// <summary>Body bytes held now for the caller at <paramref name="address"/> (without a key).</summary>
    internal long HeldFor(System.Net.IPAddress address) => _held["ip:" + ConnectionsPerClient.ClientOf(address)];

    /// <summary>A lease for <paramref name="context"/>'s body, released when the request ends.</summary>
    public Lease Open(HttpContext context)
    {
        var lease = new Lease(this, CallerOf(context));
        context.Response.RegisterForDispose(lease);
        return lease;
    }

    private static string CallerOf(HttpContext context)
    {
        if (context.Features.Get<Caller>() is { Key: { } key })
        {
            return "key:" + key.Id;
        }

        return context.Connection.RemoteIpAddress is { } address ? "ip:" + ConnectionsPerClient.ClientOf(address) : "ip:?";
    }

    /// <summary>One request's share; grows with its body, returned once.</summary>
    internal sealed class Lease(RequestBodyBudget budget, string caller) : IDisposable
    {
        private long _held;

        /// <summary>Sets the share to <paramref name="bytes"/>; growing past a limit throws the caller's 429 or the gateway's 503.</summary>
        public void GrowTo(long bytes)
        {
            var more = bytes - _held;
            if (more < 0)
            {
                // Smaller (a WebSocket's message handed on): give the difference back.
                budget._held.Subtract(caller, -more);
                budget._held.Subtract(All, -more);
                _held = bytes;
                return;
            }

            if (more == 0)
            {
                return;
            }

            if (!budget._held.TryAdd(caller, more, budget.PerClient))
            {
                throw new ChatException(
                    StatusCodes.Status429TooManyRequests,
                    new ErrorInfo(
                        $"Your requests' bodies held by the gateway at once would pass {budget.PerClient / (1024 * 1024)} MiB (Limits:MaxBodyBytesPerClient). Wait for your running uploads and calls to finish, then retry; send fewer large requests at once.",
                        ErrorTypes.RateLimit, null, "request_bytes_limit"),
                    TimeSpan.FromSeconds(1));
            }

            if (!budget._held.TryAdd(All, more, budget.Total))
            {
                budget._held.Subtract(caller, more);
                throw new ChatException(
                    StatusCodes.Status503ServiceUnavailable,
                    new ErrorInfo(
                        "The gateway holds as many request bytes as it allows at once (Limits:MaxBodyBytes). Retry in a moment.",
                        ErrorTypes.Server, null, "server_busy"),
                    TimeSpan.FromSeconds(1));
            }

            _held = bytes;
        }

        public void Dispose() => GrowTo(0);
    }
}
