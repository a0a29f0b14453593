using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Http;
using Sluice.Providers;
using Sluice.Testing;
using static Sluice.Gateway.Tests.Observability.MetricsScrape;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>A client that stops reading: bounded buffering, then the stream is dropped with a reason.</summary>
public sealed class SlowReaderTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_client_that_stops_reading_pauses_the_upstream_and_is_dropped_after_the_slow_client_time(bool resumable)
    {
        // An upstream that streams ~1 KiB chunks for as long as anyone reads, counting what it managed to send. A raw
        // socket, not Kestrel: Kestrel discards writes after the peer has gone (until it notices), which would count
        // bytes nobody received; a socket's send blocks when the gateway stops reading and fails once it has closed.
        long sent = 0;
        var content = new string('x', 1000);
        var chunk = Encoding.UTF8.GetBytes(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + content + "\"},\"finish_reason\":null}]}\n\n");
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var stopUpstream = new CancellationTokenSource();
        var upstreamTask = Task.Run(async () =>
        {
            using var connection = await listener.AcceptSocketAsync(stopUpstream.Token);
            var head = new List<byte>();
            var one = new byte[1];
            while (head.Count < 4 || head[^4] != '\r' || head[^3] != '\n' || head[^2] != '\r' || head[^1] != '\n')
            {
                if (await connection.ReceiveAsync(one, stopUpstream.Token) == 0)
                {
                    return;
                }

                head.Add(one[0]);
            }

            // The request body (small, sent with the head or right after) is left unread: the answer does not depend on it.
            await connection.SendAsync("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"u8.ToArray(), stopUpstream.Token);
            try
            {
                while (!stopUpstream.IsCancellationRequested)
                {
                    await connection.SendAsync(chunk, stopUpstream.Token);
                    Interlocked.Add(ref sent, chunk.Length);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        });
        var upstreamUrl = $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Streaming.Resumable = resumable;
            o.Streaming.SlowClientTimeoutSeconds = 1;
            o.Models = [new ModelOptions { Name = "up", Provider = "openai", BaseUrl = upstreamUrl + "/v1" }];
        });

        // A raw socket with a small receive buffer that sends the request and then never reads.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        await socket.ConnectAsync(IPAddress.Loopback, gateway.BaseAddress.Port);
        var body = """{"model":"up","messages":[{"role":"user","content":"Hi"}],"stream":true}""";
        var request = $"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n{body}";
        await socket.SendAsync(Encoding.ASCII.GetBytes(request));

        // Dropped with its reason after about the slow-client time (plus the time to fill the buffers).
        var record = (await gateway.Usage.WaitForCountAsync(1, TimeSpan.FromSeconds(30))) > 0 ? gateway.Usage.Records[0] : null;
        Assert.NotNull(record);
        if (resumable)
        {
            // A resumable stream is detached like a client that left: abandoned, kept for a resume.
            Assert.True(record.Status == Accounting.UsageStatus.Abandoned, $"{record.Status} {record.ErrorCode}");
        }
        else
        {
            Assert.Equal(Accounting.UsageStatus.Failed, record.Status);
            Assert.Equal("client_too_slow", record.ErrorCode);
        }

        var text = await WaitForAsync(gateway.Client, 1, "sluice_slow_client_drops_total", ("transport", "http"));
        Assert.Equal(1, Value(text, "sluice_slow_client_drops_total", ("transport", "http")));

        // What the upstream could send is bounded by socket buffers and Kestrel's response buffer, not by time.
        var before = Interlocked.Read(ref sent);
        Assert.True(before < 64L * 1024 * 1024, $"the upstream sent {before} bytes");
        await Task.Delay(500);
        Assert.True(Interlocked.Read(ref sent) - before < 1024 * 1024, "the upstream kept streaming into the gateway after the drop");

        // The connection is closed by the gateway.
        var buffer = new byte[64 * 1024];
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        var closed = false;
        while (!closed && Stopwatch.GetTimestamp() < deadline)
        {
            try
            {
                closed = await socket.ReceiveAsync(buffer) == 0;
            }
            catch (SocketException)
            {
                closed = true;
            }
        }

        Assert.True(closed);
        await stopUpstream.CancelAsync();
        listener.Stop();
        await upstreamTask.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
