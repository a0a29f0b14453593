using System.Net;
using System.Text.Json;
using static Sluice.Gateway.Tests.Hardening.WebSocketBoundsTests;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// Formats that carry one answer (portal, session turns, WebSocket) refuse <c>n</c> above 1 before anything runs:
/// the other answers would be generated and billed but never delivered (a portal stream with n = 2 showed one answer
/// and billed both).
/// </summary>
public sealed class OneAnswerDialectTests
{
    [Theory]
    [InlineData("api/llm/chat/stream", """{"model": "sim-fast", "messages": [{"role": "user", "content": "Tell me about rivers"}], "n": 2}""")]
    [InlineData("api/llm/chat/session/stream", """{"model": "sim-fast", "message": "Tell me about rivers", "n": 3}""")]
    public async Task Portal_and_session_streams_refuse_n_above_1_with_a_400_naming_n_and_bill_nothing(string path, string body)
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.Client.PostAsync(path, TestGateway.Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, text);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal("n", error.GetProperty("param").GetString());
        Assert.Equal("unsupported_value", error.GetProperty("code").GetString());
        Assert.Contains("/v1/chat/completions", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty(gateway.Usage.Records);

        // n = 1 (or absent) is the one answer.
        using var one = await gateway.Client.PostAsync(path, TestGateway.Json(body.Replace("\"n\": 2", "\"n\": 1", StringComparison.Ordinal).Replace("\"n\": 3", "\"n\": 1", StringComparison.Ordinal)));
        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
    }

    [Fact]
    public async Task A_WebSocket_request_with_n_above_1_gets_an_error_for_that_request_and_the_socket_carries_on()
    {
        await using var gateway = await TestGateway.StartAsync();
        using var socket = await ConnectAsync(gateway.BaseAddress);
        await SendAsync(socket, """{"type": "chat", "id": "two", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "n": 2}""");
        var refusal = await ReceiveAsync(socket);
        Assert.Equal(("error", "two", "unsupported_value"), (refusal.GetProperty("type").GetString(), refusal.GetProperty("id").GetString(), refusal.GetProperty("code").GetString()));

        await SendAsync(socket, """{"type": "chat", "id": "one", "model": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}""");
        JsonElement message;
        do
        {
            message = await ReceiveAsync(socket);
        }
        while (message.GetProperty("type").GetString() == "chunk");

        Assert.Equal(("done", "one"), (message.GetProperty("type").GetString(), message.GetProperty("id").GetString()));
    }
}
