using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Providers;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>The Ollama API on a real Kestrel socket: NDJSON framing, done lines, model listing and errors.</summary>
public sealed class OllamaEndpointTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync(options =>
    {
        options.Streaming.PingIntervalSeconds = 0.05;
        options.Models.Add(new ModelOptions { Name = "sim-breaks", FailAfterTokens = 3 });
        options.Models.Add(new ModelOptions { Name = "sim-busy", FailStatus = 429, RetryAfterSeconds = 7 });
        options.Models.Add(new ModelOptions { Name = "sim-stalls", StallMs = 400, StallAfterTokens = 2 });
    });

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    private async Task<(HttpResponseMessage Response, string Body)> PostAsync(string path, string json)
    {
        var response = await _gateway.Client.PostAsync(path, TestGateway.Json(json));
        return (response, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Splits an NDJSON body into parsed lines, checking the framing: one object per line, each ended by \n.</summary>
    private static List<JsonElement> NdjsonLines(string body)
    {
        Assert.EndsWith("\n", body, StringComparison.Ordinal);
        var lines = body[..^1].Split('\n');
        Assert.All(lines, line => Assert.False(string.IsNullOrWhiteSpace(line)));
        return lines.Select(line => JsonDocument.Parse(line).RootElement.Clone()).ToList();
    }

    [Fact]
    public async Task Ps_lists_the_models_that_answered_in_the_last_five_minutes_with_expires_at()
    {
        var before = JsonDocument.Parse(await _gateway.Client.GetStringAsync("api/ps")).RootElement;
        Assert.DoesNotContain(before.GetProperty("models").EnumerateArray(), m => m.GetProperty("name").GetString() == "sim-realistic");

        var started = DateTimeOffset.UtcNow;
        var (chat, _) = await PostAsync("api/chat", """{"model": "sim-realistic:latest", "stream": false, "options": {"num_predict": 2}, "messages": [{"role": "user", "content": "Hi"}]}""");
        Assert.Equal(200, (int)chat.StatusCode);
        await _gateway.Usage.WaitForCountAsync(1);

        var after = JsonDocument.Parse(await _gateway.Client.GetStringAsync("api/ps")).RootElement;
        var running = Assert.Single(after.GetProperty("models").EnumerateArray(), m => m.GetProperty("name").GetString() == "sim-realistic");
        var expires = DateTimeOffset.Parse(running.GetProperty("expires_at").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(expires, started.AddMinutes(5).AddSeconds(-1), DateTimeOffset.UtcNow.AddMinutes(5).AddSeconds(1));
        Assert.Equal("sim", running.GetProperty("details").GetProperty("family").GetString());
        Assert.Equal(64, running.GetProperty("digest").GetString()!.Length);
    }

    [Fact]
    public async Task Chat_streams_ndjson_lines_and_a_done_line_with_counts_and_durations()
    {
        var (response, body) = await PostAsync("api/chat", """
            {"model": "sim-fast", "messages": [{"role": "user", "content": "Tell me about lighthouses"}], "options": {"num_predict": 12, "seed": 3}}
            """);

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        var lines = NdjsonLines(body);
        Assert.Equal(13, lines.Count);
        var text = new StringBuilder();
        foreach (var line in lines[..^1])
        {
            Assert.False(line.GetProperty("done").GetBoolean());
            Assert.Equal("sim-fast", line.GetProperty("model").GetString());
            Assert.True(DateTimeOffset.TryParse(line.GetProperty("created_at").GetString(), out _));
            Assert.Equal("assistant", line.GetProperty("message").GetProperty("role").GetString());
            text.Append(line.GetProperty("message").GetProperty("content").GetString());
        }

        var done = lines[^1];
        Assert.True(done.GetProperty("done").GetBoolean());
        Assert.Equal("length", done.GetProperty("done_reason").GetString());
        Assert.Equal(string.Empty, done.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(12, done.GetProperty("eval_count").GetInt32());
        Assert.Equal(TokenCounter.CountPrompt([new("user", "Tell me about lighthouses")]), done.GetProperty("prompt_eval_count").GetInt32());
        var total = done.GetProperty("total_duration").GetInt64();
        Assert.True(total > 0);
        Assert.True(total >= done.GetProperty("prompt_eval_duration").GetInt64() + done.GetProperty("eval_duration").GetInt64());
        Assert.Contains("lighthouses", text.ToString(), StringComparison.OrdinalIgnoreCase);

        // The same request without streaming: one object with the whole text.
        var (_, single) = await PostAsync("api/chat", """
            {"model": "sim-fast", "stream": false, "messages": [{"role": "user", "content": "Tell me about lighthouses"}], "options": {"num_predict": 12, "seed": 3}}
            """);
        using var whole = JsonDocument.Parse(single);
        Assert.Equal(text.ToString(), whole.RootElement.GetProperty("message").GetProperty("content").GetString());
        Assert.True(whole.RootElement.GetProperty("done").GetBoolean());
        Assert.Equal(12, whole.RootElement.GetProperty("eval_count").GetInt32());
    }

    [Fact]
    public async Task Tool_calls_arrive_whole_in_one_line()
    {
        var (_, body) = await PostAsync("api/chat", """
            {"model": "sim-fast", "messages": [{"role": "user", "content": "What's the weather in Oslo?"}],
             "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}
            """);

        var lines = NdjsonLines(body);
        var withCalls = Assert.Single(lines, l => l.TryGetProperty("message", out var m) && m.TryGetProperty("tool_calls", out _));
        var call = Assert.Single(withCalls.GetProperty("message").GetProperty("tool_calls").EnumerateArray());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.Object, call.GetProperty("function").GetProperty("arguments").ValueKind);
        Assert.Contains("Oslo", call.GetProperty("function").GetProperty("arguments").GetProperty("city").GetString(), StringComparison.Ordinal);
        Assert.True(lines[^1].GetProperty("done").GetBoolean());
    }

    [Fact]
    public async Task Generate_streams_response_fields_and_answers_a_load_request_at_once()
    {
        var (_, body) = await PostAsync("api/generate", """{"model": "sim-fast:latest", "prompt": "Why is the sky blue?", "options": {"num_predict": 5}}""");
        var lines = NdjsonLines(body);
        Assert.Equal(6, lines.Count);
        Assert.All(lines, l => Assert.Equal("sim-fast:latest", l.GetProperty("model").GetString()));
        Assert.All(lines[..^1], l => Assert.False(string.IsNullOrEmpty(l.GetProperty("response").GetString())));
        Assert.Equal(5, lines[^1].GetProperty("eval_count").GetInt32());

        var (_, loaded) = await PostAsync("api/generate", """{"model": "sim-fast"}""");
        var line = Assert.Single(NdjsonLines(loaded));
        Assert.True(line.GetProperty("done").GetBoolean());
        Assert.Equal("load", line.GetProperty("done_reason").GetString());
    }

    [Fact]
    public async Task A_failure_mid_stream_is_an_error_line_with_the_status_unchanged()
    {
        var (response, body) = await PostAsync("api/chat", """{"model": "sim-breaks", "messages": [{"role": "user", "content": "Hello"}]}""");

        Assert.Equal(200, (int)response.StatusCode);
        var lines = NdjsonLines(body);
        Assert.Equal(4, lines.Count);
        Assert.All(lines[..3], l => Assert.False(l.GetProperty("done").GetBoolean()));
        Assert.Contains("Simulated failure after 3 tokens", lines[3].GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain(lines, l => l.TryGetProperty("done", out var done) && done.GetBoolean());
    }

    [Fact]
    public async Task Errors_before_the_first_token_are_http_errors_with_an_error_string()
    {
        var (busy, busyBody) = await PostAsync("api/chat", """{"model": "sim-busy", "messages": [{"role": "user", "content": "Hello"}]}""");
        Assert.Equal(429, (int)busy.StatusCode);
        Assert.Equal("7", busy.Headers.RetryAfter?.ToString());
        using (var error = JsonDocument.Parse(busyBody))
        {
            Assert.Equal(JsonValueKind.String, error.RootElement.GetProperty("error").ValueKind);
        }

        var (missing, missingBody) = await PostAsync("api/chat", """{"model": "llama3", "messages": [{"role": "user", "content": "Hello"}]}""");
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Contains("/api/tags", JsonDocument.Parse(missingBody).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);

        var (bad, badBody) = await PostAsync("api/chat", """{"model": "sim-fast", "messages": "Hello"}""");
        Assert.Equal(400, (int)bad.StatusCode);
        Assert.Contains("messages", JsonDocument.Parse(badBody).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Silences_get_empty_progress_lines_that_clients_already_accept()
    {
        var (_, body) = await PostAsync("api/chat", """{"model": "sim-stalls", "messages": [{"role": "user", "content": "Hello"}], "options": {"num_predict": 4}}""");

        var lines = NdjsonLines(body);
        var empty = lines[..^1].Where(l => l.GetProperty("message").GetProperty("content").GetString()!.Length == 0).ToList();
        Assert.NotEmpty(empty);
        Assert.All(empty, l => Assert.False(l.GetProperty("done").GetBoolean()));
        Assert.Equal(4, lines.Count(l => l.GetProperty("message").GetProperty("content").GetString()!.Length > 0));
    }

    [Fact]
    public async Task Tags_show_and_version_describe_the_served_models()
    {
        using var tags = JsonDocument.Parse(await _gateway.Client.GetStringAsync("api/tags"));
        var models = tags.RootElement.GetProperty("models").EnumerateArray().ToList();
        Assert.Equal(
            _gateway.Gateway.GetRequiredService<ModelCatalog>().Models.Select(m => m.Name),
            models.Select(m => m.GetProperty("name").GetString()));
        var fast = models.Single(m => m.GetProperty("name").GetString() == "sim-fast");
        Assert.Equal("sim-fast", fast.GetProperty("model").GetString());
        Assert.Equal(64, fast.GetProperty("digest").GetString()!.Length);
        Assert.Equal("sim", fast.GetProperty("details").GetProperty("family").GetString());
        Assert.Equal(models.Count, models.Select(m => m.GetProperty("digest").GetString()).Distinct().Count());

        var (response, body) = await PostAsync("api/show", """{"model": "sim-slow:latest"}""");
        Assert.Equal(200, (int)response.StatusCode);
        using var show = JsonDocument.Parse(body);
        Assert.Equal(32_768, show.RootElement.GetProperty("model_info").GetProperty("sim.context_length").GetInt32());
        Assert.Contains("tools", show.RootElement.GetProperty("capabilities").EnumerateArray().Select(c => c.GetString()));

        var (unknown, unknownBody) = await PostAsync("api/show", """{"model": "mistral"}""");
        Assert.Equal(404, (int)unknown.StatusCode);
        Assert.Contains("mistral", JsonDocument.Parse(unknownBody).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);

        using var version = JsonDocument.Parse(await _gateway.Client.GetStringAsync("api/version"));
        Assert.Matches(@"^\d+\.\d+\.\d+$", version.RootElement.GetProperty("version").GetString());
    }

    [Fact]
    public async Task Pulling_a_served_model_succeeds_at_once_and_an_unknown_one_is_a_404()
    {
        // Streamed (the default): Ollama's progress stream reduced to its last line.
        var (streamed, streamedBody) = await PostAsync("api/pull", """{"model": "sim-fast:latest"}""");
        Assert.Equal(200, (int)streamed.StatusCode);
        Assert.Equal("application/x-ndjson", streamed.Content.Headers.ContentType?.MediaType);
        Assert.Equal("success", Assert.Single(NdjsonLines(streamedBody)).GetProperty("status").GetString());

        var (single, singleBody) = await PostAsync("api/pull", """{"name": "sim-slow", "stream": false}""");
        Assert.Equal(200, (int)single.StatusCode);
        Assert.Equal("success", JsonDocument.Parse(singleBody).RootElement.GetProperty("status").GetString());

        var (unknown, unknownBody) = await PostAsync("api/pull", """{"model": "llama3"}""");
        Assert.Equal(404, (int)unknown.StatusCode);
        Assert.Contains("llama3", JsonDocument.Parse(unknownBody).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);

        var (missing, missingBody) = await PostAsync("api/pull", "{}");
        Assert.Equal(400, (int)missing.StatusCode);
        Assert.StartsWith("model", JsonDocument.Parse(missingBody).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("POST", "api/create", """{"model": "x", "from": "sim-fast"}""")]
    [InlineData("POST", "api/copy", """{"source": "sim-fast", "destination": "y"}""")]
    [InlineData("POST", "api/push", """{"model": "sim-fast"}""")]
    [InlineData("DELETE", "api/delete", """{"model": "sim-fast"}""")]
    [InlineData("POST", "api/blobs/sha256:0123", "")]
    public async Task Creating_copying_pushing_or_deleting_models_is_a_403_saying_where_models_come_from(string method, string path, string json)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = TestGateway.Json(json) };
        using var response = await _gateway.Client.SendAsync(request);
        Assert.Equal(403, (int)response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
        Assert.Contains("sluice.json", error, StringComparison.Ordinal);
        Assert.Contains("GET /api/tags", error, StringComparison.Ordinal);

        // Nothing changed: the model is still served.
        Assert.Equal(200, (int)(await PostAsync("api/show", """{"model": "sim-fast"}""")).Response.StatusCode);
    }
}
