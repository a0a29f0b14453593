using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models.Messages;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// Anthropic clients through an Anthropic upstream: the client's own body goes up (thinking, cache_control, beta header
/// and all, model and stream replaced) and the upstream's content blocks come back byte for byte — blocks Sluice's common
/// model does not carry included (a recorded compaction block; a thinking block with its signature) — inside the message
/// Sluice writes from the upstream's facts. Other dialects still get the translated answer.
/// </summary>
public sealed class AnthropicPassThroughTests
{
    private const string ClientBody = """
        {"model": "claude", "max_tokens": 1024, "stream": true,
         "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
         "thinking": {"type": "enabled", "budget_tokens": 1024},
         "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
         "x_future_field": {"k": [1, 2]}}
        """;

    // Anthropic's documented extended-thinking stream shape (a thinking block, its signature, then text).
    private const string ThinkingStream = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_01Thinking","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":42,"cache_read_input_tokens":30,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants a greeting."}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: content_block_start
        data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello!"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":1}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}

        event: message_stop
        data: {"type":"message_stop"}


        """;

    private static Task<TestGateway> StartAsync(ReplayUpstream upstream) => TestGateway.StartAsync(options => options.Models =
    [
        new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "claude-sonnet-4-5", MaxAttempts = 1 },
    ]);

    private static async Task<(string Text, HttpResponseMessage Response)> PostAsync(TestGateway gateway, string path, string body, string? beta = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = TestGateway.Json(body) };
        request.Headers.Add("anthropic-version", "2023-06-01");
        if (beta is not null)
        {
            request.Headers.Add("anthropic-beta", beta);
        }

        var response = await gateway.Client.SendAsync(request);
        return (await response.Content.ReadAsStringAsync(), response);
    }

    private static List<(string Event, string Data)> Frames(string sse) =>
        [.. sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(frame => frame.Split('\n'))
            .Where(lines => lines.Any(l => l.StartsWith("event: ", StringComparison.Ordinal)))
            .Select(lines => (lines.First(l => l.StartsWith("event: ", StringComparison.Ordinal))["event: ".Length..],
                              lines.First(l => l.StartsWith("data: ", StringComparison.Ordinal))["data: ".Length..]))];

    [Fact]
    public async Task The_clients_body_and_beta_header_go_up_as_sent_with_only_model_and_stream_replaced()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(ThinkingStream.ReplaceLineEndings("\n")));
        await using var gateway = await StartAsync(upstream);

        var (_, response) = await PostAsync(gateway, "v1/messages", ClientBody.Replace("\"stream\": true", "\"stream\": false", StringComparison.Ordinal), "interleaved-thinking-2025-05-14,context-1m-2025-08-07");
        Assert.Equal(200, (int)response.StatusCode);

        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("interleaved-thinking-2025-05-14,context-1m-2025-08-07", sent.Headers["anthropic-beta"]);
        var json = sent.Json;
        Assert.Equal("claude-sonnet-4-5", json.GetProperty("model").GetString());
        Assert.True(json.GetProperty("stream").GetBoolean());
        Assert.Equal(1024, json.GetProperty("thinking").GetProperty("budget_tokens").GetInt32());
        Assert.Equal("1h", json.GetProperty("messages")[0].GetProperty("content")[0].GetProperty("cache_control").GetProperty("ttl").GetString());
        Assert.Equal("ephemeral", json.GetProperty("system")[0].GetProperty("cache_control").GetProperty("type").GetString());
        Assert.Equal(2, json.GetProperty("x_future_field").GetProperty("k").GetArrayLength());
        Assert.Single(json.EnumerateObject(), p => p.Name == "model");
        Assert.Single(json.EnumerateObject(), p => p.Name == "stream");
    }

    [Fact]
    public async Task Thinking_blocks_and_their_signature_reach_an_anthropic_client_byte_for_byte_inside_sluices_message()
    {
        var recording = ThinkingStream.ReplaceLineEndings("\n");
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(recording));
        await using var gateway = await StartAsync(upstream);

        var (sse, response) = await PostAsync(gateway, "v1/messages", ClientBody);
        Assert.Equal(200, (int)response.StatusCode);

        var frames = Frames(sse).Where(f => f.Event != "ping").ToList();
        var upstreamBlocks = Frames(recording).Where(f => f.Event.StartsWith("content_block", StringComparison.Ordinal)).ToList();
        Assert.Equal(["message_start", .. upstreamBlocks.Select(f => f.Event), "message_delta", "message_stop"], frames.Select(f => f.Event));
        Assert.Equal(upstreamBlocks.Select(f => f.Data), frames.Skip(1).Take(upstreamBlocks.Count).Select(f => f.Data));

        using var start = JsonDocument.Parse(frames[0].Data);
        Assert.Equal("msg_01Thinking", start.RootElement.GetProperty("message").GetProperty("id").GetString());
        Assert.Equal(30, start.RootElement.GetProperty("message").GetProperty("usage").GetProperty("cache_read_input_tokens").GetInt32());
        using var delta = JsonDocument.Parse(frames[^2].Data);
        Assert.Equal("end_turn", delta.RootElement.GetProperty("delta").GetProperty("stop_reason").GetString());
        Assert.Equal(12, delta.RootElement.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task A_recorded_compaction_block_is_passed_through_and_the_official_sdk_reads_the_stream()
    {
        var recording = Encoding.UTF8.GetString(Fixtures.Read("anthropic/compaction_response.sse"));
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/compaction_response.sse"));
        await using var gateway = await StartAsync(upstream);
        using var client = new AnthropicClient(new ClientOptions { BaseUrl = gateway.BaseAddress.ToString().TrimEnd('/'), ApiKey = "sk-ant-test-unused", MaxRetries = 0 });

        var types = new List<string>();
        var text = new StringBuilder();
        await foreach (var streamEvent in client.Messages.CreateStreaming(new MessageCreateParams
        {
            Model = "claude",
            MaxTokens = 100,
            Messages = [new UserMessageParam("Hello")],
        }))
        {
            if (streamEvent.TryPickContentBlockStart(out var block))
            {
                types.Add(JsonSerializer.Serialize(block.ContentBlock.Json).Contains("compaction", StringComparison.Ordinal) ? "compaction" : "other");
            }
            else if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var textDelta))
            {
                text.Append(textDelta.Text);
            }
        }

        Assert.Equal("Hello there!", text.ToString());
        Assert.Equal("compaction", types[0]);

        // The raw stream carries the compaction delta exactly as recorded.
        var (sse, _) = await PostAsync(gateway, "v1/messages", """{"model": "claude", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "Hello"}]}""");
        var recorded = Frames(recording).Single(f => f.Data.Contains("compaction_delta", StringComparison.Ordinal)).Data;
        Assert.Contains(Frames(sse), f => f.Event == "content_block_delta" && f.Data == recorded);
    }

    [Fact]
    public async Task A_non_streamed_answer_carries_the_assembled_thinking_and_compaction_blocks()
    {
        await using var thinking = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(ThinkingStream.ReplaceLineEndings("\n")));
        await using var gateway = await StartAsync(thinking);

        var (body, _) = await PostAsync(gateway, "v1/messages", ClientBody.Replace("\"stream\": true", "\"stream\": false", StringComparison.Ordinal));
        using var message = JsonDocument.Parse(body);
        var content = message.RootElement.GetProperty("content");
        Assert.Equal(2, content.GetArrayLength());
        Assert.Equal("thinking", content[0].GetProperty("type").GetString());
        Assert.Equal("The user wants a greeting.", content[0].GetProperty("thinking").GetString());
        Assert.Equal("EqQBCgIYAhIM1gbcDa9GJwZA2b3h", content[0].GetProperty("signature").GetString());
        Assert.Equal("Hello!", content[1].GetProperty("text").GetString());
        Assert.Equal("msg_01Thinking", message.RootElement.GetProperty("id").GetString());
        Assert.Equal("end_turn", message.RootElement.GetProperty("stop_reason").GetString());

        await using var compaction = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/compaction_response.sse"));
        await using var second = await StartAsync(compaction);
        var (compacted, _) = await PostAsync(second, "v1/messages", """{"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}""");
        using var recorded = JsonDocument.Parse(compacted);
        var block = recorded.RootElement.GetProperty("content")[0];
        Assert.Equal("compaction", block.GetProperty("type").GetString());
        Assert.Equal("Earlier conversation summarized.", block.GetProperty("content").GetString());
        Assert.Equal("EpwBCioIDxgCEAEYASJALd_opaque_compaction_payload", block.GetProperty("encrypted_content").GetString());
        Assert.Equal("Hello there!", recorded.RootElement.GetProperty("content")[1].GetProperty("text").GetString());
    }

    [Fact]
    public async Task An_anthropic_stop_reason_without_an_openai_equivalent_reaches_anthropic_clients_as_it_was()
    {
        var recording = ThinkingStream.ReplaceLineEndings("\n").Replace("\"end_turn\"", "\"model_context_window_exceeded\"", StringComparison.Ordinal);
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(recording));
        await using var gateway = await StartAsync(upstream);

        var (sse, _) = await PostAsync(gateway, "v1/messages", ClientBody);
        using (var delta = JsonDocument.Parse(Frames(sse).Single(f => f.Event == "message_delta").Data))
        {
            Assert.Equal("model_context_window_exceeded", delta.RootElement.GetProperty("delta").GetProperty("stop_reason").GetString());
        }

        var (body, _) = await PostAsync(gateway, "v1/messages", ClientBody.Replace("\"stream\": true", "\"stream\": false", StringComparison.Ordinal));
        using (var message = JsonDocument.Parse(body))
        {
            Assert.Equal("model_context_window_exceeded", message.RootElement.GetProperty("stop_reason").GetString());
        }

        // An OpenAI client gets the nearest finish_reason.
        using var response = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(
            """{"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]}"""));
        using var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("length", answer.RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_server_tool_goes_to_an_anthropic_upstream_and_any_other_backend_refuses_it_by_name()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(ThinkingStream.ReplaceLineEndings("\n")));
        await using var openai = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes("{}"), "application/json");
        await using var gateway = await TestGateway.StartAsync(options =>
        {
            options.Models.Add(new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "claude-sonnet-4-5", MaxAttempts = 1 });
            options.Models.Add(new ModelOptions { Name = "remote", Provider = "openai", BaseUrl = openai.BaseUrl + "/v1", MaxAttempts = 1 });
        });
        const string Body = """
            {"model": "MODEL", "max_tokens": 200, "stream": true,
             "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
             "messages": [{"role": "user", "content": "What happened today?"}]}
            """;

        var (_, ok) = await PostAsync(gateway, "v1/messages", Body.Replace("MODEL", "claude", StringComparison.Ordinal));
        Assert.Equal(200, (int)ok.StatusCode);
        var sent = Assert.Single(upstream.Requests).Json;
        Assert.Equal("web_search_20250305", sent.GetProperty("tools")[0].GetProperty("type").GetString());
        Assert.Equal(2, sent.GetProperty("tools")[0].GetProperty("max_uses").GetInt32());

        var (refusal, refused) = await PostAsync(gateway, "v1/messages", Body.Replace("MODEL", "sim-fast", StringComparison.Ordinal));
        Assert.Equal(400, (int)refused.StatusCode);
        using var error = JsonDocument.Parse(refusal);
        Assert.Equal("invalid_request_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("tools[0].type is the server tool \"web_search_20250305\"", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);

        // An upstream of another provider refuses it before anything is sent.
        var (_, remote) = await PostAsync(gateway, "v1/messages", Body.Replace("MODEL", "remote", StringComparison.Ordinal));
        Assert.Equal(400, (int)remote.StatusCode);
        Assert.Empty(openai.Requests);
    }

    [Fact]
    public async Task An_upstream_error_after_passed_through_blocks_ends_the_stream_with_an_error_event_not_a_clean_stop()
    {
        var recording = ThinkingStream.ReplaceLineEndings("\n");
        var cut = recording[..recording.IndexOf("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}", StringComparison.Ordinal)]
            + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(cut));
        await using var gateway = await StartAsync(upstream);

        var (sse, response) = await PostAsync(gateway, "v1/messages", ClientBody);

        Assert.Equal(200, (int)response.StatusCode);
        var frames = Frames(sse).Where(f => f.Event != "ping").ToList();
        Assert.Contains(frames, f => f.Data.Contains("\"text\":\"Hello!\"", StringComparison.Ordinal));
        Assert.Equal("error", frames[^1].Event);
        Assert.Contains("overloaded_error", frames[^1].Data, StringComparison.Ordinal);
        Assert.DoesNotContain(frames, f => f.Event is "message_stop" or "message_delta");
    }

    [Fact]
    public async Task Other_dialects_get_the_translated_answer_and_the_upstream_a_body_built_by_sluice()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(ThinkingStream.ReplaceLineEndings("\n")));
        await using var gateway = await StartAsync(upstream);

        using var response = await gateway.Client.PostAsync("v1/chat/completions", TestGateway.Json(
            """{"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]}"""));
        using var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal("Hello!", answer.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        var sent = Assert.Single(upstream.Requests).Json;
        Assert.False(sent.TryGetProperty("thinking", out _));
        Assert.Equal(50, sent.GetProperty("max_tokens").GetInt32());
    }
}
