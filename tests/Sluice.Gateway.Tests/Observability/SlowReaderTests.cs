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
        // An upstream that streams ~1 KiB chunks for as long as anyone reads, counting what it managed to send.
        long sent = 0;
        var content = new string('x', 1000);
        var chunk = Encoding.UTF8.GetBytes(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + content + "\"},\"finish_reason\":null}]}\n\n");
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            try
            {
                while (!context.RequestAborted.IsCancellationRequested)
                {
                    await context.Response.Body.WriteAsync(chunk, context.RequestAborted);
                    await context.Response.Body.FlushAsync(context.RequestAborted);
                    Interlocked.Add(ref sent, chunk.Length);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException)
            {
            }
        });
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Streaming.Resumable = resumable;
            o.Streaming.SlowClientTimeoutSeconds = 1;
            o.Models = [new ModelOptions { Name = "up", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1" }];
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
    }
}
