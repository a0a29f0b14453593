using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Sluice.Providers.Upstream;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>
/// <see cref="Http11Handler"/> against a raw TCP server that writes exactly the bytes each test needs: body framings,
/// connection reuse and its limits, and what a broken answer becomes.
/// </summary>
public sealed class Http11HandlerTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    [Fact]
    public void A_connection_read_buffer_lives_on_the_pinned_object_heap()
    {
        // It lives as long as the connection: thousands of open upstream connections' buffers in gen 0 were copied by
        // every collection that promoted them (bench/proxied-streams.sh). A new small array would be in gen 0.
        using var handler = new Http11Handler(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(60));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var connection = new Http11Connection(handler, socket, "127.0.0.1:1");

        Assert.Equal(Http11Handler.BufferBytes, connection.ReadBuffer.Length);
        Assert.Equal(GC.MaxGeneration, GC.GetGeneration(connection.ReadBuffer));
    }

    [Fact]
    public async Task A_chunked_body_with_extensions_and_trailers_split_into_single_bytes_arrives_whole_and_the_connection_is_reused()
    {
        const string Body = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
        var wire = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r-1\r\n\r\n"
            + "e;ext=1\r\n" + Body[..14] + "\r\n" + "F\r\n" + Body[14..] + "\r\n" + "0\r\nX-Trailer: t\r\n\r\n";
        await using var server = await RawServer.StartAsync(_ => [.. Encoding.ASCII.GetBytes(wire).Select(b => new[] { b })]);
        using var client = Client();

        for (var i = 0; i < 2; i++)
        {
            using var response = await client.PostAsync(server.Url, new StringContent("{}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
            Assert.Equal("r-1", response.Headers.GetValues("X-Request-Id").Single());
            Assert.Equal(Body, await response.Content.ReadAsStringAsync());
        }

        Assert.Equal(1, server.Connections);
        Assert.Equal(2, server.Requests.Count);
        Assert.All(server.Requests, r => Assert.StartsWith("POST / HTTP/1.1\r\nHost: 127.0.0.1:", r, StringComparison.Ordinal));
        Assert.All(server.Requests, r => Assert.Contains("\r\nContent-Length: 2\r\n", r, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Content_length_bodies_reuse_the_connection_and_connection_close_does_not()
    {
        var replies = new[]
        {
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthird",
        };
        var next = 0;
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes(replies[Interlocked.Increment(ref next) - 1])], closeAfter: r => r.Contains("second", StringComparison.Ordinal));
        using var client = Client();

        Assert.Equal("first", await (await client.PostAsync(server.Url, new StringContent("first"))).Content.ReadAsStringAsync());
        Assert.Equal("second", await (await client.PostAsync(server.Url, new StringContent("second"))).Content.ReadAsStringAsync());
        Assert.Equal("third", await (await client.PostAsync(server.Url, new StringContent("third"))).Content.ReadAsStringAsync());

        Assert.Equal(2, server.Connections);
    }

    [Fact]
    public async Task A_pooled_connection_left_idle_is_closed_without_another_request()
    {
        // After a burst the pool holds a connection per stream; idle past the timeout, each is closed by the sweep — not
        // only when a later request happens to look at it (none may come).
        await using var server = await RawServer.StartAsync(_ => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray()]);
        using var client = new HttpClient(new Http11Handler(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(300))) { Timeout = Limit };

        Assert.Equal("ok", await (await client.PostAsync(server.Url, new StringContent("x"))).Content.ReadAsStringAsync());
        Assert.False(server.Closed.Task.IsCompleted, "pooled, not closed, right after its answer");
        await server.Closed.Task.WaitAsync(Limit);
    }

    [Fact]
    public async Task A_pooled_connection_in_use_more_often_than_the_idle_timeout_survives_the_sweeps()
    {
        await using var server = await RawServer.StartAsync(_ => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray()]);
        using var client = new HttpClient(new Http11Handler(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(2))) { Timeout = Limit };

        // Every 100 ms for 2.5 s: five sweeps (every 500 ms) find it idle for far less than 2 s.
        for (var i = 0; i < 25; i++)
        {
            Assert.Equal("ok", await (await client.PostAsync(server.Url, new StringContent("x"))).Content.ReadAsStringAsync());
            await Task.Delay(100);
        }

        Assert.Equal(1, server.Connections);
    }

    [Fact]
    public async Task A_body_without_length_or_chunks_ends_when_the_server_closes()
    {
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{\"a\":1}\n"), Encoding.ASCII.GetBytes("{\"b\":2}\n")], closeAfter: _ => true);
        using var client = Client();

        using var response = await client.PostAsync(server.Url, new StringContent("{}"));

        Assert.Equal("{\"a\":1}\n{\"b\":2}\n", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_interim_100_continue_is_skipped()
    {
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")]);
        using var client = Client();

        using var response = await client.PostAsync(server.Url, new StringContent("{}"));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal("ok", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_body_abandoned_midway_closes_its_connection_and_the_next_request_opens_another()
    {
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")], holdOpen: true);
        using var client = Client();

        using (var response = await PostHeadersAsync(client, server.Url))
        {
            var stream = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[16];
            Assert.Equal(5, await stream.ReadAsync(buffer));
        }

        Assert.True(await server.Closed.Task.WaitAsync(Limit), "the server saw the connection close");
        using var second = await PostHeadersAsync(client, server.Url);
        Assert.Equal(2, server.Connections);
    }

    [Fact]
    public async Task A_pooled_connection_the_server_closed_is_replaced_without_an_error()
    {
        // The server answers once per connection and closes it without saying so (no Connection: close).
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")], closeAfter: _ => true);
        using var client = Client();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("ok", await (await client.PostAsync(server.Url, new StringContent("{}"))).Content.ReadAsStringAsync());
            await Task.Delay(50);
        }

        Assert.Equal(3, server.Connections);
    }

    [Fact]
    public async Task An_idle_connection_with_bytes_nobody_asked_for_is_not_reused()
    {
        // The answer, then (a moment later, once the connection is back in the pool) bytes that belong to no request.
        await using var server = await RawServer.StartAsync(
            _ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Encoding.ASCII.GetBytes("junk")],
            pause: TimeSpan.FromMilliseconds(200));
        using var client = Client();

        Assert.Equal("ok", await (await client.PostAsync(server.Url, new StringContent("{}"))).Content.ReadAsStringAsync());
        // On loopback a write is in the peer's receive queue when it returns: once the server wrote "junk", it is there.
        while (server.PiecesSent < 2)
        {
            await Task.Delay(10);
        }

        Assert.Equal("ok", await (await client.PostAsync(server.Url, new StringContent("{}"))).Content.ReadAsStringAsync());

        Assert.Equal(2, server.Connections);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(50 * 1024)] // past the first rental: the buffer grows (the test server takes 64 KB per request)
    public async Task The_gateways_own_body_goes_out_whole_after_its_head(int size)
    {
        var body = Encoding.ASCII.GetBytes(new string('x', size));
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]);
        using var client = Client();
        using var content = new UpstreamBodyContent(body);
        content.Headers.ContentType = new("application/json");

        Assert.Equal("ok", await (await client.PostAsync(server.Url, content)).Content.ReadAsStringAsync());

        var request = Assert.Single(server.Requests);
        Assert.Contains($"\r\nContent-Length: {size}\r\n", request, StringComparison.Ordinal);
        Assert.Contains("\r\nContent-Type: application/json\r\n", request, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n" + Encoding.ASCII.GetString(body), request, StringComparison.Ordinal);
    }

    [Fact]
    public void A_request_is_one_buffer_head_then_body()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://up.example:8080/v1/chat/completions") { Content = new UpstreamBodyContent("{\"a\":1}"u8.ToArray()) };
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer k");

        var (buffer, length) = Http11Handler.RequestBytes(request, request.RequestUri!, "X-Fixed: 1\r\n"u8, "{\"a\":1}"u8);
        var text = Encoding.ASCII.GetString(buffer, 0, length);
        System.Buffers.ArrayPool<byte>.Shared.Return(buffer);

        Assert.StartsWith("POST /v1/chat/completions HTTP/1.1\r\nHost: up.example:8080\r\n", text, StringComparison.Ordinal);
        Assert.Contains("\r\nAuthorization: Bearer k\r\n", text, StringComparison.Ordinal);
        Assert.Contains("\r\nX-Fixed: 1\r\n", text, StringComparison.Ordinal);
        Assert.EndsWith("\r\nContent-Length: 7\r\n\r\n{\"a\":1}", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Broken_answers_are_errors_that_say_what_was_wrong()
    {
        await using var notHttp = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("SSH-2.0-OpenSSH\r\n\r\n")]);
        await using var badChunk = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")]);
        await using var cut = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")], closeAfter: _ => true);
        using var client = Client();

        var status = await Assert.ThrowsAsync<HttpRequestException>(() => client.PostAsync(notHttp.Url, new StringContent("{}")));
        Assert.Contains("status line", status.Message, StringComparison.Ordinal);

        using var chunked = await PostHeadersAsync(client, badChunk.Url);
        var size = await Assert.ThrowsAsync<IOException>(() => ReadToEndAsync(chunked));
        Assert.Contains("chunk size", size.Message, StringComparison.Ordinal);

        using var early = await PostHeadersAsync(client, cut.Url);
        var ended = await Assert.ThrowsAsync<IOException>(() => ReadToEndAsync(early));
        Assert.Contains("before the end of the response body", ended.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://127.0.0.1:8000/v1", null, null, true)]
    [InlineData("http://localhost:11434", "sluice", "1.1", true)]
    [InlineData("http://127.0.0.1:8000/v1", "dotnet", null, false)]
    [InlineData("https://api.openai.com/v1", null, null, false)]
    [InlineData("http://127.0.0.1:8000/v1", null, "2", false)]
    public void Sluices_client_serves_plain_http_11_upstreams_unless_told_otherwise(string baseUrl, string? upstreamClient, string? httpVersion, bool own)
    {
        using var catalog = new ModelCatalog(
            [new ModelOptions { Name = "m", Provider = "openai", BaseUrl = baseUrl, UpstreamClient = upstreamClient, HttpVersion = httpVersion }]);

        Assert.Equal(own, Assert.IsAssignableFrom<UpstreamChatBackend>(catalog.Models[0].Source).Transport.UsesOwnClient);
    }

    [Theory]
    [InlineData("Sluice")]
    [InlineData("httpclient")]
    [InlineData("")]
    public void Any_other_UpstreamClient_is_refused_naming_the_choices(string value)
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "m", Provider = "openai", BaseUrl = "http://127.0.0.1:8000/v1", UpstreamClient = value }]));

        Assert.Contains($"UpstreamClient \"{value}\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"sluice\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"dotnet\"", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_endless_chunk_size_line_is_an_error_not_an_ever_larger_buffer()
    {
        var endless = new string('0', 100 * 1024);
        await using var server = await RawServer.StartAsync(_ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + endless)], holdOpen: true);
        using var client = Client();
        using var response = await PostHeadersAsync(client, server.Url);

        var error = await Assert.ThrowsAsync<IOException>(() => ReadToEndAsync(response));

        Assert.Contains("longer than 64 KB", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_zero_byte_read_waits_for_the_next_bytes_and_is_not_the_end()
    {
        await using var server = await RawServer.StartAsync(
            _ => [Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n"), Encoding.ASCII.GetBytes("3\r\ntwo\r\n0\r\n\r\n")],
            pause: TimeSpan.FromMilliseconds(300));
        using var client = Client();
        using var response = await PostHeadersAsync(client, server.Url);
        var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[16];

        Assert.Equal("one", Encoding.ASCII.GetString(buffer, 0, await stream.ReadAsync(buffer)));
        var waiting = stream.ReadAsync(Memory<byte>.Empty).AsTask();
        Assert.False(waiting.IsCompleted, "nothing to read yet: the zero-byte read waits");
        Assert.Equal(0, await waiting.WaitAsync(Limit));
        Assert.Equal("two", Encoding.ASCII.GetString(buffer, 0, await stream.ReadAsync(buffer)));
        Assert.Equal(0, await stream.ReadAsync(buffer));
    }

    [Fact]
    public async Task Nothing_listening_is_an_HttpRequestException()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        using var client = Client();

        await Assert.ThrowsAsync<HttpRequestException>(() => client.PostAsync(new Uri($"http://127.0.0.1:{port}/"), new StringContent("{}")));
    }

    /// <summary>Reads the body stream itself (HttpContent's own helpers wrap its errors in HttpRequestException).</summary>
    private static async Task<string> ReadToEndAsync(HttpResponseMessage response)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        return await reader.ReadToEndAsync();
    }

    private static Task<HttpResponseMessage> PostHeadersAsync(HttpClient client, Uri url) =>
        client.SendAsync(new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent("{}") }, HttpCompletionOption.ResponseHeadersRead);

    private static HttpClient Client() => new(new Http11Handler(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(60))) { Timeout = Limit };

    /// <summary>A TCP server that reads each request (head and Content-Length body) and writes the pieces it is given, one write each.</summary>
    private sealed class RawServer : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly Func<string, byte[][]> _reply;
        private readonly Func<string, bool> _closeAfter;
        private readonly bool _holdOpen;
        private readonly TimeSpan _pause;
        private readonly CancellationTokenSource _stop = new();
        private int _connections;
        private int _piecesSent;

        private RawServer(TcpListener listener, Func<string, byte[][]> reply, Func<string, bool>? closeAfter, bool holdOpen, TimeSpan pause)
        {
            _pause = pause;
            _listener = listener;
            _reply = reply;
            _closeAfter = closeAfter ?? (_ => false);
            _holdOpen = holdOpen;
        }

        public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/");

        public int Connections => Volatile.Read(ref _connections);

        public int PiecesSent => Volatile.Read(ref _piecesSent);

        public ConcurrentQueue<string> Requests { get; } = new();

        public TaskCompletionSource<bool> Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public static Task<RawServer> StartAsync(Func<string, byte[][]> reply, Func<string, bool>? closeAfter = null, bool holdOpen = false, TimeSpan pause = default)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var server = new RawServer(listener, reply, closeAfter, holdOpen, pause);
            _ = server.AcceptAsync();
            return Task.FromResult(server);
        }

        public ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listener.Stop();
            _stop.Dispose();
            return ValueTask.CompletedTask;
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptSocketAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }

                Interlocked.Increment(ref _connections);
                _ = ServeAsync(socket);
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            using var _ = socket;
            var buffer = new byte[64 * 1024];
            var have = 0;
            try
            {
                while (true)
                {
                    int end;
                    while ((end = buffer.AsSpan(0, have).IndexOf("\r\n\r\n"u8)) < 0)
                    {
                        var read = await socket.ReceiveAsync(buffer.AsMemory(have), _stop.Token);
                        if (read == 0)
                        {
                            Closed.TrySetResult(true);
                            return;
                        }

                        have += read;
                    }

                    var head = Encoding.ASCII.GetString(buffer, 0, end + 4);
                    var length = 0;
                    foreach (var line in head.Split("\r\n"))
                    {
                        if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                        {
                            length = int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                        }
                    }

                    while (have < end + 4 + length)
                    {
                        have += await socket.ReceiveAsync(buffer.AsMemory(have), _stop.Token);
                    }

                    var request = Encoding.ASCII.GetString(buffer, 0, end + 4 + length);
                    Requests.Enqueue(request);
                    buffer.AsSpan(end + 4 + length, have - end - 4 - length).CopyTo(buffer);
                    have -= end + 4 + length;
                    foreach (var piece in _reply(request))
                    {
                        await socket.SendAsync(piece, _stop.Token);
                        Interlocked.Increment(ref _piecesSent);
                        if (_pause > TimeSpan.Zero)
                        {
                            await Task.Delay(_pause, _stop.Token);
                        }
                    }

                    if (_holdOpen)
                    {
                        // Wait for the client to close (read returns 0) without answering more.
                        while (await socket.ReceiveAsync(buffer, _stop.Token) > 0)
                        {
                        }

                        Closed.TrySetResult(true);
                        return;
                    }

                    if (_closeAfter(request))
                    {
                        socket.Shutdown(SocketShutdown.Both);
                        return;
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                Closed.TrySetResult(true);
            }
        }
    }
}
