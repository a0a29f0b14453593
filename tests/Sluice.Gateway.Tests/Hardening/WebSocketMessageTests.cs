using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using static Sluice.Gateway.Tests.Hardening.WebSocketBoundsTests;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// One bad WebSocket message is answered with an error for that message — with its id when it has a readable one — and
/// the socket, the requests already running on it and the next valid request all carry on.
/// </summary>
public sealed class WebSocketMessageTests(WebSocketMessageTests.SharedGateway shared) : IClassFixture<WebSocketMessageTests.SharedGateway>
{
    public static TheoryData<string, string?, string> BadMessages() => new()
    {
        { "[]", null, "invalid_type" },
        { "null", null, "invalid_type" },
        { "1", null, "invalid_type" },
        { "\"chat\"", null, "invalid_type" },
        { "{not json", null, "invalid_json" },
        { "", null, "invalid_json" },
        { """{"type": "chat", "id": "bad-1", "messages": [{"role": "user", "content": "x\ud800y"}]}""", "bad-1", "invalid_text" },
        { """{"type": "chat", "id": "bad-2", "model": "sim-fast", "messages": [{"role": "user", "content": "hi", "\udc00": 1}]}""", "bad-2", "invalid_text" },
        { """{"type": "chat", "id": "\ud800"}""", null, "invalid_text" },
        { """{"type": "chat", "id": "bad-3", "messages": "not an array"}""", "bad-3", "invalid_type" },
        { """{"type": "chat", "id": "bad-4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}""", "bad-4", "invalid_value" },
        { """{"type": "teleport", "id": "bad-5"}""", "bad-5", "invalid_value" },
        { """{"type": "chat", "messages": [{"role": "user", "content": "hi"}]}""", null, "missing_required_parameter" },
        { """{"type": "chat", "id": 7, "messages": [{"role": "user", "content": "hi"}]}""", null, "missing_required_parameter" },
    };

    [Theory]
    [MemberData(nameof(BadMessages))]
    public async Task A_bad_message_gets_an_error_and_the_socket_and_its_other_requests_carry_on(string bad, string? id, string code)
    {
        using var socket = await ConnectAsync(shared.Gateway.BaseAddress);

        // A request already running on the socket when the bad message arrives.
        await SendAsync(socket, Paced("running", maxTokens: 12));
        await SendAsync(socket, bad);

        JsonElement? refusal = null;
        JsonElement? running = null;
        while (refusal is null || running is null)
        {
            var message = await ReceiveAsync(socket);
            var of = message.TryGetProperty("id", out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
            var type = message.GetProperty("type").GetString();
            if (of == "running")
            {
                Assert.NotEqual("error", type);
                running = type == "done" ? message : running;
            }
            else
            {
                Assert.Equal("error", type);
                refusal = message;
            }
        }

        Assert.Equal(code, refusal.Value.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(refusal.Value.GetProperty("error").GetString()));
        if (id is null)
        {
            Assert.True(!refusal.Value.TryGetProperty("id", out var none) || none.ValueKind == JsonValueKind.Null, refusal.Value.ToString());
        }
        else
        {
            Assert.Equal(id, refusal.Value.GetProperty("id").GetString());
        }

        Assert.Equal(12, running.Value.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // The next valid request on the same socket works.
        await SendAsync(socket, """{"type": "chat", "id": "next", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}""");
        Assert.Equal("done", (await ReadUntilEndAsync(socket, "next")).GetProperty("type").GetString());
        Assert.Equal(WebSocketState.Open, socket.State);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }

    [Fact]
    public async Task An_id_too_long_to_repeat_in_every_message_is_refused_without_echoing_it()
    {
        using var socket = await ConnectAsync(shared.Gateway.BaseAddress);
        var longId = new string('i', 100_000);
        await SendAsync(socket, Encoding.UTF8.GetBytes($$"""{"type": "chat", "id": "{{longId}}", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}]}"""));
        var refusal = await ReceiveAsync(socket);
        Assert.Equal(("error", "invalid_value"), (refusal.GetProperty("type").GetString(), refusal.GetProperty("code").GetString()));
        Assert.True(refusal.ToString().Length < 1_000);
        await SendAsync(socket, """{"type": "chat", "id": "ok", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}""");
        Assert.Equal("done", (await ReadUntilEndAsync(socket, "ok")).GetProperty("type").GetString());
    }

    [Fact]
    public async Task Invalid_UTF8_in_a_text_message_closes_that_socket_with_1007_and_others_carry_on()
    {
        // RFC 6455 8.1: an endpoint that receives a text frame that is not UTF-8 must fail the connection (1007).
        using var socket = await ConnectAsync(shared.Gateway.BaseAddress);
        byte[] message = [.. "{\"type\": \"chat\", \"id\": \"u8\", \"messages\": [{\"role\": \"user\", \"content\": \"a"u8, 0xC3, 0x28, .. "\"}]}"u8];
        await SendAsync(socket, message);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var result = await socket.ReceiveAsync(new byte[4096], cts.Token);
        Assert.Equal(WebSocketMessageType.Close, result.MessageType);
        Assert.Equal(WebSocketCloseStatus.InvalidPayloadData, result.CloseStatus);

        using var next = await ConnectAsync(shared.Gateway.BaseAddress);
        await SendAsync(next, """{"type": "chat", "id": "ok", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}""");
        Assert.Equal("done", (await ReadUntilEndAsync(next, "ok")).GetProperty("type").GetString());
    }

    /// <summary>One gateway for every case: each case has its own socket.</summary>
    public sealed class SharedGateway : IAsyncLifetime
    {
        public TestGateway Gateway { get; private set; } = null!;

        public async Task InitializeAsync() => Gateway = await TestGateway.StartAsync();

        public async Task DisposeAsync() => await Gateway.DisposeAsync();
    }
}
