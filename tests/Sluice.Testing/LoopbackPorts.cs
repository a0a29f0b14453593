using System.Net;
using System.Net.Sockets;

namespace Sluice.Testing;

/// <summary>Ports on 127.0.0.1 for servers a test starts as separate processes (nginx, Prometheus).</summary>
public static class LoopbackPorts
{
    /// <summary>A port nothing listens on now (the OS picks it).</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
