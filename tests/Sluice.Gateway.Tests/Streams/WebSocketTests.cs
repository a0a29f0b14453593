using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Accounting;

namespace Sluice.Gateway.Tests.Streams;

/// <summary><c>GET /api/llm/ws</c> on a real socket: interleaved requests, cancel, errors, clean close.</summary>
public sealed class WebSocketTests
{
    private static async Task<ClientWebSocket> ConnectAsync(TestGateway gateway)
    {
        var socket = new ClientWebSocket();
        var uri = new UriBuilder(gateway.BaseAddress) { Scheme = "ws", Path = "/api/llm/ws" }.Uri;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(uri, cts.Token);
        return socket;
    }

    private static Task SendAsync(ClientWebSocket socket, string json) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text, true, CancellationToken.None);

    private static async Task<JsonElement?> ReceiveAsync(ClientWebSocket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var buffer = new byte[64 * 1024];
        var total = 0;
        WebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(total), cts.Token) switch { var r => new WebSocketReceiveResult(r.Count, r.MessageType, r.EndOfMessage) };
            total += result.Count;
        }
        while (!result.EndOfMessage);

        return result.MessageType == WebSocketMessageType.Close ? null : JsonDocument.Parse(buffer.AsMemory(0, total)).RootElement.Clone();
    }

    private static string Chat(string id, string model = "sim-quick", int maxTokens = 15, string extra = "") =>
        $$"""{"type":"chat","id":"{{id}}","model":"{{model}}","messages":[{"role":"user","content":"Tell me about rivers"}],"max_tokens":{{maxTokens}},"seed":5{{extra}}}""";

    [Fact]
    public async Task Two_requests_interleave_by_id_and_each_ends_with_done_and_the_HTTP_text()
    {
        await using var gateway = await ResumeTests.StartAsync();
        using var socket = await ConnectAsync(gateway);
        await SendAsync(socket, Chat("a"));
        await SendAsync(socket, Chat("b"));

        var text = new Dictionary<string, StringBuilder> { ["a"] = new(), ["b"] = new() };
        var done = new Dictionary<string, JsonElement>();
        var order = new List<string>();
        while (done.Count < 2)
        {
            var message = (await ReceiveAsync(socket))!.Value;
            var id = message.GetProperty("id").GetString()!;
            order.Add(id);
            switch (message.GetProperty("type").GetString())
            {
                case "chunk":
                    Assert.False(done.ContainsKey(id), "no chunk after done");
                    text[id].Append(message.GetProperty("content").GetString());
                    break;
                case "done":
                    done[id] = message;
                    break;
                default:
                    Assert.Fail($"unexpected message {message}");
                    break;
            }
        }

        // Interleaved: b's first chunk arrives before a is done.
        Assert.True(order.IndexOf("b") < order.LastIndexOf("a"), string.Join(",", order));
        Assert.Equal(text["a"].ToString(), text["b"].ToString());
        Assert.Equal(15, done["a"].GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var http = await ResumeTests.ReadAllAsync(await gateway.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "api/llm/chat/stream") { Content = TestGateway.Json("""{"model":"sim-quick","messages":[{"role":"user","content":"Tell me about rivers"}],"max_tokens":15,"seed":5}""") },
            HttpCompletionOption.ResponseHeadersRead));
        var httpText = string.Concat(http.Data.Select(d => JsonDocument.Parse(d).RootElement).Where(e => e.TryGetProperty("content", out _)).Select(e => e.GetProperty("content").GetString()));
        Assert.Equal(httpText, text["a"].ToString());

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
    }

    [Fact]
    public async Task Cancel_stops_one_request_with_an_error_and_records_it_abandoned_while_the_socket_stays_usable()
    {
        await using var gateway = await ResumeTests.StartAsync();
        using var socket = await ConnectAsync(gateway);
        await SendAsync(socket, Chat("long", "sim-paced", 2000));
        var chunks = 0;
        while (chunks < 2)
        {
            var message = (await ReceiveAsync(socket))!.Value;
            Assert.Equal("chunk", message.GetProperty("type").GetString());
            chunks++;
        }

        await SendAsync(socket, """{"type":"cancel","id":"long"}""");
        JsonElement last;
        do
        {
            last = (await ReceiveAsync(socket))!.Value;
        }
        while (last.GetProperty("type").GetString() == "chunk");

        Assert.Equal("error", last.GetProperty("type").GetString());
        Assert.Equal("long", last.GetProperty("id").GetString());
        Assert.Equal("cancelled", last.GetProperty("code").GetString());
        await gateway.Usage.WaitForCountAsync(1);
        Assert.Equal(UsageStatus.Abandoned, Assert.Single(gateway.Usage.Records).Status);

        // The same socket serves the next request.
        await SendAsync(socket, Chat("next", "sim-fast", 3));
        JsonElement end;
        do
        {
            end = (await ReceiveAsync(socket))!.Value;
        }
        while (end.GetProperty("type").GetString() == "chunk");

        Assert.Equal("done", end.GetProperty("type").GetString());
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    }

    [Fact]
    public async Task Errors_name_the_request_bad_input_unknown_model_and_a_failure_mid_answer()
    {
        await using var gateway = await ResumeTests.StartAsync();
        using var socket = await ConnectAsync(gateway);

        await SendAsync(socket, Chat("m", "no-such-model"));
        var missing = (await ReceiveAsync(socket))!.Value;
        Assert.Equal(("error", "m", "model_not_found"), (missing.GetProperty("type").GetString(), missing.GetProperty("id").GetString(), missing.GetProperty("code").GetString()));

        await SendAsync(socket, "not json");
        var invalid = (await ReceiveAsync(socket))!.Value;
        Assert.Equal("invalid_json", invalid.GetProperty("code").GetString());

        await SendAsync(socket, Chat("f", extra: ""","metadata":{"sim_fail_after_tokens":"3"}"""));
        JsonElement last;
        do
        {
            last = (await ReceiveAsync(socket))!.Value;
        }
        while (last.GetProperty("type").GetString() == "chunk");

        Assert.Equal("error", last.GetProperty("type").GetString());
        Assert.Equal("f", last.GetProperty("id").GetString());
        Assert.False(string.IsNullOrEmpty(last.GetProperty("error").GetString()));

        using var plain = await gateway.Client.GetAsync("api/llm/ws");
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, plain.StatusCode);

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        Assert.Equal(WebSocketState.Closed, socket.State);
    }
}
