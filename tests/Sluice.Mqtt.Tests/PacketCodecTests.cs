using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Sluice.Mqtt.Packets;

namespace Sluice.Mqtt.Tests;

public sealed class PacketCodecTests
{
    public static TheoryData<int, byte[]> RemainingLengths => new()
    {
        { 0, [0x00] },
        { 127, [0x7F] },
        { 128, [0x80, 0x01] },
        { 16_383, [0xFF, 0x7F] },
        { 16_384, [0x80, 0x80, 0x01] },
        { 2_097_151, [0xFF, 0xFF, 0x7F] },
        { 2_097_152, [0x80, 0x80, 0x80, 0x01] },
        { 268_435_455, [0xFF, 0xFF, 0xFF, 0x7F] },
    };

    [Theory]
    [MemberData(nameof(RemainingLengths))]
    public void Remaining_length_encodes_to_the_spec_bytes_and_decodes_back(int value, byte[] expected)
    {
        var buffer = new ArrayBufferWriter<byte>();
        MqttRemainingLength.Write(buffer, value);
        Assert.Equal(expected, buffer.WrittenSpan.ToArray());
        Assert.Equal(expected.Length, MqttRemainingLength.SizeOf(value));

        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>([.. expected, 0x42]));
        Assert.Equal(OperationStatus.Done, MqttRemainingLength.TryRead(ref reader, out var decoded));
        Assert.Equal(value, decoded);
        Assert.Equal(expected.Length, reader.Consumed);
    }

    [Theory]
    [MemberData(nameof(RemainingLengths))]
    public void Remaining_length_needs_more_data_on_every_truncation(int value, byte[] encoded)
    {
        for (var cut = 0; cut < encoded.Length; cut++)
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(encoded[..cut]));
            Assert.Equal(OperationStatus.NeedMoreData, MqttRemainingLength.TryRead(ref reader, out _));
            Assert.Equal(0, reader.Consumed);
        }

        var whole = new SequenceReader<byte>(new ReadOnlySequence<byte>(encoded));
        Assert.Equal(OperationStatus.Done, MqttRemainingLength.TryRead(ref whole, out var decoded));
        Assert.Equal(value, decoded);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(268_435_456)]
    [InlineData(int.MaxValue)]
    public void Remaining_length_out_of_range_is_refused(int value) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => MqttRemainingLength.SizeOf(value));

    [Fact]
    public void A_fifth_length_byte_is_malformed()
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x7F }));
        Assert.Equal(OperationStatus.InvalidData, MqttRemainingLength.TryRead(ref reader, out _));

        var packet = new ReadOnlySequence<byte>(new byte[] { 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F });
        Assert.Throws<MqttProtocolException>(() => MqttPacketReader.TryRead(ref packet, int.MaxValue, out _));
    }

    [Fact]
    public void Connect_is_encoded_as_the_spec_describes()
    {
        var bytes = MqttPacketWriter.ToArray(w => MqttPacketWriter.WriteConnect(w, new ConnectFields("dev", 60, true, "u", "pw"u8.ToArray())));
        byte[] expected =
        [
            0x10, 22,                               // CONNECT, remaining length
            0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04, // protocol name, level 4
            0xC2,                                   // user name + password + clean session
            0x00, 60,                               // keep-alive
            0x00, 0x03, (byte)'d', (byte)'e', (byte)'v',
            0x00, 0x01, (byte)'u',
            0x00, 0x02, (byte)'p', (byte)'w',
        ];
        Assert.Equal(expected, bytes);

        var anonymous = MqttPacketWriter.ToArray(w => MqttPacketWriter.WriteConnect(w, new ConnectFields("", 0, false, null, null)));
        Assert.Equal(0x00, anonymous[9]);
        Assert.Throws<ArgumentException>(() => MqttPacketWriter.ToArray(w => MqttPacketWriter.WriteConnect(w, new ConnectFields("x", 0, true, null, [1]))));
    }

    [Fact]
    public void Subscribe_pubAck_ping_and_disconnect_have_the_spec_bytes()
    {
        Assert.Equal(
            new byte[] { 0x82, 0x0C, 0x12, 0x34, 0x00, 0x03, (byte)'a', (byte)'/', (byte)'#', 0x01, 0x00, 0x01, (byte)'+', 0x00 },
            MqttPacketWriter.ToArray(w => MqttPacketWriter.WriteSubscribe(w, 0x1234, [("a/#", MqttQos.AtLeastOnce), ("+", MqttQos.AtMostOnce)])));
        Assert.Equal(new byte[] { 0x40, 0x02, 0xBE, 0xEF }, MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePubAck(w, 0xBEEF)));
        Assert.Equal(new byte[] { 0xC0, 0x00 }, MqttPacketWriter.ToArray(MqttPacketWriter.WritePingReq));
        Assert.Equal(new byte[] { 0xE0, 0x00 }, MqttPacketWriter.ToArray(MqttPacketWriter.WriteDisconnect));
    }

    [Theory]
    [InlineData(0, MqttQos.AtMostOnce, false, false)]
    [InlineData(5, MqttQos.AtLeastOnce, true, true)]
    [InlineData(121, MqttQos.AtMostOnce, false, false)] // remaining length 127: the largest 1-byte length
    [InlineData(122, MqttQos.AtMostOnce, true, false)]  // 128: the smallest 2-byte length
    [InlineData(16_384, MqttQos.AtLeastOnce, false, true)]
    [InlineData(2_097_152, MqttQos.AtLeastOnce, false, false)]
    public void Publish_round_trips(int payloadLength, MqttQos qos, bool retain, bool duplicate)
    {
        var payload = new byte[payloadLength];
        new Random(payloadLength).NextBytes(payload);
        var bytes = MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePublish(w, "a/b", payload, qos, retain, duplicate, 77));
        var sequence = new ReadOnlySequence<byte>(bytes);

        Assert.True(MqttPacketReader.TryRead(ref sequence, int.MaxValue, out var packet));
        Assert.True(sequence.IsEmpty);
        var publish = Assert.IsType<PublishPacket>(packet);
        Assert.Equal("a/b", publish.Topic);
        Assert.Equal(qos, publish.Qos);
        Assert.Equal(retain, publish.Retain);
        Assert.Equal(duplicate, publish.Duplicate);
        Assert.Equal(qos == MqttQos.AtMostOnce ? 0 : 77, publish.PacketId);
        Assert.Equal(payload, publish.Payload.ToArray());
    }

    [Fact]
    public void Broker_packets_decode()
    {
        var sequence = new ReadOnlySequence<byte>(new byte[]
        {
            0x20, 0x02, 0x01, 0x00,             // CONNACK, session present, accepted
            0x90, 0x04, 0x00, 0x09, 0x01, 0x80, // SUBACK id 9: QoS 1, failure
            0x40, 0x02, 0x00, 0x0A,             // PUBACK id 10
            0xD0, 0x00,                         // PINGRESP
        });
        var packets = new List<MqttPacket>();
        while (MqttPacketReader.TryRead(ref sequence, 1024, out var packet))
        {
            packets.Add(packet);
        }

        Assert.True(sequence.IsEmpty);
        Assert.Equal(new ConnAckPacket(true, 0), packets[0]);
        var subAck = Assert.IsType<SubAckPacket>(packets[1]);
        Assert.Equal(9, subAck.PacketId);
        Assert.Equal(new byte[] { 0x01, 0x80 }, subAck.ReturnCodes);
        Assert.Equal(new PubAckPacket(10), packets[2]);
        Assert.IsType<PingRespPacket>(packets[3]);
    }

    [Theory]
    [InlineData(new byte[] { 0x20, 0x03, 0x00, 0x00, 0x00 })]        // CONNACK too long
    [InlineData(new byte[] { 0x21, 0x02, 0x00, 0x00 })]              // CONNACK with flags
    [InlineData(new byte[] { 0x36, 0x05, 0x00, 0x01, (byte)'a', 0x00, 0x01 })] // PUBLISH QoS 3
    [InlineData(new byte[] { 0x32, 0x05, 0x00, 0x01, (byte)'a', 0x00, 0x00 })] // PUBLISH QoS 1 with packet id 0
    [InlineData(new byte[] { 0x30, 0x04, 0x00, 0x01, (byte)'#', 0x00 })]       // PUBLISH to a wildcard topic
    [InlineData(new byte[] { 0x30, 0x04, 0x00, 0x05, (byte)'a', 0x00 })]       // topic longer than the packet
    [InlineData(new byte[] { 0x30, 0x03, 0x00, 0x01, 0xFF })]                  // topic not UTF-8
    [InlineData(new byte[] { 0x90, 0x03, 0x00, 0x01, 0x03 })]                  // SUBACK return code 3
    [InlineData(new byte[] { 0x82, 0x00 })]                                    // SUBSCRIBE with flags 2 is fine…
    [InlineData(new byte[] { 0x80, 0x00 })]                                    // …but not with flags 0
    [InlineData(new byte[] { 0x00, 0x00 })]                                    // packet type 0
    public void Malformed_packets_are_protocol_errors(byte[] bytes)
    {
        var sequence = new ReadOnlySequence<byte>(bytes);
        if (bytes[0] == 0x82)
        {
            Assert.True(MqttPacketReader.TryRead(ref sequence, 1024, out var raw));
            Assert.Equal(MqttPacketType.Subscribe, raw.Type);
            return;
        }

        Assert.Throws<MqttProtocolException>(() => MqttPacketReader.TryRead(ref sequence, 1024, out _));
    }

    [Fact]
    public void A_packet_over_the_size_limit_is_refused_before_it_is_buffered()
    {
        // Only the fixed header has arrived, announcing 1 MB.
        var sequence = new ReadOnlySequence<byte>(new byte[] { 0x30, 0x80, 0x80, 0x40 });
        var error = Assert.Throws<MqttProtocolException>(() => MqttPacketReader.TryRead(ref sequence, 64 * 1024, out _));
        Assert.Contains("exceeds the limit", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Packets_split_byte_by_byte_decode_the_same()
    {
        var large = Encoding.UTF8.GetBytes(new string('x', 20_000));
        var stream = Concat(
            [0x20, 0x02, 0x00, 0x00],
            MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePublish(w, "t/ü", "héllo"u8, MqttQos.AtLeastOnce, false, false, 3)),
            MqttPacketWriter.ToArray(w => MqttPacketWriter.WritePublish(w, "big", large, MqttQos.AtMostOnce, true, false, 0)),
            [0xD0, 0x00],
            [0x90, 0x03, 0x00, 0x02, 0x00]);

        var pipe = new Pipe();
        var feeding = Task.Run(async () =>
        {
            foreach (var b in stream)
            {
                await pipe.Writer.WriteAsync(new[] { b });
            }

            await pipe.Writer.CompleteAsync();
        });

        var packets = new List<MqttPacket>();
        while (await MqttPacketReader.ReadAsync(pipe.Reader, 1 << 20, CancellationToken.None) is { } packet)
        {
            packets.Add(packet);
        }

        await feeding;
        Assert.Equal(5, packets.Count);
        Assert.IsType<ConnAckPacket>(packets[0]);
        var small = Assert.IsType<PublishPacket>(packets[1]);
        Assert.Equal("t/ü", small.Topic);
        Assert.Equal("héllo", Encoding.UTF8.GetString(small.Payload.Span));
        Assert.Equal(3, small.PacketId);
        var big = Assert.IsType<PublishPacket>(packets[2]);
        Assert.Equal(large, big.Payload.ToArray());
        Assert.True(big.Retain);
        Assert.IsType<PingRespPacket>(packets[3]);
        Assert.Equal(2, Assert.IsType<SubAckPacket>(packets[4]).PacketId);
    }

    [Fact]
    public async Task Several_packets_in_one_read_are_all_returned()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(new byte[] { 0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02, 0xD0, 0x00 });
        await pipe.Writer.CompleteAsync();

        Assert.Equal(new PubAckPacket(1), await MqttPacketReader.ReadAsync(pipe.Reader, 1024, CancellationToken.None));
        Assert.Equal(new PubAckPacket(2), await MqttPacketReader.ReadAsync(pipe.Reader, 1024, CancellationToken.None));
        Assert.IsType<PingRespPacket>(await MqttPacketReader.ReadAsync(pipe.Reader, 1024, CancellationToken.None));
        Assert.Null(await MqttPacketReader.ReadAsync(pipe.Reader, 1024, CancellationToken.None));
    }

    [Fact]
    public async Task A_stream_that_ends_inside_a_packet_is_a_protocol_error()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(new byte[] { 0x30, 0x0A, 0x00, 0x01, (byte)'a' });
        await pipe.Writer.CompleteAsync();
        var error = await Assert.ThrowsAsync<MqttProtocolException>(async () => await MqttPacketReader.ReadAsync(pipe.Reader, 1024, CancellationToken.None));
        Assert.Contains("middle of a packet", error.Message, StringComparison.Ordinal);
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
