using System.Buffers.Binary;
using System.Text;
using System.Threading.Channels;
using Sluice.Mqtt.Packets;

namespace Sluice.Mqtt.Tests;

/// <summary>The client against a scripted broker: the moments a real broker rarely produces on cue.</summary>
public sealed class ClientBehaviourTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Connect_carries_client_id_credentials_keep_alive_and_session_flag()
    {
        await using var broker = new ScriptedBroker();
        var options = broker.ClientOptions("dev-1", TimeSpan.FromSeconds(30));
        await using var client = new MqttClient(new MqttClientOptions
        {
            Host = options.Host,
            Port = options.Port,
            ClientId = "dev-1",
            Username = "user",
            Password = "pässword",
            KeepAlive = TimeSpan.FromSeconds(30),
            CleanSession = false,
        });
        client.Start();
        var (_, connect) = await broker.AcceptConnectAsync(sessionPresent: true);
        await client.WaitConnectedAsync().WaitAsync(Wait);

        var body = connect.Body;
        Assert.Equal("MQTT", Encoding.ASCII.GetString(body, 2, 4));
        Assert.Equal(4, body[6]);
        Assert.Equal(0xC0, body[7]); // user name + password, clean session off
        Assert.Equal(30, BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(8)));
        Assert.Equal("dev-1", ReadString(body, 10, out var next));
        Assert.Equal("user", ReadString(body, next, out next));
        Assert.Equal("pässword", ReadString(body, next, out next));
        Assert.Equal(body.Length, next);
        Assert.Equal(1, client.ConnectionCount);
    }

    [Fact]
    public async Task Unacknowledged_qos1_message_is_sent_again_with_dup_after_a_reconnect()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions());
        client.Start();
        var (first, _) = await broker.AcceptConnectAsync();
        await client.WaitConnectedAsync().WaitAsync(Wait);

        var publish = client.PublishAsync("t/1", "hello"u8.ToArray(), MqttQos.AtLeastOnce);
        var original = await first.ReadAsync<PublishPacket>();
        Assert.False(original.Duplicate);
        Assert.Equal(MqttQos.AtLeastOnce, original.Qos);
        Assert.False(publish.IsCompleted);

        first.Close(); // no PUBACK
        var (second, _) = await broker.AcceptConnectAsync();
        var again = await second.ReadAsync<PublishPacket>();
        Assert.True(again.Duplicate);
        Assert.Equal(original.PacketId, again.PacketId);
        Assert.Equal("t/1", again.Topic);
        Assert.Equal("hello", Encoding.UTF8.GetString(again.Payload.Span));
        Assert.False(publish.IsCompleted);

        await second.SendAsync(MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePubAck(w, again.PacketId)));
        await publish.WaitAsync(Wait);
    }

    [Fact]
    public async Task While_disconnected_qos0_fails_at_once_and_qos1_waits_for_the_next_connection()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions());
        var disconnects = Record(client);
        client.Start();
        var (first, _) = await broker.AcceptConnectAsync();
        await client.WaitConnectedAsync().WaitAsync(Wait);

        first.Close();
        var lost = await disconnects.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.True(lost.WasConnected);
        Assert.False(client.IsConnected); // the next CONNACK only comes when the test accepts

        await Assert.ThrowsAsync<MqttConnectionException>(() => client.PublishAsync("t", "x"u8.ToArray(), MqttQos.AtMostOnce));
        var waiting = client.PublishAsync("t", "kept"u8.ToArray(), MqttQos.AtLeastOnce);

        var (second, _) = await broker.AcceptConnectAsync();
        var publish = await second.ReadAsync<PublishPacket>();
        Assert.Equal("kept", Encoding.UTF8.GetString(publish.Payload.Span));
        Assert.False(publish.Duplicate); // it never went out before
        await second.SendAsync(MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePubAck(w, publish.PacketId)));
        await waiting.WaitAsync(Wait);
    }

    [Fact]
    public async Task Incoming_messages_are_delivered_and_qos1_is_acknowledged()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions());
        client.Start();
        var (session, _) = await broker.AcceptConnectAsync();
        await client.WaitConnectedAsync().WaitAsync(Wait);

        await session.SendPublishAsync("a/b", "zero", MqttQos.AtMostOnce);
        await session.SendPublishAsync("a/c", "one", MqttQos.AtLeastOnce, 43);

        var zero = await client.Messages.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.Equal(("a/b", "zero", MqttQos.AtMostOnce), (zero.Topic, Encoding.UTF8.GetString(zero.Payload.Span), zero.Qos));
        var one = await client.Messages.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.Equal(("a/c", "one", MqttQos.AtLeastOnce), (one.Topic, Encoding.UTF8.GetString(one.Payload.Span), one.Qos));

        // The first packet the client sends is the PUBACK for the QoS 1 message (none for QoS 0).
        Assert.Equal(new PubAckPacket(43), await session.ReadAsync<PubAckPacket>());
    }

    [Fact]
    public async Task Subscriptions_are_renewed_after_a_reconnect()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions());
        var connected = Channel.CreateUnbounded<MqttConnectedEventArgs>();
        client.Connected += (_, e) => connected.Writer.TryWrite(e);
        client.Start();
        var (first, _) = await broker.AcceptConnectAsync();
        Assert.Equal(1, (await connected.Reader.ReadAsync().AsTask().WaitAsync(Wait)).ConnectionCount);

        var subscribing = client.SubscribeAsync("sluice/requests/#", MqttQos.AtLeastOnce);
        var (id, filters) = BrokerSession.ParseSubscribe(await first.ReadAsync<RawPacket>());
        Assert.Equal([("sluice/requests/#", (byte)1)], filters);
        await first.SendAsync(0x90, 0x03, (byte)(id >> 8), (byte)id, 0x01);
        Assert.Equal(MqttQos.AtLeastOnce, await subscribing.WaitAsync(Wait));

        first.Close();
        var (second, _) = await broker.AcceptConnectAsync();
        var (renewedId, renewed) = BrokerSession.ParseSubscribe(await second.ReadAsync<RawPacket>());
        Assert.Equal([("sluice/requests/#", (byte)1)], renewed);
        Assert.False(connected.Reader.TryRead(out _)); // "connected" only once the subscriptions are renewed
        await second.SendAsync(0x90, 0x03, (byte)(renewedId >> 8), (byte)renewedId, 0x01);
        var reconnected = await connected.Reader.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.Equal(2, reconnected.ConnectionCount);
        Assert.Empty(reconnected.RefusedFilters);
    }

    [Fact]
    public async Task A_refused_subscription_throws()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions());
        client.Start();
        var (session, _) = await broker.AcceptConnectAsync();
        var subscribing = client.SubscribeAsync("secret/#");
        var (id, _) = BrokerSession.ParseSubscribe(await session.ReadAsync<RawPacket>());
        await session.SendAsync(0x90, 0x03, (byte)(id >> 8), (byte)id, 0x80);
        var error = await Assert.ThrowsAsync<MqttSubscribeRefusedException>(() => subscribing.WaitAsync(Wait));
        Assert.Equal("secret/#", error.Filter);
    }

    [Fact]
    public async Task Keep_alive_sends_pingreq_and_drops_a_broker_that_stops_answering()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions(keepAlive: TimeSpan.FromSeconds(1)));
        var disconnects = Record(client);
        client.Start();
        var (session, _) = await broker.AcceptConnectAsync();

        var ping = Assert.IsType<RawPacket>(await session.ReadAsync());
        Assert.Equal(MqttPacketType.PingReq, ping.Type);
        await session.SendAsync(0xD0, 0x00);
        Assert.Equal(MqttPacketType.PingReq, Assert.IsType<RawPacket>(await session.ReadAsync()).Type);

        // No PINGRESP this time: within another keep-alive period the client gives up on the connection.
        var lost = await disconnects.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.True(lost.WasConnected);
        Assert.Contains("PINGREQ", lost.Reason.Message, StringComparison.Ordinal);
        await broker.AcceptConnectAsync();
        await client.WaitConnectedAsync().WaitAsync(Wait);
        Assert.Equal(2, client.ConnectionCount);
    }

    [Fact]
    public async Task A_refused_connect_is_reported_and_retried()
    {
        await using var broker = new ScriptedBroker();
        await using var client = new MqttClient(broker.ClientOptions());
        var disconnects = Record(client);
        client.Start();
        await broker.AcceptConnectAsync(returnCode: 5);
        var refused = await disconnects.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.False(refused.WasConnected);
        Assert.Equal(5, Assert.IsType<MqttConnectRefusedException>(refused.Reason).ReturnCode);
        Assert.Contains("not authorized", refused.Reason.Message, StringComparison.Ordinal);

        await broker.AcceptConnectAsync();
        await client.WaitConnectedAsync().WaitAsync(Wait);
        Assert.Equal(1, client.ConnectionCount);
    }

    [Fact]
    public async Task Dispose_sends_disconnect_and_fails_waiting_publishes()
    {
        await using var broker = new ScriptedBroker();
        var client = new MqttClient(broker.ClientOptions());
        client.Start();
        var (session, _) = await broker.AcceptConnectAsync();
        await client.WaitConnectedAsync().WaitAsync(Wait);
        var unacknowledged = client.PublishAsync("t", "x"u8.ToArray(), MqttQos.AtLeastOnce);
        await session.ReadAsync<PublishPacket>();

        await client.DisposeAsync();
        Assert.Equal(MqttPacketType.Disconnect, Assert.IsType<RawPacket>(await session.ReadAsync()).Type);
        await Assert.ThrowsAsync<MqttConnectionException>(() => unacknowledged.WaitAsync(Wait));
        Assert.Throws<ObjectDisposedException>(() => { _ = client.PublishAsync("t", "x"u8.ToArray()); });
    }

    private static ChannelReader<MqttDisconnectedEventArgs> Record(MqttClient client)
    {
        var channel = Channel.CreateUnbounded<MqttDisconnectedEventArgs>();
        client.Disconnected += (_, e) => channel.Writer.TryWrite(e);
        return channel.Reader;
    }

    private static string ReadString(byte[] body, int at, out int next)
    {
        var length = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(at));
        next = at + 2 + length;
        return Encoding.UTF8.GetString(body, at + 2, length);
    }
}
