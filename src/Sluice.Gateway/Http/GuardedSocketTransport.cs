using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Sluice.Gateway.Http;

/// <summary>
/// Kestrel's socket transport for TCP endpoints, with an accept loop that survives running out of file descriptors.
/// </summary>
/// <remarks>
/// Kestrel's own listener treats every failed accept as a connection reset in the backlog and tries again at once.
/// When the process is out of file descriptors (one client opening ~20,000 connections was enough here), the listening
/// socket stays readable, every accept fails with EMFILE at once, and the loop spun a core while the runtime's memory
/// grew ~30 MB a second until the process died ("Out of memory."). This listener waits before trying again (the pending
/// connections stay in the kernel's backlog meanwhile), logs the episode once with what to do, and accepts again as
/// soon as descriptors are free. Connections are made by Kestrel's own <see cref="SocketConnectionContextFactory"/>, so
/// everything after the accept is Kestrel's.
/// <para>
/// Connections past <c>Limits:MaxConnections</c> are closed by Kestrel as soon as they are accepted. Kestrel logs a
/// warning for each (a flood of connections became a flood of log lines); that category is quiet and this factory
/// logs the turned-away connections instead: at the first, then at most once a minute with how many.
/// </para>
/// </remarks>
internal sealed partial class GuardedSocketTransportFactory(
    IOptions<SocketTransportOptions> options, ILoggerFactory loggers, TimeProvider time, Observability.GatewayMetrics metrics, IMeterFactory meters)
    : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private static readonly KeyValuePair<string, object?> MaxConnectionsReason = new("reason", "max_connections");

    /// <summary>Kestrel's category that logs each connection over the limit; the gateway keeps it to errors (SluiceServices).</summary>
    internal const string KestrelConnectionsCategory = "Microsoft.AspNetCore.Server.Kestrel.Connections";

    private readonly ILogger _logger = loggers.CreateLogger("Sluice.Connections");
    private readonly LogThrottle _rejectionLog = new(time, TimeSpan.FromMinutes(1));
    private MeterListener? _rejections;
    private long _rejected;

    // Kestrel's listener builds its connections' options from the transport options with an internal constructor that
    // also carries Kestrel's pinned block memory pool and FinOnError; the public one falls back to a plain pool (which
    // Kestrel's HTTP/1.1 output does not expect: streamed answers failed on it). Found once; if a future ASP.NET Core
    // removes it, CanBind says no and Kestrel's own transport binds, as before this listener existed.
    private static readonly Func<SocketTransportOptions, SocketConnectionFactoryOptions>? ConnectionOptions = FindConnectionOptions();

    /// <summary>
    /// TCP endpoints only; anything else (a Unix socket, a file handle) stays with Kestrel's transport — as does
    /// everything if Kestrel's connection options cannot be made the way its own listener makes them.
    /// </summary>
    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint && ConnectionOptions is not null;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var transport = options.Value;
        var socket = transport.CreateBoundListenSocket(endpoint);
        try
        {
            socket.Listen(transport.Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var factory = new SocketConnectionContextFactory(
            ConnectionOptions!(transport), loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets"));
        WatchRejections();
        return ValueTask.FromResult<IConnectionListener>(
            new GuardedSocketListener(socket, factory, transport.NoDelay, _logger, time, OpenFileLimit.Current));
    }

    public void Dispose() => _rejections?.Dispose();

    private static Func<SocketTransportOptions, SocketConnectionFactoryOptions>? FindConnectionOptions()
    {
        var constructor = typeof(SocketConnectionFactoryOptions).GetConstructor(
            System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic, [typeof(SocketTransportOptions)]);
        return constructor is null ? null : transport => (SocketConnectionFactoryOptions)constructor.Invoke([transport]);
    }

    /// <summary>Counts Kestrel's <c>kestrel.rejected_connections</c> (connections over the limit) for the log.</summary>
    private void WatchRejections()
    {
        if (_rejections is not null)
        {
            return;
        }

        _rejections = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                // This host's Kestrel only (its meter comes from the host's factory): other hosts in the process have their own.
                if (instrument.Meter.Name == "Microsoft.AspNetCore.Server.Kestrel" && instrument.Name == "kestrel.rejected_connections"
                    && ReferenceEquals(instrument.Meter.Scope, meters))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _rejections.SetMeasurementEventCallback<long>((_, value, _, _) => Rejected(value));
        _rejections.Start();
    }

    internal void Rejected(long count)
    {
        var total = Interlocked.Add(ref _rejected, count);
        metrics.ConnectionsRefused.Add(count, MaxConnectionsReason);
        if (_rejectionLog.ShouldLog())
        {
            LogRejected(_logger, total);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Turning away connections: the gateway holds as many as Limits:MaxConnections allows ({Total} turned away since start; each is closed as soon as it is accepted). If this is real traffic, raise Limits:MaxConnections (and the open-file limit with it) or add instances; if one client opens them, block it upstream.")]
    private static partial void LogRejected(ILogger logger, long total);
}

/// <summary>One listening socket; see <see cref="GuardedSocketTransportFactory"/>.</summary>
internal sealed partial class GuardedSocketListener(
    Socket socket, SocketConnectionContextFactory factory, bool noDelay, ILogger logger, TimeProvider time, long? openFileLimit)
    : IConnectionListener
{
    /// <summary>The first wait after an accept failed for want of descriptors; it doubles up to <see cref="MaxPause"/>.</summary>
    internal static readonly TimeSpan FirstPause = TimeSpan.FromMilliseconds(10);

    /// <summary>The longest wait between accepts while out of descriptors.</summary>
    internal static readonly TimeSpan MaxPause = TimeSpan.FromMilliseconds(500);

    private readonly LogThrottle _log = new(time, TimeSpan.FromMinutes(1));
    private long _starvedSince;
    private long _waits;

    public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

    /// <remarks>
    /// The steps (marked <c>// :: Step N</c>):
    /// <list type="number">
    /// <item>Accept. A connection made after a starved spell first logs that accepting resumed.</item>
    /// <item>Out of descriptors (EMFILE, ENFILE) or kernel buffers: log (once a minute at most), wait (10 ms, doubling to
    /// 500 ms within a spell), try again — never a loop that spins.</item>
    /// <item>The listener closed (shutdown): no more connections.</item>
    /// <item>Any other failure is a connection reset while it waited in the backlog: the next one.</item>
    /// </list>
    /// </remarks>
    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        var pause = FirstPause;
        while (true)
        {
            try
            {
                // :: Step 1
                var accepted = await socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
                if (_starvedSince != 0)
                {
                    var spell = time.GetElapsedTime(_starvedSince);
                    if (spell >= TimeSpan.FromSeconds(1))
                    {
                        LogResumed(logger, spell.TotalSeconds);
                    }

                    _starvedSince = 0;
                }

                if (accepted.RemoteEndPoint is IPEndPoint)
                {
                    accepted.NoDelay = noDelay;
                }

                return factory.Create(accepted);
            }
            catch (SocketException e) when (IsOutOfResources(e.SocketErrorCode))
            {
                // :: Step 2
                _waits++;
                var now = time.GetTimestamp();
                if (_starvedSince == 0)
                {
                    _starvedSince = now;
                    pause = FirstPause;
                }

                // Once a minute at most: a limit hit over and over is one line, not one per connection.
                if (_log.ShouldLog())
                {
                    LogStarved(logger, e.SocketErrorCode.ToString(), openFileLimit?.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) ?? "unknown", _waits);
                }

                try
                {
                    await Task.Delay(pause, time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return null;
                }

                pause = pause * 2 > MaxPause ? MaxPause : pause * 2;
            }
            catch (ObjectDisposedException)
            {
                // :: Step 3
                return null;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                return null;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            catch (SocketException)
            {
                // :: Step 4
            }
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        socket.Dispose();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        socket.Dispose();
        factory.Dispose();
        return ValueTask.CompletedTask;
    }

    internal static bool IsOutOfResources(SocketError error) =>
        error is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Not accepting connections for now: the process is out of file descriptors ({Error}; its open-file limit is {Limit}; {Waits} waits since start). Waiting connections stay queued and are accepted as descriptors free up. Raise the limit (ulimit -n, LimitNOFILE= in systemd) or lower Limits:MaxConnections.")]
    private static partial void LogStarved(ILogger logger, string error, string limit, long waits);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Accepting connections again after {Seconds:F1} s without file descriptors.")]
    private static partial void LogResumed(ILogger logger, double seconds);
}
