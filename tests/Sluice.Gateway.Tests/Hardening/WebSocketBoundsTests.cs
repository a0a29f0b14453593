using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Providers;
using Sluice.Testing;
using Xunit.Abstractions;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// What one WebSocket client can make the gateway hold: a client that asks for endless answers and never reads keeps
/// server memory bounded (the outbox fills, generation pauses — the upstream itself stops being read — and the requests
/// are cancelled with <c>client_too_slow</c>); requests beyond the per-socket and per-key caps are refused alone; a
/// WebSocket request holds a concurrency lease exactly like an HTTP call.
/// </summary>
public sealed class WebSocketBoundsTests
{
    [Fact]
    public async Task The_request_beyond_the_per_socket_cap_is_refused_while_the_others_go_on()
    {
        await using var gateway = await TestGateway.StartAsync(o => o.WebSocket.MaxConcurrentRequestsPerSocket = 2);
        using var socket = await ConnectAsync(gateway.BaseAddress);
        await SendAsync(socket, Paced("a"));
        await SendAsync(socket, Paced("b"));
        await SendAsync(socket, Paced("c"));

        var ends = await ReadEndsAsync(socket, 3);
        Assert.Equal(("error", "too_many_requests"), (ends["c"].GetProperty("type").GetString(), ends["c"].GetProperty("code").GetString()));
        Assert.Contains("MaxConcurrentRequestsPerSocket", ends["c"].GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal("done", ends["a"].GetProperty("type").GetString());
        Assert.Equal("done", ends["b"].GetProperty("type").GetString());
    }

    [Fact]
    public async Task Messages_arriving_at_once_count_against_the_callers_share_of_request_bytes_and_the_socket_past_it_is_closed()
    {
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Limits.MaxRequestBodyBytes = 1024 * 1024;
            o.Limits.MaxBodyBytesPerClient = 2 * 1024 * 1024;
        });
        using var first = await ConnectAsync(gateway.BaseAddress);
        using var second = await ConnectAsync(gateway.BaseAddress);
        using var third = await ConnectAsync(gateway.BaseAddress);
        var part = new byte[900 * 1024];
        part.AsSpan().Fill((byte)' ');
        part[0] = (byte)'{';
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        // Two messages of 900 KB not finished: the caller's 2 MiB are nearly all held. A third closes its socket (1008).
        await first.SendAsync(part, WebSocketMessageType.Text, endOfMessage: false, timeout.Token);
        await second.SendAsync(part, WebSocketMessageType.Text, endOfMessage: false, timeout.Token);
        await Task.Delay(300);
        await third.SendAsync(part, WebSocketMessageType.Text, endOfMessage: false, timeout.Token);
        var closed = await third.ReceiveAsync(new byte[1024], timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, closed.MessageType);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, third.CloseStatus);
        Assert.Contains("Limits:MaxBodyBytesPerClient", third.CloseStatusDescription, StringComparison.Ordinal);

        // A finished message gives its bytes back: the first socket's request runs, and a new one fits again.
        await first.SendAsync(Encoding.UTF8.GetBytes("\"type\":\"chat\",\"id\":\"r1\",\"model\":\"sim-fast\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}"), WebSocketMessageType.Text, endOfMessage: true, timeout.Token);
        var ends = await ReadEndsAsync(first, 1);
        Assert.Equal("done", ends["r1"].GetProperty("type").GetString());
        using var fourth = await ConnectAsync(gateway.BaseAddress);
        await fourth.SendAsync(part, WebSocketMessageType.Text, endOfMessage: false, timeout.Token);
        await fourth.SendAsync(Encoding.UTF8.GetBytes("}"), WebSocketMessageType.Text, endOfMessage: true, timeout.Token);
        var answer = await fourth.ReceiveAsync(new byte[4096], timeout.Token);
        Assert.Equal(WebSocketMessageType.Text, answer.MessageType);
    }

    [Fact]
    public async Task The_request_beyond_the_per_key_cap_is_refused_on_any_socket_while_the_others_go_on()
    {
        await using var gateway = await TestGateway.StartAsync(o => o.WebSocket.MaxConcurrentRequestsPerKey = 3);
        using var first = await ConnectAsync(gateway.BaseAddress);
        using var second = await ConnectAsync(gateway.BaseAddress);
        // The first socket's two answers run for 8 s (160 tokens at 20/s), so they still hold the key's slots when b2
        // arrives even on a loaded machine: with 1.5 s answers a fresh-clone CI run once saw one end before b2 came.
        await SendAsync(first, Paced("a1", maxTokens: 160));
        await SendAsync(first, Paced("a2", maxTokens: 160));
        await ReadFirstChunkAsync(first);
        await SendAsync(second, Paced("b1"));
        await SendAsync(second, Paced("b2"));

        var onSecond = await ReadEndsAsync(second, 2);
        Assert.Equal("done", onSecond["b1"].GetProperty("type").GetString());
        Assert.Equal(("error", "too_many_requests"), (onSecond["b2"].GetProperty("type").GetString(), onSecond["b2"].GetProperty("code").GetString()));
        Assert.Contains("MaxConcurrentRequestsPerKey", onSecond["b2"].GetProperty("error").GetString(), StringComparison.Ordinal);
        var onFirst = await ReadEndsAsync(first, 2);
        Assert.All(onFirst.Values, end => Assert.Equal("done", end.GetProperty("type").GetString()));
    }

    [Fact]
    public async Task A_WebSocket_request_holds_a_concurrency_lease_like_an_HTTP_call()
    {
        await using var databases = new SqliteDatabases();
        await using var host = await TenancyHost.StartAsync(await databases.CreateAsync());
        var (_, key) = await host.NewTeamAsync(10, """, "max_parallel_requests": 1""");
        using var http = host.NewClient(key);

        // While a WebSocket request runs, the team's only slot is taken: an HTTP call is refused.
        using var socket = await ConnectAsync(host.BaseAddress, key);
        await SendAsync(socket, Paced("long", maxTokens: 60));
        await ReadFirstChunkAsync(socket);
        (await TenancyHost.ChatAsync(http)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "concurrency_limit_exceeded");

        // Cancelled, it frees the slot at once.
        await SendAsync(socket, """{"type": "cancel", "id": "long"}""");
        Assert.Equal("cancelled", (await ReadUntilEndAsync(socket, "long")).GetProperty("code").GetString());
        (await TenancyHost.ChatAsync(http)).AssertStatus(HttpStatusCode.OK);

        // And the other way round: an HTTP stream holds the slot, a WebSocket request is refused with the same code.
        using var streaming = await http.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = TenancyHost.Json("""{"model": "sim-paced", "stream": true, "max_tokens": 40, "messages": [{"role": "user", "content": "rivers"}]}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, streaming.StatusCode);
        await SendAsync(socket, Paced("refused"));
        var refused = await ReadUntilEndAsync(socket, "refused");
        Assert.Equal(("error", "concurrency_limit_exceeded"), (refused.GetProperty("type").GetString(), refused.GetProperty("code").GetString()));
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }

    internal static string Paced(string id, int maxTokens = 30) =>
        $$"""{"type": "chat", "id": "{{id}}", "model": "sim-paced", "messages": [{"role": "user", "content": "Tell me about rivers"}], "max_tokens": {{maxTokens}}}""";

    internal static async Task<ClientWebSocket> ConnectAsync(Uri baseAddress, string? key = null)
    {
        var socket = new ClientWebSocket();
        if (key is not null)
        {
            socket.Options.SetRequestHeader("Authorization", "Bearer " + key);
        }

        var uri = new UriBuilder(baseAddress) { Scheme = "ws", Path = "/api/llm/ws" }.Uri;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(uri, cts.Token);
        return socket;
    }

    internal static Task SendAsync(ClientWebSocket socket, string json) => SendAsync(socket, Encoding.UTF8.GetBytes(json));

    internal static Task SendAsync(ClientWebSocket socket, byte[] message) =>
        socket.SendAsync(message, WebSocketMessageType.Text, true, CancellationToken.None);

    internal static async Task<JsonElement> ReceiveAsync(ClientWebSocket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var buffer = new byte[64 * 1024];
        var total = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(total), cts.Token);
            total += result.Count;
        }
        while (!result.EndOfMessage);

        Assert.Equal(WebSocketMessageType.Text, result.MessageType);
        return JsonDocument.Parse(buffer.AsMemory(0, total)).RootElement.Clone();
    }

    /// <summary>Reads until request <paramref name="id"/> ends; returns its done or error message.</summary>
    internal static async Task<JsonElement> ReadUntilEndAsync(ClientWebSocket socket, string id)
    {
        while (true)
        {
            var message = await ReceiveAsync(socket);
            if (message.TryGetProperty("id", out var of) && of.GetString() == id && message.GetProperty("type").GetString() is "done" or "error")
            {
                return message;
            }
        }
    }

    private static async Task<Dictionary<string, JsonElement>> ReadEndsAsync(ClientWebSocket socket, int count)
    {
        var ends = new Dictionary<string, JsonElement>();
        while (ends.Count < count)
        {
            var message = await ReceiveAsync(socket);
            if (message.GetProperty("type").GetString() is "done" or "error")
            {
                ends[message.GetProperty("id").GetString()!] = message;
            }
        }

        return ends;
    }

    private static async Task ReadFirstChunkAsync(ClientWebSocket socket)
    {
        while ((await ReceiveAsync(socket)).GetProperty("type").GetString() != "chunk")
        {
        }
    }

    internal static long ManagedHeap()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    internal static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for the condition");
            await Task.Delay(50);
        }
    }
}

/// <summary>
/// The memory half of <see cref="WebSocketBoundsTests"/>: it measures the process-wide managed heap, so it runs alone
/// (the soak collection is not run in parallel with anything).
/// </summary>
[Collection(SoakCollection.Name)]
public sealed class WebSocketMemoryTests(ITestOutputHelper output)
{
    private const string OpenAIChunk =
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"endless river text \"},\"finish_reason\":null}]}\n\n";

    [Fact]
    public async Task A_client_that_never_reads_keeps_memory_bounded_pauses_generation_and_is_cancelled_after_the_timeout()
    {
        // An upstream that streams for ever, as fast as the gateway reads, and counts what it managed to write.
        long written = 0;
        var aborted = 0;
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            var chunk = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(OpenAIChunk, 16)));
            try
            {
                while (!context.RequestAborted.IsCancellationRequested)
                {
                    await context.Response.Body.WriteAsync(chunk, context.RequestAborted);
                    await context.Response.Body.FlushAsync(context.RequestAborted);
                    Interlocked.Add(ref written, chunk.Length);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException)
            {
            }

            Interlocked.Increment(ref aborted);
        });
        const double SlowClientSeconds = 6;
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Models.Add(new ModelOptions { Name = "endless", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1" });
            o.WebSocket.SlowClientTimeoutSeconds = SlowClientSeconds;
        });

        // Warm up (JIT, pools) with one complete request read normally, then take the baseline.
        using (var warm = await WebSocketBoundsTests.ConnectAsync(gateway.BaseAddress))
        {
            await WebSocketBoundsTests.SendAsync(warm, """{"type": "chat", "id": "w", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}""");
            Assert.Equal("done", (await WebSocketBoundsTests.ReadUntilEndAsync(warm, "w")).GetProperty("type").GetString());
        }

        var baseline = WebSocketBoundsTests.ManagedHeap();

        // Eight requests (the per-socket cap) for endless answers, and the client never reads.
        using var socket = await WebSocketBoundsTests.ConnectAsync(gateway.BaseAddress);
        var started = DateTime.UtcNow;
        for (var i = 0; i < 8; i++)
        {
            await WebSocketBoundsTests.SendAsync(socket, $$"""{"type": "chat", "id": "r{{i}}", "model": "endless", "messages": [{"role": "user", "content": "go on"}]}""");
        }

        // The buffers fill within a second on a quiet machine, later on a loaded one: wait (before the slow-client
        // timeout) for a second in which the upstream could write less than the bound below, or fail with what it wrote.
        await Task.Delay(TimeSpan.FromSeconds(1));
        var writtenEarly = Interlocked.Read(ref written);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var writtenLater = Interlocked.Read(ref written);
        while (writtenLater - writtenEarly >= 256 * 1024 && DateTime.UtcNow - started < TimeSpan.FromSeconds(SlowClientSeconds - 1.5))
        {
            writtenEarly = writtenLater;
            await Task.Delay(TimeSpan.FromSeconds(1));
            writtenLater = Interlocked.Read(ref written);
        }

        var during = WebSocketBoundsTests.ManagedHeap();
        output.WriteLine(
            $"managed heap: baseline {baseline / 1e6:F1} MB, stalled {during / 1e6:F1} MB (+{(during - baseline) / 1e6:F1} MB); " +
            $"working set {Environment.WorkingSet / 1e6:F0} MB; upstream wrote {writtenEarly / 1e6:F2} MB then {writtenLater / 1e6:F2} MB");

        // Bounded: the outbox (256 messages), one pending message per request, Kestrel's and the upstream reader's buffers.
        Assert.True(during - baseline < 16_000_000, $"the managed heap grew by {(during - baseline) / 1e6:F1} MB while the client did not read");

        // Paused: once the buffers are full nothing more is read from the upstream (its writes block).
        Assert.True(writtenLater - writtenEarly < 256 * 1024, $"the upstream kept streaming: {writtenEarly} then {writtenLater} bytes");
        Assert.Equal(0, Volatile.Read(ref aborted));

        // Cancelled after the configured time (not before), the upstream requests aborted, all recorded as client_too_slow.
        Assert.Equal(9, await gateway.Usage.WaitForCountAsync(9, TimeSpan.FromSeconds(SlowClientSeconds + 15)));
        var slow = gateway.Usage.Records.Where(r => r.Model == "endless").ToList();
        Assert.Equal(8, slow.Count);
        Assert.All(slow, r => Assert.Equal((UsageStatus.Failed, "client_too_slow"), (r.Status, r.ErrorCode)));
        Assert.All(slow, r => Assert.True(r.Duration >= TimeSpan.FromSeconds(SlowClientSeconds - 0.5), $"cancelled after {r.Duration}"));
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(SlowClientSeconds));

        // The upstream server notices each aborted request on its next write; on a machine busy with other test
        // assemblies that can take a while, so the bound is generous (it is about "aborted", not "how fast").
        await WebSocketBoundsTests.WaitUntilAsync(() => Volatile.Read(ref aborted) == 8, TimeSpan.FromSeconds(40));

        // The socket is still usable: once the client reads again, a new request is answered.
        await WebSocketBoundsTests.SendAsync(socket, """{"type": "chat", "id": "after", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}""");
        Assert.Equal("done", (await WebSocketBoundsTests.ReadUntilEndAsync(socket, "after")).GetProperty("type").GetString());
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }
}
