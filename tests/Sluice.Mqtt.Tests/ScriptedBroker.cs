using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Sluice.Mqtt.Packets;

namespace Sluice.Mqtt.Tests;

/// <summary>
/// A loopback TCP server that plays the broker's side of MQTT one packet at a time, so tests can script
/// what a real broker would rarely do on cue (drop a connection before PUBACK, ignore PINGREQ, refuse CONNECT).
/// </summary>
internal sealed class ScriptedBroker : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly List<BrokerSession> _sessions = [];

    public ScriptedBroker() => _listener.Start();

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public MqttClientOptions ClientOptions(string clientId = "test", TimeSpan? keepAlive = null) => new()
    {
        Host = "127.0.0.1",
        Port = Port,
        ClientId = clientId,
        KeepAlive = keepAlive ?? TimeSpan.Zero,
        ReconnectMinDelay = TimeSpan.FromMilliseconds(20),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(100),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    public async Task<BrokerSession> AcceptAsync()
    {
        var socket = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        var session = new BrokerSession(socket);
        _sessions.Add(session);
        return session;
    }

    /// <summary>Accepts a connection, reads its CONNECT and answers CONNACK.</summary>
    public async Task<(BrokerSession Session, RawPacket Connect)> AcceptConnectAsync(byte returnCode = 0, bool sessionPresent = false)
    {
        var session = await AcceptAsync();
        var connect = Assert.IsType<RawPacket>(await session.ReadAsync());
        Assert.Equal(MqttPacketType.Connect, connect.Type);
        await session.SendAsync(0x20, 0x02, sessionPresent ? (byte)1 : (byte)0, returnCode);
        return (session, connect);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var session in _sessions)
        {
            await session.DisposeAsync();
        }

        _listener.Stop();
        _listener.Dispose();
    }
}

internal sealed class BrokerSession(Socket socket) : IAsyncDisposable
{
    private readonly NetworkStream _stream = new(socket, ownsSocket: true);
    private PipeReader? _reader;

    private PipeReader Reader => _reader ??= PipeReader.Create(_stream);

    public async Task<MqttPacket?> ReadAsync()
    {
        using var timeout = new CancellationTokenSource(ScriptedBroker.Timeout);
        return await MqttPacketReader.ReadAsync(Reader, 1 << 20, timeout.Token);
    }

    /// <summary>Reads packets until one of type <typeparamref name="T"/> (skipping PINGREQs).</summary>
    public async Task<T> ReadAsync<T>()
        where T : MqttPacket
    {
        while (true)
        {
            var packet = await ReadAsync() ?? throw new InvalidOperationException($"The client closed the connection while the broker expected {typeof(T).Name}.");
            if (packet is T wanted)
            {
                return wanted;
            }

            Assert.True(packet.Type == MqttPacketType.PingReq, $"Expected {typeof(T).Name}, got {packet.Type}.");
        }
    }

    public async Task SendAsync(params byte[] bytes) => await _stream.WriteAsync(bytes);

    public Task SendPublishAsync(string topic, string payload, MqttQos qos, ushort packetId = 0) =>
        SendAsync(MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePublish(w, topic, Encoding.UTF8.GetBytes(payload), qos, false, false, packetId)));

    /// <summary>Parses a SUBSCRIBE body into its packet id and filters.</summary>
    public static (ushort PacketId, List<(string Filter, byte Qos)> Filters) ParseSubscribe(RawPacket packet)
    {
        Assert.Equal(MqttPacketType.Subscribe, packet.Type);
        var body = packet.Body;
        var id = BinaryPrimitives.ReadUInt16BigEndian(body);
        var filters = new List<(string, byte)>();
        var at = 2;
        while (at < body.Length)
        {
            var length = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(at));
            filters.Add((Encoding.UTF8.GetString(body, at + 2, length), body[at + 2 + length]));
            at += 3 + length;
        }

        return (id, filters);
    }

    public void Close() => socket.Close();

    public async ValueTask DisposeAsync()
    {
        if (_reader is not null)
        {
            await _reader.CompleteAsync();
        }

        await _stream.DisposeAsync();
    }
}
