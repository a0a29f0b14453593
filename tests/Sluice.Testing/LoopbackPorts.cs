using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Sluice.Testing;

/// <summary>Ports on 127.0.0.1 for servers a test starts as separate processes (nginx, Prometheus, mock upstreams).</summary>
public static class LoopbackPorts
{
    // How many ports below the kernel's ephemeral range to choose from.
    private const int Span = 12_000;

    /// <summary>
    /// A port nothing is bound to now, chosen below the kernel's ephemeral range where it can: the caller binds it
    /// later, and a port the OS hands out for port 0 is one it also hands to outgoing connections — tests that open
    /// hundreds of client sockets at once (connection floods) could take it first and the server would fail to bind.
    /// </summary>
    public static int Free()
    {
        var (low, _) = EphemeralRange();
        var first = Math.Max(1_024, low - Span);
        for (var attempt = 0; attempt < 50 && low - first >= 1_000; attempt++)
        {
            var port = Random.Shared.Next(first, low);
            if (TryBind(port))
            {
                return port;
            }
        }

        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static bool TryBind(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Linux's <c>ip_local_port_range</c>; elsewhere the IANA range.</summary>
    private static (int Low, int High) EphemeralRange()
    {
        try
        {
            var parts = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            return (int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return (49_152, 65_535);
        }
    }
}
