using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// <c>bench/relay-delay.py</c> reads a loopback capture of a proxy's two legs and pairs each stamped chunk's packet from
/// the mock with the proxy's packet of the same chunk: the delay is the difference of their capture times, a stamp cut
/// across two packets is still found, and chunks seen on one leg only are counted apart, not paired.
/// </summary>
public sealed class RelayDelayTests : IDisposable
{
    private const int Mock = 41_000, Gateway = 42_000, Client = 43_000, GatewayOut = 44_000;
    private static readonly string Script = Path.Combine(Fixtures.RepositoryRoot, "bench", "relay-delay.py");
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-relay-delay-");

    [Fact]
    public async Task Pairs_each_chunk_across_the_two_legs_and_counts_the_unpaired()
    {
        var capture = new PcapWriter();
        // Chunk A: the mock sends it at 100.0 ms (stamped 99.0), the gateway at 100.5.
        capture.Add(100.0, Mock, GatewayOut, Frame("99.000"));
        capture.Add(100.5, Gateway, Client, Frame("99.000"));
        // Chunk B: its stamp cut over two of the mock's packets (200.0 and 200.2), the gateway sends it at 203.2.
        var b = Frame("123.500");
        var cut = b.IndexOf("23.500", StringComparison.Ordinal);
        capture.Add(200.0, Mock, GatewayOut, b[..cut]);
        capture.Add(200.2, Mock, GatewayOut, b[cut..]);
        capture.Add(203.2, Gateway, Client, b);
        // Chunk C: only on the gateway's leg (its upstream packet came before the capture began).
        capture.Add(210.0, Gateway, Client, Frame("50.000"));
        // Chunk D: only on the mock's leg (not relayed yet when the capture ended); and a packet of another connection.
        capture.Add(300.0, Mock, GatewayOut, Frame("299.900"));
        capture.Add(301.0, 5432, 5433, Frame("299.900"));
        var file = Path.Combine(_root.FullName, "legs.pcap");
        await File.WriteAllBytesAsync(file, capture.ToArray());

        var run = await CliProcess.RunAsync([Script, file, "--upstream-port", $"{Mock}", "--gateway-port", $"{Gateway}", "--json"], executable: "python3");
        Assert.True(run.ExitCode == 0, run.ToString());
        using var result = JsonDocument.Parse(run.Stdout);
        var r = result.RootElement;
        var added = r.GetProperty("gateway_added_ms");
        Assert.Equal(2, added.GetProperty("n").GetInt32());
        Assert.Equal(0.5, added.GetProperty("min").GetDouble(), 3); // A: 100.5 − 100.0
        Assert.Equal(3.0, added.GetProperty("max").GetDouble(), 3); // B: 203.2 − 200.2, the packet that completed its stamp
        var lag = r.GetProperty("mock_lag_ms");
        Assert.Equal(3, lag.GetProperty("n").GetInt32()); // A 1.0, B 76.7, D 0.1
        Assert.Equal(76.7, lag.GetProperty("max").GetDouble(), 3);
        Assert.Equal(1, r.GetProperty("unmatched_gateway_chunks").GetInt32());
        Assert.Equal(1, r.GetProperty("upstream_chunks_not_relayed_in_capture").GetInt32());

        var text = await CliProcess.RunAsync([Script, file, "--upstream-port", $"{Mock}", "--gateway-port", $"{Gateway}"], executable: "python3");
        Assert.Contains("relay-delay: 2 chunks seen on both legs; gateway send − mock send (ms): p50 ", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_that_is_not_a_capture_is_refused_with_what_to_do()
    {
        var file = Path.Combine(_root.FullName, "notes.txt");
        await File.WriteAllTextAsync(file, "this is not a packet capture at all");
        var run = await CliProcess.RunAsync([Script, file, "--upstream-port", "1", "--gateway-port", "2"], executable: "python3");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("is not a classic pcap file", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("tcpdump -w", run.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => _root.Delete(recursive: true);

    private static string Frame(string stamp) =>
        $"data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t={stamp};\"}}}}]}}\n\n";

    /// <summary>A classic pcap file of Ethernet / IPv4 / TCP packets, as tcpdump -w writes for the loopback interface.</summary>
    private sealed class PcapWriter
    {
        private readonly MemoryStream _out = new();

        public PcapWriter()
        {
            Span<byte> head = stackalloc byte[24];
            BinaryPrimitives.WriteUInt32LittleEndian(head, 0xa1b2c3d4);
            BinaryPrimitives.WriteUInt16LittleEndian(head[4..], 2);
            BinaryPrimitives.WriteUInt16LittleEndian(head[6..], 4);
            BinaryPrimitives.WriteUInt32LittleEndian(head[16..], 262_144);
            BinaryPrimitives.WriteUInt32LittleEndian(head[20..], 1); // Ethernet
            _out.Write(head);
        }

        public void Add(double atMs, int sourcePort, int destinationPort, string payload)
        {
            var data = Encoding.ASCII.GetBytes(payload);
            var packet = new byte[14 + 20 + 20 + data.Length];
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(12), 0x0800);
            packet[14] = 0x45; // IPv4, 20-byte header
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(16), (ushort)(40 + data.Length));
            packet[14 + 9] = 6; // TCP
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(34), (ushort)sourcePort);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(36), (ushort)destinationPort);
            packet[34 + 12] = 5 << 4; // 20-byte TCP header
            data.CopyTo(packet, 54);

            Span<byte> record = stackalloc byte[16];
            var micros = (long)Math.Round(atMs * 1000);
            BinaryPrimitives.WriteUInt32LittleEndian(record, (uint)(micros / 1_000_000));
            BinaryPrimitives.WriteUInt32LittleEndian(record[4..], (uint)(micros % 1_000_000));
            BinaryPrimitives.WriteUInt32LittleEndian(record[8..], (uint)packet.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(record[12..], (uint)packet.Length);
            _out.Write(record);
            _out.Write(packet);
        }

        public byte[] ToArray() => _out.ToArray();
    }
}
