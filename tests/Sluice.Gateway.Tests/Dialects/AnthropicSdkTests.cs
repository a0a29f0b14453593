using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>The official Anthropic .NET SDK — a real third-party client — against Sluice's <c>/v1/messages</c>.</summary>
public sealed class AnthropicSdkTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;
    private AnthropicClient _client = null!;

    public async Task InitializeAsync()
    {
        _gateway = await TestGateway.StartAsync(options => options.Streaming.PingIntervalSeconds = 0.05);
        _client = new AnthropicClient(new ClientOptions
        {
            BaseUrl = _gateway.BaseAddress.ToString().TrimEnd('/'),
            ApiKey = "sk-ant-test-unused",
            MaxRetries = 0,
            Timeout = TimeSpan.FromSeconds(30),
        });
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _gateway.DisposeAsync();
    }

    private static MessageCreateParams Params(string prompt, long maxTokens = 30, IReadOnlyDictionary<string, string>? metadata = null) => new()
    {
        Model = "sim-fast",
        MaxTokens = maxTokens,
        Messages = [new UserMessageParam(prompt)],
        Metadata = metadata is null ? null : Metadata.FromRawUnchecked(metadata.ToDictionary(p => p.Key, p => JsonSerializer.SerializeToElement(p.Value))),
    };

    [Fact]
    public async Task Streams_text_with_usage_that_matches_count_tokens_and_a_non_streamed_request()
    {
        var text = new StringBuilder();
        long? inputTokens = null;
        long? outputTokens = null;
        ApiEnum<string, StopReason>? stopReason = null;
        var deltas = 0;
        await foreach (var streamEvent in _client.Messages.CreateStreaming(Params("Describe the migration of arctic terns")))
        {
            if (streamEvent.TryPickStart(out var start))
            {
                inputTokens = start.Message.Usage.InputTokens;
            }
            else if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var textDelta))
            {
                deltas++;
                text.Append(textDelta.Text);
            }
            else if (streamEvent.TryPickDelta(out var messageDelta))
            {
                stopReason = messageDelta.Delta.StopReason;
                outputTokens = messageDelta.Usage.OutputTokens;
            }
        }

        Assert.Equal(30, deltas);
        Assert.Matches("(?i)describe|migration|arctic|terns", text.ToString());
        Assert.Equal(StopReason.MaxTokens, stopReason!.Value());
        Assert.Equal(30, outputTokens);
        var count = await _client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = "sim-fast",
            Messages = [new UserMessageParam("Describe the migration of arctic terns")],
        });
        Assert.Equal(count.InputTokens, inputTokens);
        Assert.True(inputTokens > 5);

        var message = await _client.Messages.Create(Params("Describe the migration of arctic terns"));
        Assert.True(message.Content[0].TryPickText(out var block));
        Assert.Matches("(?i)describe|migration|arctic|terns", block.Text);
        Assert.Equal(30, message.Usage.OutputTokens);
        Assert.Equal(inputTokens, message.Usage.InputTokens);
        Assert.Equal(StopReason.MaxTokens, message.StopReason!.Value());
    }

    [Fact]
    public async Task Streams_a_tool_call_the_sdk_assembles_from_input_json_delta_fragments()
    {
        var parameters = Params("What's the weather in Oslo?", 200) with
        {
            Tools =
            [
                new Tool
                {
                    Name = "get_weather",
                    Description = "Current weather for a city",
                    InputSchema = new InputSchema
                    {
                        Properties = new Dictionary<string, JsonElement>
                        {
                            ["location"] = JsonSerializer.SerializeToElement(new { type = "string" }),
                            ["days"] = JsonSerializer.SerializeToElement(new { type = "integer" }),
                        },
                        Required = ["location"],
                    },
                },
            ],
        };

        var fragments = 0;
        var events = new List<RawMessageStreamEvent>();
        await foreach (var streamEvent in _client.Messages.CreateStreaming(parameters))
        {
            events.Add(streamEvent);
            if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickInputJson(out _))
            {
                fragments++;
            }
        }

        Assert.True(fragments > 1, $"expected the arguments in several fragments, got {fragments}");
        var message = await events.ToAsyncEnumerable().Aggregate();
        var toolUse = Assert.Single(message.Content.Select(c => c.TryPickToolUse(out var t) ? t : null).OfType<ToolUseBlock>());
        Assert.Equal("get_weather", toolUse.Name);
        Assert.StartsWith("call_", toolUse.ID, StringComparison.Ordinal);
        Assert.Contains("Oslo", toolUse.Input["location"].GetString(), StringComparison.Ordinal);
        Assert.Equal(StopReason.ToolUse, message.StopReason!.Value());
    }

    [Fact]
    public async Task Missing_max_tokens_is_a_400_the_sdk_raises_as_bad_request()
    {
        var body = new Dictionary<string, JsonElement>
        {
            ["model"] = JsonSerializer.SerializeToElement("sim-fast"),
            ["messages"] = JsonSerializer.SerializeToElement(new[] { new { role = "user", content = "Hello" } }),
        };
        var parameters = MessageCreateParams.FromRawUnchecked(new Dictionary<string, JsonElement>(), new Dictionary<string, JsonElement>(), body);

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => _client.Messages.Create(parameters));
        Assert.Equal("invalid_request_error", error.Type?.Raw());
        Assert.Contains("max_tokens", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_model_is_a_404_not_found_error()
    {
        var error = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => _client.Messages.Create(Params("Hi") with { Model = "claude-nonexistent" }));
        Assert.Equal("not_found_error", error.Type?.Raw());
        Assert.Contains("/v1/models", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Overloaded_simulation_is_a_529_overloaded_error()
    {
        var error = await Assert.ThrowsAsync<AnthropicOverloadedException>(
            () => _client.Messages.Create(Params("Hi", metadata: new Dictionary<string, string> { ["sim_fail_status"] = "503" })));
        Assert.Equal("overloaded_error", error.Type?.Raw());
    }

    [Fact]
    public async Task A_failure_before_the_first_token_of_a_stream_is_an_http_error_not_an_event()
    {
        var error = await Assert.ThrowsAsync<AnthropicRateLimitException>(async () =>
        {
            await foreach (var unused in _client.Messages.CreateStreaming(
                Params("Hi", metadata: new Dictionary<string, string> { ["sim_fail_status"] = "429", ["sim_retry_after"] = "3" })))
            {
            }
        });

        Assert.Equal(429, (int)error.StatusCode);
        Assert.Equal("rate_limit_error", error.Type?.Raw());
    }

    [Fact]
    public async Task A_failure_mid_stream_is_an_error_event_after_the_text_already_sent()
    {
        var text = new StringBuilder();
        var error = await Assert.ThrowsAsync<AnthropicSseException>(async () =>
        {
            await foreach (var streamEvent in _client.Messages.CreateStreaming(
                Params("Tell me about lighthouses", metadata: new Dictionary<string, string> { ["sim_fail_after_tokens"] = "5" })))
            {
                if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var textDelta))
                {
                    text.Append(textDelta.Text);
                }
            }
        });

        Assert.Equal(5, TokenCount(text.ToString()));
        Assert.Equal("api_error", error.Type?.Raw());
        Assert.Contains("Simulated failure after 5 tokens", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Silences_get_anthropic_ping_events_which_the_sdk_skips()
    {
        var metadata = new Dictionary<string, string> { ["sim_stall_ms"] = "400", ["sim_stall_after_tokens"] = "2" };
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/messages")
        {
            Content = TestGateway.Json("""
                {"model": "sim-fast", "max_tokens": 4, "stream": true, "metadata": {"sim_stall_ms": "400", "sim_stall_after_tokens": "2"},
                 "messages": [{"role": "user", "content": "Hello"}]}
                """),
        };
        request.Headers.Add("x-api-key", "sk-ant-test-unused");
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var response = await _gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await SseTestClient.ReadAllAsync(response);

        Assert.DoesNotContain(events, e => e.IsComment);
        var pings = events.Where(e => e.EventType == "ping").ToList();
        Assert.NotEmpty(pings);
        Assert.All(pings, p => Assert.Equal("ping", p.Json().GetProperty("type").GetString()));
        Assert.Equal("message_start", events[0].EventType);
        Assert.Equal("message_stop", events[^1].EventType);

        // The SDK skips them and assembles the same four tokens.
        var message = await _client.Messages.CreateStreaming(Params("Hello", 4, metadata)).Aggregate();
        Assert.True(message.Content[0].TryPickText(out var text));
        Assert.Equal(4, TokenCount(text.Text));
    }

    [Fact]
    public async Task Accepts_bearer_auth_system_blocks_and_tool_results_in_a_raw_request()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/messages")
        {
            Content = TestGateway.Json("""
                {"model": "sim-fast", "max_tokens": 12, "system": [{"type": "text", "text": "Be brief."}],
                 "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
                 "messages": [
                   {"role": "user", "content": "Weather in Lisbon?"},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lisbon"}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny and 24 degrees"}]}]}
                """),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-test-unused");
        using var response = await _gateway.Client.SendAsync(request);

        Assert.Equal(200, (int)response.StatusCode);
        Assert.True(response.Headers.Contains("request-id"));
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var content = body.RootElement.GetProperty("content");
        Assert.Equal("text", content[0].GetProperty("type").GetString());

        // The tool result reached the model as a tool message: the simulated model answers instead of calling again,
        // about the question and what the tool returned.
        Assert.Single(content.EnumerateArray());
        Assert.Matches("(?i)weather|lisbon|sunny|degrees", content[0].GetProperty("text").GetString());
        Assert.Equal("max_tokens", body.RootElement.GetProperty("stop_reason").GetString());
    }

    [Fact]
    public async Task Count_tokens_asks_an_anthropic_upstream_and_estimates_for_one_without_a_counter()
    {
        await using var anthropic = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes("""{"input_tokens": 1234}"""), "application/json");
        await using var openai = await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes("{}"), "application/json");
        await using var gateway = await TestGateway.StartAsync(options =>
        {
            options.Models.Add(new Providers.ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = anthropic.BaseUrl + "/v1", UpstreamModel = "claude-sonnet-4-5" });
            options.Models.Add(new Providers.ModelOptions { Name = "remote", Provider = "openai", BaseUrl = openai.BaseUrl + "/v1" });
        });
        const string Body = """{"model": "MODEL", "system": "Be brief.", "messages": [{"role": "user", "content": "Hi there, how are you?"}]}""";

        // The official SDK's count, answered by the Anthropic upstream's own count_tokens.
        using var client = new AnthropicClient(new ClientOptions { BaseUrl = gateway.BaseAddress.ToString().TrimEnd('/'), ApiKey = "sk-ant-test-unused", MaxRetries = 0 });
        var counted = await client.Messages.CountTokens(new MessageCountTokensParams { Model = "claude", Messages = [new UserMessageParam("Hi there, how are you?")] });
        Assert.Equal(1234, counted.InputTokens);
        var sent = Assert.Single(anthropic.Requests);
        Assert.Equal("/v1/messages/count_tokens", sent.PathAndQuery);
        Assert.Equal("claude-sonnet-4-5", sent.Json.GetProperty("model").GetString());
        Assert.Equal("Hi there, how are you?", sent.Json.GetProperty("messages")[0].GetProperty("content").GetString());
        Assert.False(sent.Json.TryGetProperty("max_tokens", out _));

        using var estimated = await gateway.Client.PostAsync("v1/messages/count_tokens", TestGateway.Json(Body.Replace("MODEL", "remote", StringComparison.Ordinal)));
        Assert.Equal(200, (int)estimated.StatusCode);
        Assert.Equal("estimate", estimated.Headers.GetValues("x-sluice-token-count").Single());
        var plain = JsonDocument.Parse(await estimated.Content.ReadAsStringAsync()).RootElement.GetProperty("input_tokens").GetInt32();
        Assert.True(plain > 0);

        // Tool definitions are part of the prompt, so of the estimate.
        using var withTools = await gateway.Client.PostAsync("v1/messages/count_tokens", TestGateway.Json(Body.Replace("MODEL", "remote", StringComparison.Ordinal).Replace(
            "\"messages\"", "\"tools\": [{\"name\": \"get_weather\", \"description\": \"The current weather in a city, in degrees and words\", \"input_schema\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}], \"messages\"", StringComparison.Ordinal)));
        Assert.True(JsonDocument.Parse(await withTools.Content.ReadAsStringAsync()).RootElement.GetProperty("input_tokens").GetInt32() > plain + 10);
        Assert.Empty(openai.Requests);
    }

    private static int TokenCount(string text) => Protocol.TokenCounter.Count(text);
}
