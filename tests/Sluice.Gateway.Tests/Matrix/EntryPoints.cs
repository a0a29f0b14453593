using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace Sluice.Gateway.Tests.Matrix;

/// <summary>What a matrix cell asks for.</summary>
public sealed record MatrixRequest(string Model, string Prompt = "Tell me about rivers", int MaxTokens = 12, bool Tools = false)
{
    public const string WeatherPrompt = "What is the weather in Paris? Use get_weather.";

    public const string OpenAITools =
        """[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]""";

    public const string AnthropicTools =
        """[{"name":"get_weather","description":"Current weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]""";

    public string MessagesJson => $$"""[{"role":"user","content":{{JsonSerializer.Serialize(Prompt)}}}]""";
}

/// <summary>What came back, read in the entry point's own dialect.</summary>
public sealed class MatrixOutcome
{
    /// <summary>The HTTP status (0 for message transports: WebSocket and MQTT answer in messages).</summary>
    public int Status { get; set; }

    public string? ErrorCode { get; set; }

    public string? ErrorType { get; set; }

    public string? ErrorMessage { get; set; }

    /// <summary>Whether the error (response or frame) had the dialect's own shape.</summary>
    public bool ErrorShaped { get; set; }

    public string? RequestId { get; set; }

    public StringBuilder Text { get; } = new();

    public Dictionary<int, (string Name, StringBuilder Arguments)> Tools { get; } = [];

    public bool Done { get; set; }

    public bool Failed => ErrorMessage is not null;

    public IReadOnlyList<(string Name, string Arguments)> ToolCalls => [.. Tools.OrderBy(t => t.Key).Select(t => (t.Value.Name, t.Value.Arguments.ToString()))];

    public override string ToString() =>
        $"status {Status}, done {Done}, error {ErrorType}/{ErrorCode}: {ErrorMessage}, shaped {ErrorShaped}, request id {RequestId}, text '{Text}'";

    public void AddTool(int index, string? name, string? arguments)
    {
        if (!Tools.TryGetValue(index, out var tool))
        {
            tool = (name ?? string.Empty, new StringBuilder());
            Tools[index] = tool;
        }

        if (name is not null && tool.Name.Length == 0)
        {
            Tools[index] = tool = (name, tool.Arguments);
        }

        tool.Arguments.Append(arguments);
    }
}

/// <summary>One way into the gateway: how a call is sent and its answer read, in that entry point's dialect.</summary>
public abstract class EntryPoint
{
    public static IReadOnlyDictionary<string, EntryPoint> All { get; } = new EntryPoint[]
    {
        new OpenAIEntry(), new AnthropicEntry(), new OllamaEntry(generate: false), new OllamaEntry(generate: true),
        new PortalEntry(session: false), new PortalEntry(session: true), new JobEntry(), new WebSocketEntry(), new MqttEntry(),
    }.ToDictionary(e => e.Name);

    public abstract string Name { get; }

    /// <summary>Sends a call and reads the whole answer (or refusal).</summary>
    public abstract Task<MatrixOutcome> CallAsync(MatrixFixture fixture, string? key, MatrixRequest request);

    /// <summary>Starts a streamed call and returns once its first text arrived; disposing the handle drops the client.</summary>
    public abstract Task<IAsyncDisposable> OpenAsync(MatrixFixture fixture, string key, MatrixRequest request);

    public override string ToString() => Name;
}

/// <summary>The HTTP entry points: a POST, then an error body or a stream of frames.</summary>
public abstract class HttpEntry : EntryPoint
{
    public override async Task<MatrixOutcome> CallAsync(MatrixFixture fixture, string? key, MatrixRequest request)
    {
        using var client = NewClient(fixture, key);
        using var response = await SendAsync(fixture, client, key, request);
        var outcome = new MatrixOutcome { Status = (int)response.StatusCode, RequestId = RequestIdOf(response) };
        var body = response.Content;
        if (response.StatusCode != HttpStatusCode.OK)
        {
            ReadError(JsonDocument.Parse(await body.ReadAsStringAsync()).RootElement, outcome);
            return outcome;
        }

        using var reader = new StreamReader(await body.ReadAsStreamAsync());
        await ReadStreamAsync(reader, outcome);
        return outcome;
    }

    public override async Task<IAsyncDisposable> OpenAsync(MatrixFixture fixture, string key, MatrixRequest request)
    {
        var client = NewClient(fixture, key);
        var response = await SendAsync(fixture, client, key, request);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            // Only a refusal is read whole: a stream's body is read frame by frame below.
            Assert.Fail($"{Name}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }

        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var outcome = new MatrixOutcome();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await ReadStreamAsync(reader, outcome, untilText: true, timeout.Token);
        return new Handle(() =>
        {
            reader.Dispose();
            response.Dispose();
            client.Dispose();
        });
    }

    protected virtual string? RequestIdOf(HttpResponseMessage response) =>
        response.Headers.TryGetValues("x-request-id", out var values) ? values.Single() : null;

    protected virtual HttpClient NewClient(MatrixFixture fixture, string? key) => fixture.Client(key);

    protected abstract Task<HttpResponseMessage> SendAsync(MatrixFixture fixture, HttpClient client, string? key, MatrixRequest request);

    /// <summary>Reads an error body; sets <see cref="MatrixOutcome.ErrorShaped"/> when it is this dialect's shape.</summary>
    protected abstract void ReadError(JsonElement body, MatrixOutcome outcome);

    /// <summary>Reads frames until the end (or the first text, when <paramref name="untilText"/>).</summary>
    protected abstract Task ReadStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText = false, CancellationToken cancellationToken = default);

    protected static Task<HttpResponseMessage> PostAsync(HttpClient client, string path, string json) =>
        MatrixFixture.SendAsync(client, HttpMethod.Post, path, json, HttpCompletionOption.ResponseHeadersRead);

    /// <summary>SSE <c>data:</c> values (and the <c>event:</c> before each), one event at a time.</summary>
    protected static async IAsyncEnumerable<(string? Event, string Data)> ReadSseAsync(StreamReader reader, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string? type = null;
        var data = new StringBuilder();
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length > 0)
                {
                    yield return (type, data.ToString());
                }

                type = null;
                data.Clear();
            }
            else if (line.StartsWith("event:", StringComparison.Ordinal))
            {
                type = line[6..].Trim();
            }
            else if (line.StartsWith("data:", StringComparison.Ordinal))
            {
                data.Append(line[5..].TrimStart());
            }
        }
    }

    /// <summary>OpenAI's error shape: <c>{"error": {"message", "type", "code"}}</c>.</summary>
    protected static void ReadOpenAIError(JsonElement body, MatrixOutcome outcome)
    {
        if (body.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object
            && error.TryGetProperty("message", out var message) && error.TryGetProperty("type", out var type))
        {
            outcome.ErrorShaped = true;
            outcome.ErrorMessage = message.GetString();
            outcome.ErrorType = type.GetString();
            outcome.ErrorCode = error.TryGetProperty("code", out var code) && code.ValueKind == JsonValueKind.String ? code.GetString() : null;
        }
        else
        {
            outcome.ErrorMessage = body.GetRawText();
        }
    }

    /// <summary>The frames of an OpenAI chat completion stream (also job calls).</summary>
    protected static async Task ReadOpenAIStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken)
    {
        await foreach (var (_, data) in ReadSseAsync(reader, cancellationToken))
        {
            if (data == "[DONE]")
            {
                outcome.Done = true;
                return;
            }

            var chunk = JsonDocument.Parse(data).RootElement;
            if (chunk.TryGetProperty("error", out _))
            {
                ReadOpenAIError(chunk, outcome);
                return;
            }

            foreach (var choice in chunk.GetProperty("choices").EnumerateArray())
            {
                var delta = choice.GetProperty("delta");
                if (delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                {
                    outcome.Text.Append(content.GetString());
                }

                if (delta.TryGetProperty("tool_calls", out var calls))
                {
                    foreach (var call in calls.EnumerateArray())
                    {
                        var function = call.GetProperty("function");
                        outcome.AddTool(
                            call.GetProperty("index").GetInt32(),
                            function.TryGetProperty("name", out var name) ? name.GetString() : null,
                            function.TryGetProperty("arguments", out var arguments) ? arguments.GetString() : null);
                    }
                }
            }

            if (untilText && outcome.Text.Length > 0)
            {
                return;
            }
        }
    }

    private sealed class Handle(Action dispose) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            dispose();
            return ValueTask.CompletedTask;
        }
    }
}

public sealed class OpenAIEntry : HttpEntry
{
    public override string Name => "openai";

    protected override Task<HttpResponseMessage> SendAsync(MatrixFixture fixture, HttpClient client, string? key, MatrixRequest request) =>
        PostAsync(client, "v1/chat/completions", $$"""
            {"model": "{{request.Model}}", "messages": {{request.MessagesJson}}, "max_tokens": {{request.MaxTokens}}, "stream": true,
             "stream_options": {"include_usage": true}{{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
            """);

    protected override void ReadError(JsonElement body, MatrixOutcome outcome) => ReadOpenAIError(body, outcome);

    protected override Task ReadStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken) =>
        ReadOpenAIStreamAsync(reader, outcome, untilText, cancellationToken);
}

public sealed class AnthropicEntry : HttpEntry
{
    public override string Name => "anthropic";

    protected override HttpClient NewClient(MatrixFixture fixture, string? key)
    {
        // Anthropic clients send x-api-key and anthropic-version, not a bearer token.
        var client = fixture.Client(null);
        if (key is not null)
        {
            client.DefaultRequestHeaders.Add("x-api-key", key);
        }

        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        return client;
    }

    protected override string? RequestIdOf(HttpResponseMessage response)
    {
        // Anthropic's SDKs read request-id; Sluice sends both, with the same value.
        var own = response.Headers.TryGetValues("request-id", out var values) ? values.Single() : null;
        var general = base.RequestIdOf(response);
        return own is not null && own == general ? own : null;
    }

    protected override Task<HttpResponseMessage> SendAsync(MatrixFixture fixture, HttpClient client, string? key, MatrixRequest request) =>
        PostAsync(client, "v1/messages", $$"""
            {"model": "{{request.Model}}", "messages": {{request.MessagesJson}}, "max_tokens": {{request.MaxTokens}}, "stream": true
             {{(request.Tools ? ", \"tools\": " + MatrixRequest.AnthropicTools : "")}}}
            """);

    protected override void ReadError(JsonElement body, MatrixOutcome outcome)
    {
        if (body.TryGetProperty("type", out var type) && type.GetString() == "error" && body.TryGetProperty("error", out var error))
        {
            outcome.ErrorShaped = true;
            outcome.ErrorType = error.GetProperty("type").GetString();
            outcome.ErrorMessage = error.GetProperty("message").GetString();
        }
        else
        {
            outcome.ErrorMessage = body.GetRawText();
        }
    }

    protected override async Task ReadStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken)
    {
        await foreach (var (type, data) in ReadSseAsync(reader, cancellationToken))
        {
            var json = JsonDocument.Parse(data).RootElement;
            switch (type)
            {
                case "error":
                    ReadError(json, outcome);
                    return;
                case "message_stop":
                    outcome.Done = true;
                    return;
                case "content_block_start" when json.GetProperty("content_block").GetProperty("type").GetString() == "tool_use":
                    outcome.AddTool(json.GetProperty("index").GetInt32(), json.GetProperty("content_block").GetProperty("name").GetString(), null);
                    break;
                case "content_block_delta":
                    var delta = json.GetProperty("delta");
                    if (delta.GetProperty("type").GetString() == "text_delta")
                    {
                        outcome.Text.Append(delta.GetProperty("text").GetString());
                    }
                    else if (delta.GetProperty("type").GetString() == "input_json_delta")
                    {
                        outcome.AddTool(json.GetProperty("index").GetInt32(), null, delta.GetProperty("partial_json").GetString());
                    }

                    break;
            }

            if (untilText && outcome.Text.Length > 0)
            {
                return;
            }
        }
    }
}

public sealed class OllamaEntry(bool generate) : HttpEntry
{
    public override string Name => generate ? "ollama-generate" : "ollama-chat";

    protected override Task<HttpResponseMessage> SendAsync(MatrixFixture fixture, HttpClient client, string? key, MatrixRequest request) => generate
        ? PostAsync(client, "api/generate", $$"""
            {"model": "{{request.Model}}", "prompt": {{JsonSerializer.Serialize(request.Prompt)}}, "options": {"num_predict": {{request.MaxTokens}}}
             {{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
            """)
        : PostAsync(client, "api/chat", $$"""
            {"model": "{{request.Model}}", "messages": {{request.MessagesJson}}, "options": {"num_predict": {{request.MaxTokens}}}
             {{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
            """);

    protected override void ReadError(JsonElement body, MatrixOutcome outcome)
    {
        // Ollama's shape: {"error": "message"} — a string, which Ollama clients print as it is.
        if (body.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.String)
        {
            outcome.ErrorShaped = true;
            outcome.ErrorMessage = error.GetString();
        }
        else
        {
            outcome.ErrorMessage = body.GetRawText();
        }
    }

    protected override async Task ReadStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken)
    {
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }

            var json = JsonDocument.Parse(line).RootElement;
            if (json.TryGetProperty("error", out _))
            {
                ReadError(json, outcome);
                return;
            }

            if (json.TryGetProperty("response", out var response))
            {
                outcome.Text.Append(response.GetString());
            }

            if (json.TryGetProperty("message", out var message))
            {
                outcome.Text.Append(message.GetProperty("content").GetString());
                if (message.TryGetProperty("tool_calls", out var calls))
                {
                    var index = outcome.Tools.Count;
                    foreach (var call in calls.EnumerateArray())
                    {
                        var function = call.GetProperty("function");
                        outcome.AddTool(index++, function.GetProperty("name").GetString(), function.GetProperty("arguments").GetRawText());
                    }
                }
            }

            if (json.GetProperty("done").GetBoolean())
            {
                outcome.Done = true;
                return;
            }

            if (untilText && outcome.Text.Length > 0)
            {
                return;
            }
        }
    }
}

/// <summary>The portal stream and the session stream: <c>{"content"}</c>, <c>{"tool_calls"}</c>, <c>{"done"}</c>, <c>{"error"}</c>.</summary>
public sealed class PortalEntry(bool session) : HttpEntry
{
    public override string Name => session ? "session" : "portal";

    protected override Task<HttpResponseMessage> SendAsync(MatrixFixture fixture, HttpClient client, string? key, MatrixRequest request) =>
        PostAsync(client, session ? "api/llm/chat/session/stream" : "api/llm/chat/stream", $$"""
            {"model": "{{request.Model}}", {{(session ? "\"message\": " + JsonSerializer.Serialize(request.Prompt) : "\"messages\": " + request.MessagesJson)}},
             "max_tokens": {{request.MaxTokens}}{{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
            """);

    protected override void ReadError(JsonElement body, MatrixOutcome outcome) => ReadOpenAIError(body, outcome);

    protected override Task ReadStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken) =>
        ReadPortalEventsAsync(reader, outcome, untilText, cancellationToken);

    internal static async Task ReadPortalEventsAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken)
    {
        await foreach (var (_, data) in ReadSseAsync(reader, cancellationToken))
        {
            if (ReadPortalEvent(JsonDocument.Parse(data).RootElement, outcome) || (untilText && outcome.Text.Length > 0))
            {
                return;
            }
        }
    }

    /// <summary>Reads one portal event object (also WebSocket messages); true at the end (done or error).</summary>
    internal static bool ReadPortalEvent(JsonElement json, MatrixOutcome outcome)
    {
        if (json.TryGetProperty("error", out var error))
        {
            outcome.ErrorShaped = error.ValueKind == JsonValueKind.String && json.TryGetProperty("code", out _);
            outcome.ErrorMessage = error.GetString();
            outcome.ErrorCode = json.TryGetProperty("code", out var code) ? code.GetString() : null;
            return true;
        }

        if (json.TryGetProperty("content", out var content))
        {
            outcome.Text.Append(content.GetString());
        }

        if (json.TryGetProperty("done", out _))
        {
            outcome.Done = true;

            // The done event carries the whole calls: the deltas must add up to exactly them.
            if (json.TryGetProperty("tool_calls", out var whole))
            {
                var assembled = outcome.ToolCalls;
                var index = 0;
                foreach (var call in whole.EnumerateArray())
                {
                    var function = call.GetProperty("function");
                    Assert.Equal((function.GetProperty("name").GetString()!, function.GetProperty("arguments").GetString()!), assembled[index++]);
                }

                Assert.Equal(assembled.Count, index);
            }

            return true;
        }

        if (json.TryGetProperty("tool_calls", out var calls))
        {
            foreach (var call in calls.EnumerateArray())
            {
                var function = call.GetProperty("function");
                outcome.AddTool(
                    call.GetProperty("index").GetInt32(),
                    function.TryGetProperty("name", out var name) ? name.GetString() : null,
                    function.GetProperty("arguments").GetString());
            }
        }

        return false;
    }
}

/// <summary>A streamed call in a job: the job is created with the same key (or, for a bad key, by the operator).</summary>
public sealed class JobEntry : HttpEntry
{
    public override string Name => "job";

    protected override async Task<HttpResponseMessage> SendAsync(MatrixFixture fixture, HttpClient client, string? key, MatrixRequest request)
    {
        var created = await MatrixFixture.SendAsync(client, HttpMethod.Post, "api/jobs/create", "{}");
        if (created.StatusCode == HttpStatusCode.Unauthorized)
        {
            var (teamId, _) = await fixture.NewTeamAsync();
            created = await MatrixFixture.SendAsync(fixture.Admin, HttpMethod.Post, "api/jobs/create", $$"""{"team_id": "{{teamId}}"}""");
        }

        if (!created.IsSuccessStatusCode)
        {
            // The job API refused (no credits): that is this entry point's answer.
            return created;
        }

        var body = await created.Content.ReadAsStringAsync();
        var jobId = JsonDocument.Parse(body).RootElement.GetProperty("job_id").GetString();
        return await PostAsync(client, $"api/jobs/{jobId}/llm-call-stream", $$"""
            {"model_group": "{{request.Model}}", "messages": {{request.MessagesJson}}, "max_tokens": {{request.MaxTokens}}
             {{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
            """);
    }

    protected override void ReadError(JsonElement body, MatrixOutcome outcome) => ReadOpenAIError(body, outcome);

    protected override Task ReadStreamAsync(StreamReader reader, MatrixOutcome outcome, bool untilText, CancellationToken cancellationToken) =>
        ReadOpenAIStreamAsync(reader, outcome, untilText, cancellationToken);
}

/// <summary><c>GET /api/llm/ws</c>: one chat request per message; refusals before the upgrade are HTTP, after it messages.</summary>
public sealed class WebSocketEntry : EntryPoint
{
    public override string Name => "websocket";

    public override async Task<MatrixOutcome> CallAsync(MatrixFixture fixture, string? key, MatrixRequest request)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        if (key is not null)
        {
            socket.Options.SetRequestHeader("Authorization", "Bearer " + key);
        }

        try
        {
            await socket.ConnectAsync(Address(fixture), CancellationToken.None);
        }
        catch (WebSocketException)
        {
            // Refused before the upgrade: the same HTTP error a plain GET gets, whose body is the dialect's.
            var outcome = new MatrixOutcome { Status = (int)socket.HttpStatusCode };
            outcome.RequestId = socket.HttpResponseHeaders?.TryGetValue("x-request-id", out var ids) == true ? ids.Single() : null;
            using var client = fixture.Client(key);
            using var plain = await client.GetAsync("api/llm/ws");
            HttpEntryErrors.ReadOpenAI(JsonDocument.Parse(await plain.Content.ReadAsStringAsync()).RootElement, outcome);
            socket.Dispose();
            return outcome;
        }

        using (socket)
        {
            await SendAsync(socket, request);
            var result = new MatrixOutcome();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (!PortalEntry.ReadPortalEvent(await ReceiveAsync(socket, timeout.Token), result))
            {
            }

            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
            return result;
        }
    }

    public override async Task<IAsyncDisposable> OpenAsync(MatrixFixture fixture, string key, MatrixRequest request)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + key);
        await socket.ConnectAsync(Address(fixture), CancellationToken.None);
        await SendAsync(socket, request);
        var outcome = new MatrixOutcome();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (outcome.Text.Length == 0)
        {
            Assert.False(PortalEntry.ReadPortalEvent(await ReceiveAsync(socket, timeout.Token), outcome), outcome.ToString());
        }

        return new Dropper(socket);
    }

    private static Uri Address(MatrixFixture fixture) => new(fixture.Gateway.BaseAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal) + "api/llm/ws");

    private static Task SendAsync(ClientWebSocket socket, MatrixRequest request) => socket.SendAsync(
        Encoding.UTF8.GetBytes($$"""
            {"type": "chat", "id": "r1", "model": "{{request.Model}}", "messages": {{request.MessagesJson}}, "max_tokens": {{request.MaxTokens}}
             {{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
            """),
        WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

    private static async Task<JsonElement> ReceiveAsync(ClientWebSocket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        var total = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(total), cancellationToken);
            total += result.Count;
        }
        while (!result.EndOfMessage);

        var json = JsonDocument.Parse(buffer.AsMemory(0, total)).RootElement.Clone();
        Assert.Equal("r1", json.GetProperty("id").GetString());
        return json;
    }

    /// <summary>Drops the connection without a close handshake, like a client whose network went away.</summary>
    private sealed class Dropper(ClientWebSocket socket) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            socket.Abort();
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>MQTT: requests published to the bridge's topic, answers read from the reply topic; the key is <c>api_key</c>.</summary>
public sealed class MqttEntry : EntryPoint
{
    public override string Name => "mqtt";

    public override async Task<MatrixOutcome> CallAsync(MatrixFixture fixture, string? key, MatrixRequest request)
    {
        var id = "m" + Guid.NewGuid().ToString("N")[..12];
        var answers = await fixture.PublishAsync(id, Json(id, key, request));
        var outcome = new MatrixOutcome();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            var message = await answers.ReadAsync(timeout.Token);
            outcome.RequestId ??= message.TryGetProperty("request_id", out var requestId) ? requestId.GetString() : null;
            if (message.TryGetProperty("error", out var error))
            {
                outcome.ErrorShaped = error.ValueKind == JsonValueKind.Object && error.TryGetProperty("code", out _) && message.TryGetProperty("seq", out _);
                outcome.ErrorMessage = error.GetProperty("message").GetString();
                outcome.ErrorType = error.GetProperty("type").GetString();
                outcome.ErrorCode = error.TryGetProperty("code", out var code) ? code.GetString() : null;
                return outcome;
            }

            if (message.TryGetProperty("content", out var content))
            {
                outcome.Text.Append(content.GetString());
            }

            if (message.TryGetProperty("done", out _))
            {
                outcome.Done = true;
                if (message.TryGetProperty("tool_calls", out var calls))
                {
                    var index = 0;
                    foreach (var call in calls.EnumerateArray())
                    {
                        var function = call.GetProperty("function");
                        outcome.AddTool(index++, function.GetProperty("name").GetString(), function.GetProperty("arguments").GetString());
                    }
                }

                return outcome;
            }
        }
    }

    public override async Task<IAsyncDisposable> OpenAsync(MatrixFixture fixture, string key, MatrixRequest request)
    {
        var id = "m" + Guid.NewGuid().ToString("N")[..12];
        var answers = await fixture.PublishAsync(id, Json(id, key, request));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var first = await answers.ReadAsync(timeout.Token);
        Assert.True(first.TryGetProperty("content", out _), first.GetRawText());

        // An MQTT client has no connection of its own to drop: leaving is cancelling its request.
        return new Canceller(fixture, id, key);
    }

    private static string Json(string id, string? key, MatrixRequest request) => $$"""
        {"id": "{{id}}", "model": "{{request.Model}}", "messages": {{request.MessagesJson}}, "max_tokens": {{request.MaxTokens}}
         {{(key is null ? "" : ", \"api_key\": \"" + key + "\"")}}{{(request.Tools ? ", \"tools\": " + MatrixRequest.OpenAITools : "")}}}
        """;

    private sealed class Canceller(MatrixFixture fixture, string id, string key) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await fixture.PublishAsync(id, $$"""{"id": "{{id}}", "cancel": true, "api_key": "{{key}}"}""");
    }
}

internal static class HttpEntryErrors
{
    public static void ReadOpenAI(JsonElement body, MatrixOutcome outcome)
    {
        var error = body.GetProperty("error");
        outcome.ErrorShaped = error.ValueKind == JsonValueKind.Object && error.TryGetProperty("type", out _);
        outcome.ErrorMessage = error.GetProperty("message").GetString();
        outcome.ErrorType = error.GetProperty("type").GetString();
        outcome.ErrorCode = error.TryGetProperty("code", out var code) ? code.GetString() : null;
    }
}
