using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Mqtt;
using Sluice.Protocol;

namespace Sluice.Mqtt.Tests;

/// <summary>The bridge against the shared mosquitto from <c>scripts/test.sh</c>.</summary>
public sealed class BridgeTests
{
    private const string Prompt = "Tell me about lighthouses, harbours and the café by the naïve keeper's dock";

    [Fact]
    public async Task Streamed_answer_concatenates_to_the_v1_answer_for_the_same_seed_and_done_carries_usage()
    {
        await using var harness = await BridgeHarness.StartAsync();
        var body = $$"""{"model": "sim-fast", "prompt": "{{Prompt}}", "seed": 7, "max_tokens": 150}""";
        var (expected, httpUsage, finishReason) = await harness.HttpAnswerAsync(body);

        await harness.PublishAsync($$"""{"id": "a1", "model": "sim-fast", "prompt": "{{Prompt}}", "seed": 7, "max_tokens": 150}""");
        var answer = await harness.ReadAnswerAsync("a1");

        Assert.Equal(expected, answer.Text);
        Assert.NotEmpty(answer.Chunks);
        Assert.Equal(Enumerable.Range(1, answer.Chunks.Count + 1).Select(i => (long)i), answer.All.Select(m => m.Seq));
        Assert.All(answer.All, m => Assert.Equal(harness.Prefix + "/responses/a1", m.Topic));
        Assert.All(answer.Chunks, m => Assert.False(string.IsNullOrEmpty(m.Content)));

        var done = answer.Final.Json;
        Assert.True(done.GetProperty("done").GetBoolean());
        Assert.Equal(finishReason, done.GetProperty("finish_reason").GetString());
        var usage = done.GetProperty("usage");
        Assert.Equal(httpUsage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(httpUsage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(httpUsage.GetProperty("total_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());

        // Usage goes through the gateway's hook as well: one record for the HTTP request, one for MQTT.
        var records = await harness.Usage.WaitForAsync(2);
        var mqtt = Assert.Single(records, r => r.RequestId == done.GetProperty("request_id").GetString());
        Assert.Equal(("sim-fast", true, UsageStatus.Completed), (mqtt.Model, mqtt.Stream, mqtt.Status));
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt32(), mqtt.CompletionTokens);
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32(), mqtt.PromptTokens);
    }

    [Fact]
    public async Task Chunks_never_exceed_the_size_limit_are_filled_when_text_is_waiting_and_respect_the_interval()
    {
        const int maxBytes = 256;
        const int intervalMs = 40;
        await using var harness = await BridgeHarness.StartAsync(o =>
        {
            o.MaxMessageBytes = maxBytes;
            o.MinIntervalMs = intervalMs;
        });
        var (expected, _, _) = await harness.HttpAnswerAsync($$"""{"model": "sim-fast", "prompt": "{{Prompt}} \"quoted\"\n雪", "seed": 3, "max_tokens": 400}""");

        await harness.PublishAsync($$"""{"id": "sized", "model": "sim-fast", "prompt": "{{Prompt}} \"quoted\"\n雪", "seed": 3, "max_tokens": 400}""");
        var answer = await harness.ReadAnswerAsync("sized");

        Assert.Equal(expected, answer.Text);
        // About 150 tokens (the simulation's natural length for this prompt) make several chunks of 256 bytes.
        Assert.True(answer.Chunks.Count >= 4, $"{answer.Chunks.Count} chunks");
        Assert.All(answer.All, m => Assert.True(m.Payload.Length <= maxBytes, $"a message of {m.Payload.Length} bytes"));

        // sim-fast writes everything at once: after the first chunk, each one waits out the interval while text
        // piles up, so every chunk but the first and the last is full (within one escaped character).
        foreach (var chunk in answer.Chunks.Skip(1).SkipLast(1))
        {
            Assert.InRange(chunk.Payload.Length, maxBytes - 6, maxBytes);
        }

        // Rate: n messages are spread over at least (n - 1) intervals (generous margin for broker delivery jitter).
        var all = answer.All.ToList();
        var span = Stopwatch.GetElapsedTime(all[0].Timestamp, all[^1].Timestamp);
        Assert.True(span >= TimeSpan.FromMilliseconds((all.Count - 1) * intervalMs * 0.75), $"{all.Count} messages in {span.TotalMilliseconds:F0} ms");
    }

    [Fact]
    public async Task A_paced_model_is_coalesced_into_far_fewer_messages_than_tokens()
    {
        await using var harness = await BridgeHarness.StartAsync(o => o.MinIntervalMs = 250);
        await harness.PublishAsync("""{"id": "paced", "model": "sim-paced", "prompt": "Describe rivers", "seed": 1, "max_tokens": 60}""");
        var answer = await harness.ReadAnswerAsync("paced");

        var tokens = answer.Final.Json.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.Equal(60, tokens);

        // 60 tokens at 50 tokens/s take ~1.2 s: about 5 intervals of 250 ms, never one message per token.
        Assert.InRange(answer.Chunks.Count, 2, 10);
        Assert.True(answer.Chunks.Count * 4 < tokens, $"{answer.Chunks.Count} chunks for {tokens} tokens");
    }

    [Fact]
    public async Task A_non_streamed_request_gets_exactly_one_message()
    {
        await using var harness = await BridgeHarness.StartAsync();
        var (expected, httpUsage, _) = await harness.HttpAnswerAsync("""{"model": "sim-fast", "prompt": "Hello there", "seed": 5, "max_tokens": 30}""");

        await harness.PublishAsync("""{"id": "one", "model": "sim-fast", "prompt": "Hello there", "seed": 5, "max_tokens": 30, "stream": false}""");
        var answer = await harness.ReadAnswerAsync("one");
        Assert.Empty(answer.Chunks);
        var message = answer.Final.Json;
        Assert.Equal(expected, message.GetProperty("content").GetString());
        Assert.True(message.GetProperty("done").GetBoolean());
        Assert.Equal(1, message.GetProperty("seq").GetInt64());
        Assert.Equal(httpUsage.GetProperty("completion_tokens").GetInt32(), message.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Nothing else arrives for it: a later request's answer comes and still nothing more for "one".
        await harness.PublishAsync("""{"id": "two", "model": "sim-fast", "prompt": "Hi", "max_tokens": 5}""");
        await harness.ReadAnswerAsync("two");
        Assert.False(harness.HasMore("one"));
        var records = await harness.Usage.WaitForAsync(3);
        Assert.Contains(records, r => !r.Stream && r.Status == UsageStatus.Completed && r.RequestId == message.GetProperty("request_id").GetString());
    }

    [Fact]
    public async Task A_non_streamed_answer_too_large_for_one_message_is_an_error_that_says_to_stream()
    {
        await using var harness = await BridgeHarness.StartAsync(o => o.MaxMessageBytes = 300);
        await harness.PublishAsync("""{"id": "big", "model": "sim-fast", "prompt": "Hello", "max_tokens": 200, "stream": false}""");
        var error = (await harness.ReadAnswerAsync("big")).Final.Error!.Value;
        Assert.Equal("response_too_large", error.GetProperty("code").GetString());
        Assert.Contains("\"stream\": true", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Answers_go_to_reply_to_when_given()
    {
        await using var harness = await BridgeHarness.StartAsync();
        await harness.PublishAsync($$"""{"id": "r1", "model": "sim-fast", "prompt": "Hi", "max_tokens": 20, "reply_to": "{{harness.Prefix}}/replies/device-7"}""");
        var answer = await harness.ReadAnswerAsync("r1");
        Assert.All(answer.All, m => Assert.Equal(harness.Prefix + "/replies/device-7", m.Topic));
        Assert.True(answer.Final.IsDone);
    }

    [Fact]
    public async Task A_backend_failure_mid_stream_ends_the_answer_with_an_error_after_the_text_so_far()
    {
        await using var harness = await BridgeHarness.StartAsync();
        await harness.PublishAsync("""{"id": "f1", "model": "sim-fast", "prompt": "Hi", "max_tokens": 50, "metadata": {"sim_fail_after_tokens": "10"}}""");
        var answer = await harness.ReadAnswerAsync("f1");
        Assert.NotEmpty(answer.Chunks);
        Assert.Equal(answer.Chunks.Count + 1, answer.Final.Seq);
        Assert.NotNull(answer.Final.Error);
        Assert.False(answer.Final.IsDone);
        var records = await harness.Usage.WaitForAsync(1);
        Assert.Equal(UsageStatus.Failed, Assert.Single(records).Status);
    }

    [Fact]
    public async Task Malformed_requests_get_error_replies_and_the_bridge_keeps_serving()
    {
        await using var harness = await BridgeHarness.StartAsync(o => o.MaxRequestBytes = 2048);
        var oversized = $$"""{"id": "m-big", "model": "sim-fast", "prompt": "{{new string('x', 3000)}}"}""";
        var cases = new (string Id, string Payload, string Code, string? Param)[]
        {
            ("m-json", """{"id": "m-json", "model": "sim-fast", "prompt": "cut off""", "invalid_json", null),
            ("m-model", """{"id": "m-model", "prompt": "Hi"}""", "missing_required_parameter", "model"),
            ("m-unknown", """{"id": "m-unknown", "model": "gpt-nope", "prompt": "Hi"}""", "model_not_found", "model"),
            ("m-messages", """{"id": "m-messages", "model": "sim-fast"}""", "missing_required_parameter", "messages"),
            ("m-role", """{"id": "m-role", "model": "sim-fast", "messages": [{"content": "Hi"}]}""", "missing_required_parameter", "messages[0].role"),
            ("m-temp", """{"id": "m-temp", "model": "sim-fast", "prompt": "Hi", "temperature": 9}""", "invalid_value", "temperature"),
            ("m-stream", """{"id": "m-stream", "model": "sim-fast", "prompt": "Hi", "stream": "yes"}""", "invalid_type", "stream"),
            ("m-tools", """{"id": "m-tools", "model": "sim-fast", "prompt": "Hi", "tools": 5}""", "invalid_type", "tools"),
            ("m-reply", """{"id": "m-reply", "model": "sim-fast", "prompt": "Hi", "reply_to": "x/#"}""", "invalid_value", "reply_to"),
            ("m-max", """{"id": "m-max", "model": "sim-fast", "prompt": "Hi", "max_tokens": 999999}""", "invalid_value", "max_tokens"),
            ("m-big", oversized, "request_too_large", null),
            ("42", """{"id": 42, "model": "sim-fast", "prompt": "Hi", "max_tokens": 0}""", "invalid_value", "max_tokens"),
        };
        foreach (var (_, payload, _, _) in cases)
        {
            await harness.PublishAsync(payload);
        }

        // Nothing readable to answer to: only a log line. Without id but with reply_to: an error there, id null.
        await harness.PublishAsync("this is not json at all");
        await harness.PublishAsync($$"""{"model": "sim-fast", "prompt": "Hi", "reply_to": "{{harness.Prefix}}/replies/anon"}""");

        foreach (var (id, _, code, param) in cases)
        {
            var message = await harness.ReadMessageAsync(id);
            var error = message.Error ?? throw new Xunit.Sdk.XunitException($"{id}: expected an error, got {Encoding.UTF8.GetString(message.Payload)}");
            Assert.Equal(harness.Prefix + "/responses/" + id, message.Topic);
            Assert.Equal(1, message.Seq);
            Assert.True(code == error.GetProperty("code").GetString(), $"{id}: {error}");
            Assert.Equal(param, error.TryGetProperty("param", out var p) ? p.GetString() : null);
            Assert.Equal(ErrorTypes.InvalidRequest, error.GetProperty("type").GetString());
            Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        }

        var anonymous = await harness.ReadMessageAsync(null);
        Assert.Equal(harness.Prefix + "/replies/anon", anonymous.Topic);
        Assert.Equal(JsonValueKind.Null, anonymous.Json.GetProperty("id").ValueKind);
        Assert.Equal("id", anonymous.Error!.Value.GetProperty("param").GetString());
        Assert.Contains("no readable id", await harness.Logs.WaitForAsync("this is not json") + await harness.Logs.WaitForAsync("no readable id"), StringComparison.Ordinal);

        // Still serving.
        await harness.PublishAsync("""{"id": "after", "model": "sim-fast", "prompt": "Still there?", "max_tokens": 10}""");
        Assert.True((await harness.ReadAnswerAsync("after")).Final.IsDone);
        Assert.True(harness.Bridge.Client.IsConnected);
    }

    [Fact]
    public async Task A_request_for_several_answers_is_refused_naming_n_because_a_reply_carries_one()
    {
        await using var harness = await BridgeHarness.StartAsync();
        await harness.PublishAsync("""{"id": "many", "model": "sim-fast", "prompt": "Hi", "max_tokens": 5, "n": 2}""");
        var refused = (await harness.ReadAnswerAsync("many")).Final.Error!.Value;
        Assert.Equal("unsupported_value", refused.GetProperty("code").GetString());
        Assert.Contains("n must be 1", refused.GetProperty("message").GetString(), StringComparison.Ordinal);

        await harness.PublishAsync("""{"id": "one", "model": "sim-fast", "prompt": "Hi", "max_tokens": 5, "n": 1}""");
        Assert.True((await harness.ReadAnswerAsync("one")).Final.IsDone);
    }

    [Fact]
    public async Task With_keys_on_requests_need_an_api_key_and_virtual_keys_are_billed_to_their_team()
    {
        const string MasterKey = "mqtt-test-master-key-0123456789";
        var data = Directory.CreateTempSubdirectory("sluice-mqtt-tenancy-");
        try
        {
            await using var harness = await BridgeHarness.StartAsync(gateway: o =>
            {
                o.MasterKey = MasterKey;
                o.DataDirectory = data.FullName;
            });
            var (teamId, virtualKey) = await NewTeamAsync(harness.Http, MasterKey);

            await harness.PublishAsync("""{"id": "anonymous", "model": "sim-fast", "prompt": "Hi", "max_tokens": 5}""");
            var refused = (await harness.ReadAnswerAsync("anonymous")).Final.Error!.Value;
            Assert.Equal("missing_api_key", refused.GetProperty("code").GetString());

            await harness.PublishAsync("""{"id": "wrong", "model": "sim-fast", "prompt": "Hi", "max_tokens": 5, "api_key": "sk-sluice-not-a-real-key"}""");
            Assert.Equal("invalid_api_key", (await harness.ReadAnswerAsync("wrong")).Final.Error!.Value.GetProperty("code").GetString());

            await harness.PublishAsync($$"""{"id": "team", "model": "sim-fast", "prompt": "Hi", "max_tokens": 5, "api_key": "{{virtualKey}}"}""");
            Assert.True((await harness.ReadAnswerAsync("team")).Final.IsDone);

            // The call lands in the team's usage ledger (written in the background).
            var deadline = DateTime.UtcNow.AddSeconds(10);
            var store = harness.Gateway.GetRequiredService<Sluice.Gateway.Tenancy.TenancyRuntime>();
            IReadOnlyList<Sluice.Storage.UsageEntry> rows = [];
            while (rows.Count == 0 && DateTime.UtcNow < deadline)
            {
                rows = await store.Store.ListUsageAsync(teamId, 10, 0, CancellationToken.None);
                if (rows.Count == 0)
                {
                    await Task.Delay(50);
                }
            }

            var row = Assert.Single(rows);
            Assert.Equal(5, row.CompletionTokens);
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    private static async Task<(string TeamId, string Key)> NewTeamAsync(HttpClient http, string masterKey)
    {
        async Task<System.Text.Json.JsonElement> PostAsync(string path, string json)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json") };
            request.Headers.Authorization = new("Bearer", masterKey);
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);
            return System.Text.Json.JsonDocument.Parse(body).RootElement.Clone();
        }

        var org = await PostAsync("api/organizations/create", """{"name": "mqtt-org"}""");
        var team = await PostAsync("api/teams/create", $$"""{"organization_id": "{{org.GetProperty("organization_id").GetString()}}", "team_alias": "mqtt-team", "credits_allocated": 3}""");
        return (team.GetProperty("team_id").GetString()!, team.GetProperty("virtual_key").GetString()!);
    }

    [Fact]
    public async Task Many_concurrent_requests_each_get_their_complete_answer()
    {
        await using var harness = await BridgeHarness.StartAsync(o => o.MaxConcurrentRequests = 4);
        var ids = Enumerable.Range(0, 12).Select(i => "c" + i).ToList();
        foreach (var id in ids)
        {
            await harness.PublishAsync($$"""{"id": "{{id}}", "model": "sim-fast", "prompt": "Question {{id}}", "seed": 9, "max_tokens": 40}""");
        }

        foreach (var id in ids)
        {
            var answer = await harness.ReadAnswerAsync(id);
            Assert.True(answer.Final.IsDone);
            Assert.Equal(40, answer.Final.Json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
    }
}
