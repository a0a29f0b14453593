using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading.Channels;
using Sluice.Mqtt.Packets;

namespace Sluice.Mqtt;

/// <summary>
/// A small MQTT 3.1.1 client: QoS 0 and 1 in both directions, keep-alive, and a connection that repairs itself.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><see cref="Start"/> begins connecting in the background; lost connections are re-made with exponential
/// backoff, subscriptions are renewed, and QoS 1 messages not yet acknowledged are sent again (DUP set).</item>
/// <item>Received messages arrive on <see cref="Messages"/>; QoS 1 messages are acknowledged once they are
/// buffered there.</item>
/// <item>QoS 0 publishes fail at once with <see cref="MqttConnectionException"/> while disconnected; QoS 1 publishes
/// complete when the broker's PUBACK arrives, however many reconnections that takes.</item>
/// <item>One writer loop per connection sends every packet, so callers never share the socket.</item>
/// </list>
/// </remarks>
public sealed class MqttClient : IAsyncDisposable
{
    private static readonly byte[] PingReqBytes = MqttPacketWriter.ToArray(MqttPacketWriter.WritePingReq);
    private static readonly byte[] DisconnectBytes = MqttPacketWriter.ToArray(MqttPacketWriter.WriteDisconnect);

    private readonly MqttClientOptions _options;
    private readonly Channel<MqttMessage> _received;
    private readonly ConcurrentDictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ushort, PendingPublish> _inflight = new();
    private readonly SemaphoreSlim _inflightSlots;
    private readonly CancellationTokenSource _stopping = new();

    // The CA certificates of MqttClientOptions.CaFile, read once; null: the system's roots.
    private readonly X509Certificate2Collection? _trustedRoots;
    private TaskCompletionSource _ready = NewSignal();
    private volatile Connection? _current;
    private Task? _supervisor;
    private int _nextPacketId;
    private long _publishSequence;
    private int _connections;
    private int _disposed;

    /// <summary>Creates a client; call <see cref="Start"/> to connect.</summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public MqttClient(MqttClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _trustedRoots = options.CaFile is { } caFile ? TlsCheck.LoadRoots(caFile) : null;
        _inflightSlots = new SemaphoreSlim(options.MaxInflight, options.MaxInflight);
        _received = Channel.CreateBounded<MqttMessage>(new BoundedChannelOptions(options.ReceiveBufferMessages)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleWriter = true,
        });
    }

    /// <summary>Raised (on a background thread) after each successful connection, once subscriptions are renewed.</summary>
    public event EventHandler<MqttConnectedEventArgs>? Connected;

    /// <summary>Raised (on a background thread) when a connection attempt fails or a connection is lost.</summary>
    public event EventHandler<MqttDisconnectedEventArgs>? Disconnected;

    /// <summary>Messages received on the subscriptions, in arrival order.</summary>
    public ChannelReader<MqttMessage> Messages => _received.Reader;

    /// <summary>Whether a connection is up right now.</summary>
    public bool IsConnected => _current is not null;

    /// <summary>How many connections have been made so far (1 after the first, 2 after a reconnect, …).</summary>
    public int ConnectionCount => Volatile.Read(ref _connections);

    /// <summary>Starts connecting (and reconnecting) in the background. Calling it twice has no effect.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.CompareExchange(ref _supervisor, Task.CompletedTask, null) is null)
        {
            _supervisor = Task.Run(SuperviseAsync);
        }
    }

    /// <summary>Waits until a connection is up and its subscriptions are renewed.</summary>
    public async Task WaitConnectedAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            await Volatile.Read(ref _ready).Task.WaitAsync(cancellationToken);
            if (_current is not null)
            {
                return;
            }
        }
    }

    /// <summary>
    /// Subscribes to <paramref name="filter"/> now (waiting for a connection if there is none) and again after
    /// every reconnection.
    /// </summary>
    /// <returns>The QoS the broker granted.</returns>
    /// <exception cref="MqttSubscribeRefusedException">The broker refused the filter.</exception>
    public async Task<MqttQos> SubscribeAsync(string filter, MqttQos qos = MqttQos.AtLeastOnce, CancellationToken cancellationToken = default)
    {
        if (!MqttTopic.IsValidFilter(filter))
        {
            throw new ArgumentException($"'{filter}' is not a valid MQTT topic filter ('+' and '#' must fill a whole level; '#' must be last).", nameof(filter));
        }

        var subscription = new Subscription(qos);
        _subscriptions[filter] = subscription;
        if (_current is { } connection)
        {
            try
            {
                var codes = await SendSubscribeAsync(connection, [(filter, qos)], cancellationToken);
                Acknowledge(filter, subscription, codes[0]);
            }
            catch (MqttConnectionException)
            {
                // Lost while subscribing: the next connection renews every subscription and answers below.
            }
        }

        // Without a connection now, the renewal that follows the next CONNACK acknowledges it.
        return await subscription.Acknowledged.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Publishes a message.</summary>
    /// <remarks>
    /// QoS 0 completes once the bytes are handed to the socket and fails with <see cref="MqttConnectionException"/>
    /// when there is no connection. QoS 1 completes when the broker acknowledges it, waiting across reconnections.
    /// </remarks>
    public Task PublishAsync(string topic, ReadOnlyMemory<byte> payload, MqttQos qos = MqttQos.AtMostOnce, bool retain = false, CancellationToken cancellationToken = default)
    {
        if (!MqttTopic.IsValidTopicName(topic))
        {
            throw new ArgumentException($"'{topic}' is not a valid topic to publish to (it must be non-empty and have no '+' or '#').", nameof(topic));
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return qos == MqttQos.AtMostOnce
            ? PublishAtMostOnceAsync(topic, payload, retain, cancellationToken)
            : PublishAtLeastOnceAsync(topic, payload, retain, cancellationToken);
    }

    /// <summary>Sends DISCONNECT if connected, closes the connection and stops reconnecting.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var connection = _current;
        if (connection is not null)
        {
            // A clean DISCONNECT tells the broker this was deliberate (no reconnection storm, no will message).
            var written = NewSignal();
            if (connection.TrySend(DisconnectBytes, written))
            {
                await written.Task.WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        await _stopping.CancelAsync();
        connection?.Abort(new MqttConnectionException("The MQTT client was stopped."));
        if (_supervisor is { } supervisor)
        {
            await supervisor.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        foreach (var pending in _inflight.Values)
        {
            pending.Acknowledged.TrySetException(new MqttConnectionException("The MQTT client was stopped before the broker acknowledged the message."));
        }

        _inflight.Clear();
        foreach (var subscription in _subscriptions.Values)
        {
            subscription.Acknowledged.TrySetException(new ObjectDisposedException(nameof(MqttClient)));
        }

        _received.Writer.TryComplete();
        Volatile.Read(ref _ready).TrySetException(new ObjectDisposedException(nameof(MqttClient)));
        _stopping.Dispose();
    }

    private async Task PublishAtMostOnceAsync(string topic, ReadOnlyMemory<byte> payload, bool retain, CancellationToken cancellationToken)
    {
        var connection = _current ?? throw NotConnected();
        var bytes = MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePublish(w, topic, payload.Span, MqttQos.AtMostOnce, retain, false, 0));
        var written = NewSignal();
        if (!connection.TrySend(bytes, written))
        {
            throw NotConnected();
        }

        await written.Task.WaitAsync(cancellationToken);
    }

    private async Task PublishAtLeastOnceAsync(string topic, ReadOnlyMemory<byte> payload, bool retain, CancellationToken cancellationToken)
    {
        await _inflightSlots.WaitAsync(cancellationToken);
        var pending = new PendingPublish(topic, payload.ToArray(), retain, Interlocked.Increment(ref _publishSequence));
        do
        {
            pending.PacketId = NextPacketId();
        }
        while (!_inflight.TryAdd(pending.PacketId, pending));

        // Registered first, then sent: if there is no connection now, the next one's retransmission pass finds it.
        TrySendPublish(pending, _current);
        try
        {
            await pending.Acknowledged.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            if (_inflight.TryRemove(pending.PacketId, out _))
            {
                _inflightSlots.Release();
            }

            throw;
        }
    }

    /// <summary>Sends a QoS 1 message on <paramref name="connection"/> unless it already went out on that connection.</summary>
    private static void TrySendPublish(PendingPublish pending, Connection? connection)
    {
        if (connection is null || Interlocked.Exchange(ref pending.SentOnGeneration, connection.Generation) == connection.Generation)
        {
            return;
        }

        var duplicate = Interlocked.Exchange(ref pending.EverSent, 1) == 1;
        var bytes = MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePublish(w, pending.Topic, pending.Payload, MqttQos.AtLeastOnce, pending.Retain, duplicate, pending.PacketId));
        connection.TrySend(bytes);
    }

    private ushort NextPacketId()
    {
        while (true)
        {
            var id = (ushort)Interlocked.Increment(ref _nextPacketId);
            if (id != 0)
            {
                return id;
            }
        }
    }

    private async Task SuperviseAsync()
    {
        var token = _stopping.Token;
        var attempt = 0;
        var generation = 0;
        while (!token.IsCancellationRequested)
        {
            Connection? connection = null;
            Exception reason;
            var wasConnected = false;
            try
            {
                connection = await ConnectAsync(++generation, token);
                attempt = 0;
                var run = connection.RunAsync(ReadLoopAsync, WriteLoopAsync, KeepAliveLoopAsync);

                // Unacknowledged QoS 1 messages go first, in their original order (§4.4); a second pass after the
                // connection is published catches messages registered in between (each is sent once per connection).
                Retransmit(connection);
                _current = connection;
                Retransmit(connection);

                var refused = await RenewSubscriptionsAsync(connection, token);
                wasConnected = true;
                var count = Interlocked.Increment(ref _connections);
                Volatile.Read(ref _ready).TrySetResult();
                Raise(Connected, new MqttConnectedEventArgs(count, connection.SessionPresent, refused));
                reason = await run;
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                break;
            }
#pragma warning disable CA1031 // Whatever ended the connection, the supervisor reconnects; the reason is reported.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                reason = ex;
            }
            finally
            {
                _current = null;
                var ready = Volatile.Read(ref _ready);
                if (ready.Task.IsCompleted)
                {
                    Volatile.Write(ref _ready, NewSignal());
                }

                if (connection is not null)
                {
                    connection.Abort(new MqttConnectionException("The connection to the MQTT broker was lost."));
                    await ((Task)connection.Completion).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
            }

            if (token.IsCancellationRequested || Volatile.Read(ref _disposed) != 0)
            {
                break;
            }

            var delay = Backoff(attempt++);
            Raise(Disconnected, new MqttDisconnectedEventArgs(reason, delay, wasConnected));
            try
            {
                await Task.Delay(delay, token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private TimeSpan Backoff(int attempt)
    {
        var min = _options.ReconnectMinDelay.TotalMilliseconds;
        var max = Math.Max(min, _options.ReconnectMaxDelay.TotalMilliseconds);
        var delay = Math.Min(max, min * Math.Pow(2, Math.Min(attempt, 30)));

        // ±20 % jitter so that many clients cut off together do not all come back in the same instant.
        return TimeSpan.FromMilliseconds(delay * (0.8 + (Random.Shared.NextDouble() * 0.4)));
    }

    private void Retransmit(Connection connection)
    {
        foreach (var pending in _inflight.Values.OrderBy(p => p.Sequence))
        {
            TrySendPublish(pending, connection);
        }
    }

    private async Task<IReadOnlyList<string>> RenewSubscriptionsAsync(Connection connection, CancellationToken cancellationToken)
    {
        var subscriptions = _subscriptions.ToList();
        if (subscriptions.Count == 0)
        {
            return [];
        }

        var codes = await SendSubscribeAsync(connection, subscriptions.Select(s => (s.Key, s.Value.Qos)).ToList(), cancellationToken);
        var refused = new List<string>();
        for (var i = 0; i < subscriptions.Count; i++)
        {
            if (!Acknowledge(subscriptions[i].Key, subscriptions[i].Value, codes[i]))
            {
                refused.Add(subscriptions[i].Key);
            }
        }

        return refused;
    }

    /// <summary>Records a SUBACK return code; a refused filter is dropped. Returns false when refused.</summary>
    private bool Acknowledge(string filter, Subscription subscription, byte code)
    {
        if (code == 0x80)
        {
            _subscriptions.TryRemove(new KeyValuePair<string, Subscription>(filter, subscription));
            subscription.Acknowledged.TrySetException(new MqttSubscribeRefusedException(filter));
            return false;
        }

        subscription.Acknowledged.TrySetResult((MqttQos)Math.Min(code, (byte)1));
        return true;
    }

    private async Task<byte[]> SendSubscribeAsync(Connection connection, IReadOnlyList<(string Filter, MqttQos Qos)> filters, CancellationToken cancellationToken)
    {
        var waiter = new TaskCompletionSource<SubAckPacket>(TaskCreationOptions.RunContinuationsAsynchronously);
        ushort id;
        do
        {
            id = NextPacketId();
        }
        while (_inflight.ContainsKey(id) || !connection.SubAcks.TryAdd(id, waiter));

        try
        {
            var bytes = MqttPacketWriter.ToArray(w => MqttPacketWriter.WriteSubscribe(w, id, filters));
            if (!connection.TrySend(bytes))
            {
                throw NotConnected();
            }

            SubAckPacket ack;
            try
            {
                ack = await waiter.Task.WaitAsync(_options.ConnectTimeout, cancellationToken);
            }
            catch (TimeoutException)
            {
                var error = new MqttConnectionException($"The broker did not answer SUBSCRIBE within {_options.ConnectTimeout.TotalSeconds:0.#} s; reconnecting.");
                connection.Abort(error);
                throw error;
            }

            if (ack.ReturnCodes.Length != filters.Count)
            {
                var error = new MqttProtocolException($"SUBACK has {ack.ReturnCodes.Length} return codes for {filters.Count} filters.");
                connection.Abort(error);
                throw error;
            }

            return ack.ReturnCodes;
        }
        finally
        {
            connection.SubAcks.TryRemove(id, out _);
        }
    }

    private async Task<Connection> ConnectAsync(int generation, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ConnectTimeout);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Connection? connection = null;
        Stream? transport = null;
        var tls = new TlsCheck();
        try
        {
            await socket.ConnectAsync(_options.Host, _options.Port, timeout.Token);
            transport = new NetworkStream(socket, ownsSocket: true);
            if (_options.UseTls)
            {
                var ssl = new SslStream(transport, leaveInnerStreamOpen: false);
                transport = ssl;
                await ssl.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions
                    {
                        TargetHost = _options.TlsServerName ?? _options.Host,
                        RemoteCertificateValidationCallback = (_, certificate, chain, errors) => tls.Validate(certificate, chain, errors, _trustedRoots),
                    },
                    timeout.Token);
            }

            connection = new Connection(transport, generation, cancellationToken);
            var fields = new ConnectFields(
                _options.ClientId,
                (ushort)_options.KeepAlive.TotalSeconds,
                _options.CleanSession,
                _options.Username,
                _options.Password is null ? null : Encoding.UTF8.GetBytes(_options.Password));
            MqttPacketWriter.WriteConnect(connection.Writer, fields);
            await connection.Writer.FlushAsync(timeout.Token);
            connection.MarkSent();

            var packet = await MqttPacketReader.ReadAsync(connection.Reader, _options.MaxIncomingPacketBytes, timeout.Token);
            switch (packet)
            {
                case null:
                    throw new MqttConnectionException($"The broker at {Where} closed the connection before answering CONNECT.");
                case ConnAckPacket { ReturnCode: 0 } ack:
                    connection.SessionPresent = ack.SessionPresent;
                    return connection;
                case ConnAckPacket ack:
                    throw new MqttConnectRefusedException(ack.ReturnCode);
                default:
                    throw new MqttProtocolException($"The broker answered CONNECT with {packet.Type} instead of CONNACK.");
            }
        }
        catch (Exception ex)
        {
            if (connection is null)
            {
                if (transport is not null)
                {
                    await transport.DisposeAsync();
                }

                socket.Dispose();
            }
            else
            {
                connection.Abort(ex);
                await connection.DisposeTransportAsync();
            }

            throw ex switch
            {
                OperationCanceledException when !cancellationToken.IsCancellationRequested =>
                    new MqttConnectionException($"No MQTT connection to {Where} within {_options.ConnectTimeout.TotalSeconds:0.#} s.", ex),
                SocketException socketError =>
                    new MqttConnectionException($"Cannot connect to the MQTT broker at {Where}: {socketError.Message}.", ex),
                AuthenticationException => new MqttConnectionException(tls.Describe(Where, _options), ex),
                IOException => new MqttConnectionException($"The connection to the MQTT broker at {Where} failed: {ex.Message}", ex),
                _ => ex,
            };
        }
    }

    private string Where => $"{_options.Host}:{_options.Port}";

    private async Task ReadLoopAsync(Connection connection)
    {
        var token = connection.Token;
        while (true)
        {
            var packet = await MqttPacketReader.ReadAsync(connection.Reader, _options.MaxIncomingPacketBytes, token)
                ?? throw new MqttConnectionException($"The broker at {Where} closed the connection.");
            switch (packet)
            {
                case PublishPacket publish:
                    await _received.Writer.WriteAsync(new MqttMessage(publish.Topic, publish.Payload, publish.Qos, publish.Retain, publish.Duplicate), token);
                    if (publish.Qos == MqttQos.AtLeastOnce)
                    {
                        // Acknowledged once it is ours: buffered for the application.
                        connection.TrySend(MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePubAck(w, publish.PacketId)));
                    }

                    break;
                case PubAckPacket ack:
                    if (_inflight.TryRemove(ack.PacketId, out var pending))
                    {
                        _inflightSlots.Release();
                        pending.Acknowledged.TrySetResult();
                    }

                    break;
                case SubAckPacket subAck:
                    if (connection.SubAcks.TryGetValue(subAck.PacketId, out var waiter))
                    {
                        waiter.TrySetResult(subAck);
                    }

                    break;
                case PingRespPacket:
                    connection.PingAnswered();
                    break;
                default:
                    throw new MqttProtocolException($"The broker sent an unexpected {packet.Type} packet.");
            }
        }
    }

    private static async Task WriteLoopAsync(Connection connection)
    {
        var token = connection.Token;
        var reader = connection.Outbox.Reader;
        var flushed = new List<TaskCompletionSource>();
        try
        {
            while (await reader.WaitToReadAsync(token))
            {
                // Everything queued goes out in one flush.
                while (reader.TryRead(out var item))
                {
                    connection.Writer.Write(item.Bytes);
                    if (item.Written is not null)
                    {
                        flushed.Add(item.Written);
                    }
                }

                var result = await connection.Writer.FlushAsync(token);
                connection.MarkSent();
                foreach (var signal in flushed)
                {
                    signal.TrySetResult();
                }

                flushed.Clear();
                if (result.IsCompleted)
                {
                    throw new MqttConnectionException("The connection to the MQTT broker is closed.");
                }
            }
        }
        catch (Exception ex)
        {
            var error = new MqttConnectionException("The connection to the MQTT broker was lost before the message was sent.", ex);
            foreach (var signal in flushed)
            {
                signal.TrySetException(error);
            }

            throw;
        }
        finally
        {
            connection.Outbox.Writer.TryComplete();
            while (reader.TryRead(out var item))
            {
                item.Written?.TrySetException(new MqttConnectionException("The connection to the MQTT broker was lost before the message was sent."));
            }
        }
    }

    private async Task KeepAliveLoopAsync(Connection connection)
    {
        var keepAlive = _options.KeepAlive;
        if (keepAlive <= TimeSpan.Zero)
        {
            await Task.Delay(Timeout.Infinite, connection.Token);
            return;
        }

        var tick = TimeSpan.FromMilliseconds(Math.Clamp(keepAlive.TotalMilliseconds / 4, 50, 5_000));
        using var timer = new PeriodicTimer(tick);
        while (await timer.WaitForNextTickAsync(connection.Token))
        {
            var now = Stopwatch.GetTimestamp();
            var pingSent = connection.PingSentAt;
            if (pingSent != 0)
            {
                if (Stopwatch.GetElapsedTime(pingSent, now) > keepAlive)
                {
                    throw new MqttConnectionException($"The broker did not answer PINGREQ within the keep-alive of {keepAlive.TotalSeconds:0.#} s; reconnecting.");
                }
            }
            else if (Stopwatch.GetElapsedTime(connection.LastSent, now) >= keepAlive / 2)
            {
                // Half the interval leaves the other half for the PINGREQ to arrive before the broker's deadline.
                connection.PingSent(now);
                connection.TrySend(PingReqBytes);
            }
        }
    }

    private void Raise<T>(EventHandler<T>? handler, T args)
    {
        if (handler is null)
        {
            return;
        }

        try
        {
            handler(this, args);
        }
#pragma warning disable CA1031 // A failing event handler must not stop the connection supervisor.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private static MqttConnectionException NotConnected() =>
        new("Not connected to the MQTT broker; the client is reconnecting. Retry, or publish with QoS 1 to have the message wait for the connection.");

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A QoS 1 message waiting for its PUBACK.</summary>
    private sealed class PendingPublish(string topic, byte[] payload, bool retain, long sequence)
    {
        public int SentOnGeneration;
        public int EverSent;

        public string Topic { get; } = topic;

        public byte[] Payload { get; } = payload;

        public bool Retain { get; } = retain;

        public long Sequence { get; } = sequence;

        public ushort PacketId { get; set; }

        public TaskCompletionSource Acknowledged { get; } = NewSignal();
    }

    /// <summary>A subscription to renew on every connection; <see cref="Acknowledged"/> holds the first SUBACK's answer.</summary>
    private sealed class Subscription(MqttQos qos)
    {
        public MqttQos Qos { get; } = qos;

        public TaskCompletionSource<MqttQos> Acknowledged { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private readonly record struct Outgoing(byte[] Bytes, TaskCompletionSource? Written);

    /// <summary>One TCP connection: its pipes, its outbox and its loops.</summary>
    private sealed class Connection
    {
        private readonly Stream _stream;
        private readonly CancellationTokenSource _closed;
        private long _lastSent;
        private long _pingSentAt;
        private int _aborted;

        public Connection(Stream stream, int generation, CancellationToken stopping)
        {
            Generation = generation;
            _stream = stream;
            Reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(leaveOpen: true));
            Writer = PipeWriter.Create(_stream, new StreamPipeWriterOptions(leaveOpen: true));
            _closed = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            Token = _closed.Token;
        }

        public int Generation { get; }

        public PipeReader Reader { get; }

        public PipeWriter Writer { get; }

        public CancellationToken Token { get; }

        public bool SessionPresent { get; set; }

        public Channel<Outgoing> Outbox { get; } = Channel.CreateUnbounded<Outgoing>(new UnboundedChannelOptions { SingleReader = true });

        public ConcurrentDictionary<ushort, TaskCompletionSource<SubAckPacket>> SubAcks { get; } = new();

        public Task<Exception> Completion { get; private set; } = Task.FromResult<Exception>(new MqttConnectionException("Not started."));

        public long LastSent => Volatile.Read(ref _lastSent);

        public long PingSentAt => Volatile.Read(ref _pingSentAt);

        public void MarkSent() => Volatile.Write(ref _lastSent, Stopwatch.GetTimestamp());

        public void PingSent(long timestamp) => Volatile.Write(ref _pingSentAt, timestamp);

        public void PingAnswered() => Volatile.Write(ref _pingSentAt, 0);

        public bool TrySend(byte[] bytes, TaskCompletionSource? written = null) =>
            Volatile.Read(ref _aborted) == 0 && Outbox.Writer.TryWrite(new Outgoing(bytes, written));

        /// <summary>Runs the loops; the task ends (with the reason) when the first of them ends.</summary>
        public Task<Exception> RunAsync(Func<Connection, Task> read, Func<Connection, Task> write, Func<Connection, Task> keepAlive)
        {
            Completion = RunCoreAsync(read, write, keepAlive);
            return Completion;
        }

        public void Abort(Exception reason)
        {
            if (Interlocked.Exchange(ref _aborted, 1) != 0)
            {
                return;
            }

            Outbox.Writer.TryComplete();
            foreach (var waiter in SubAcks.Values)
            {
                waiter.TrySetException(reason as MqttConnectionException ?? new MqttConnectionException("The connection to the MQTT broker was lost.", reason));
            }

            try
            {
                _closed.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }

            // Closing the socket ends a read that is waiting on it.
            _stream.Dispose();
        }

        public async Task DisposeTransportAsync()
        {
            await Reader.CompleteAsync();
            await Writer.CompleteAsync();
            await _stream.DisposeAsync();
            _closed.Dispose();
        }

        private async Task<Exception> RunCoreAsync(Func<Connection, Task> read, Func<Connection, Task> write, Func<Connection, Task> keepAlive)
        {
            var loops = new[] { Task.Run(() => read(this)), Task.Run(() => write(this)), Task.Run(() => keepAlive(this)) };
            var first = await Task.WhenAny(loops);
            var reason = first.Exception?.InnerException
                ?? new MqttConnectionException(first.IsCanceled ? "The MQTT client was stopped." : "The connection to the MQTT broker was closed.");
            if (reason is IOException or ObjectDisposedException or OperationCanceledException)
            {
                reason = new MqttConnectionException($"The connection to the MQTT broker was lost: {reason.Message}", reason);
            }

            Abort(reason);
            await Task.WhenAll(loops).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await DisposeTransportAsync();
            return reason;
        }
    }
}

/// <summary>Details of a successful connection.</summary>
public sealed class MqttConnectedEventArgs(int connectionCount, bool sessionPresent, IReadOnlyList<string> refusedFilters) : EventArgs
{
    /// <summary>1 for the first connection, 2 after the first reconnect, …</summary>
    public int ConnectionCount { get; } = connectionCount;

    /// <summary>Whether the broker kept a session from before (only with clean session off).</summary>
    public bool SessionPresent { get; } = sessionPresent;

    /// <summary>Subscriptions the broker refused while renewing them (they are dropped).</summary>
    public IReadOnlyList<string> RefusedFilters { get; } = refusedFilters;
}

/// <summary>Why a connection ended or could not be made, and when the next attempt is.</summary>
public sealed class MqttDisconnectedEventArgs(Exception reason, TimeSpan retryDelay, bool wasConnected) : EventArgs
{
    /// <summary>What happened.</summary>
    public Exception Reason { get; } = reason;

    /// <summary>Time until the next attempt.</summary>
    public TimeSpan RetryDelay { get; } = retryDelay;

    /// <summary>True when an established connection was lost; false when an attempt failed.</summary>
    public bool WasConnected { get; } = wasConnected;
}

/// <summary>
/// Checks the broker's certificate during the TLS handshake — against the system's roots, or only against the CA file's
/// — and remembers why it was refused, so the failure says what is wrong and what to change.
/// </summary>
internal sealed class TlsCheck
{
    private string? _problem;

    /// <summary>Reads the PEM file's certificates; a file without any is refused at once.</summary>
    /// <exception cref="ArgumentException">The file holds no PEM certificate.</exception>
    public static X509Certificate2Collection LoadRoots(string caFile)
    {
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(caFile);
        }
        catch (System.Security.Cryptography.CryptographicException ex)
        {
            throw new ArgumentException($"The MQTT CA file '{caFile}' is not a PEM certificate file ({ex.Message}). Give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----).", ex);
        }

        return roots.Count > 0
            ? roots
            : throw new ArgumentException($"The MQTT CA file '{caFile}' holds no certificate. Give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----).");
    }

    /// <summary>The handshake's validation callback.</summary>
    public bool Validate(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, X509Certificate2Collection? roots)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            _problem = "the broker sent no certificate";
            return false;
        }

        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            _problem = $"the broker's certificate ({certificate.Subject}) is not issued for the host name used to connect";
            return false;
        }

        if (roots is null)
        {
            if (errors == SslPolicyErrors.None)
            {
                return true;
            }

            _problem = $"the broker's certificate ({certificate.Subject}, issued by {certificate.Issuer}) is not trusted by this system ({Describe(chain)})";
            return false;
        }

        // A private CA: build the chain against the CA file's certificates only, not the system's roots.
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(roots);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
        {
            custom.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
        }

        using var leaf = new X509Certificate2(certificate);
        if (custom.Build(leaf))
        {
            return true;
        }

        _problem = $"the broker's certificate ({leaf.Subject}, issued by {leaf.Issuer}) does not chain to the CA file's certificate(s) ({Describe(custom)})";
        return false;
    }

    /// <summary>The message for a failed handshake: what was wrong, and what to change.</summary>
    public string Describe(string where, MqttClientOptions options)
    {
        var problem = _problem ?? "the handshake failed (is it a TLS port? mqtts:// brokers usually listen on 8883)";
        var fix = options.CaFile is { } caFile
            ? $"Check that the CA file '{caFile}' (Mqtt:CaFile) holds the CA that signed the broker's certificate."
            : "If the broker uses a private CA, give its certificate with Mqtt:CaFile (sluice mqtt --ca-file).";
        return $"TLS with the MQTT broker at {where} failed: {problem}. {fix}";
    }

    private static string Describe(X509Chain? chain) =>
        chain is null || chain.ChainStatus.Length == 0
            ? "no chain"
            : string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim().TrimEnd('.')).Distinct(StringComparer.Ordinal));
}
