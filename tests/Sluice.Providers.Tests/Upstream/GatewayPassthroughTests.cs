using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Hosting;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Adapters behind the real gateway relay: what a client of Sluice finally receives.</summary>
public sealed class GatewayPassthroughTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task OpenAI_stream_reaches_the_client_byte_for_byte_with_one_identity(bool includeUsage)
    {
        var recording = Fixtures.Read("openai/tool-calls-parallel.sse");
        await using var upstream = await ReplayUpstream.StartAsync(recording);
        await using var gateway = await StartGatewayAsync(new ModelOptions { Name = "gpt", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", UpstreamModel = "gpt-4o" });

        var events = await PostStreamAsync(gateway, """{"model":"gpt","messages":[{"role":"user","content":"Weather?"}],"stream":true,"stream_options":{"include_usage":INCLUDE}}"""
            .Replace("INCLUDE", includeUsage ? "true" : "false", StringComparison.Ordinal));

        var upstreamPayloads = UpstreamKit.DataPayloads(recording);
        var chunkCount = upstreamPayloads.Count - 2;
        Assert.Equal(chunkCount + (includeUsage ? 2 : 1), events.Count);
        for (var i = 0; i < chunkCount; i++)
        {
            Assert.Equal(upstreamPayloads[i], events[i].Data.ToArray());
        }

        Assert.True(events[^1].IsDone);
        if (includeUsage)
        {
            using var usage = JsonDocument.Parse(events[^2].Data);
            using var first = JsonDocument.Parse(upstreamPayloads[0]);
            Assert.Equal(first.RootElement.GetProperty("id").GetString(), usage.RootElement.GetProperty("id").GetString());
            Assert.Equal(first.RootElement.GetProperty("model").GetString(), usage.RootElement.GetProperty("model").GetString());
            Assert.Equal(0, usage.RootElement.GetProperty("choices").GetArrayLength());
            Assert.Equal(149, usage.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
            Assert.Equal(60, usage.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }

        var sent = upstream.Requests[0].Json;
        Assert.Equal("gpt-4o", sent.GetProperty("model").GetString());
        Assert.True(sent.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
    }

    [Fact]
    public async Task OpenAI_non_streaming_answer_is_assembled_with_refusal_and_upstream_usage()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("openai/refusal.sse"));
        await using var gateway = await StartGatewayAsync(new ModelOptions { Name = "gpt", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1" });
        using var client = new HttpClient { BaseAddress = gateway.BaseAddress };

        using var response = await client.PostAsync("v1/chat/completions", Json("""{"model":"gpt","messages":[{"role":"user","content":"Help me."}]}"""));
        Assert.Equal(200, (int)response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var message = body.RootElement.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("I'm sorry, I can't assist with that request.", message.GetProperty("refusal").GetString());
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        Assert.Equal(79, body.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(11, body.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Anthropic_stream_is_converted_to_openai_chunks()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("anthropic/tool_use_response.sse"));
        await using var gateway = await StartGatewayAsync(new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1" });

        var events = await PostStreamAsync(gateway, """{"model":"claude","messages":[{"role":"user","content":"Weather in Paris?"}],"stream":true,"stream_options":{"include_usage":true}}""");

        Assert.True(events[^1].IsDone);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e.Data)).ToList();
        try
        {
            var text = string.Concat(chunks.SelectMany(c => c.RootElement.GetProperty("choices").EnumerateArray())
                .Select(c => c.GetProperty("delta")).Where(d => d.TryGetProperty("content", out _)).Select(d => d.GetProperty("content").GetString()));
            Assert.Equal("I'll check the current weather in Paris for you.", text);
            var arguments = string.Concat(chunks.SelectMany(c => c.RootElement.GetProperty("choices").EnumerateArray())
                .Select(c => c.GetProperty("delta")).Where(d => d.TryGetProperty("tool_calls", out _))
                .Select(d => d.GetProperty("tool_calls")[0].GetProperty("function").TryGetProperty("arguments", out var a) ? a.GetString() : string.Empty));
            Assert.Equal("{\"location\": \"Paris\"}", arguments);
            Assert.Equal(377, chunks[^1].RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
            Assert.Equal("tool_calls", chunks[^2].RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        }
        finally
        {
            chunks.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task Upstream_error_mid_stream_ends_with_an_error_frame_and_no_done()
    {
        await using var upstream = await ReplayUpstream.StartAsync(Fixtures.Read("gemini/vertexai/streaming-failure-error-mid-stream.sse"));
        await using var gateway = await StartGatewayAsync(new ModelOptions { Name = "gemini", Provider = "gemini", BaseUrl = upstream.BaseUrl + "/v1" });

        var events = await PostStreamAsync(gateway, """{"model":"gemini","messages":[{"role":"user","content":"Count"}],"stream":true}""");

        Assert.DoesNotContain(events, e => e.IsDone);
        using var last = JsonDocument.Parse(events[^1].Data);
        Assert.Contains("The operation was cancelled.", last.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upstream_401_reaches_the_client_as_a_502_upstream_auth_error()
    {
        await using var upstream = await ReplayUpstream.StartAsync(
            UpstreamKit.Utf8("{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}"), "application/json", 401);
        await using var gateway = await StartGatewayAsync(new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = upstream.BaseUrl + "/v1" });
        using var client = new HttpClient { BaseAddress = gateway.BaseAddress };

        using var response = await client.PostAsync("v1/chat/completions", Json("""{"model":"claude","messages":[{"role":"user","content":"Hi"}],"stream":true}"""));
        // The client's key is fine: the gateway's own upstream key was refused, which is the operator's to fix.
        Assert.Equal(502, (int)response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.DoesNotContain("invalid x-api-key", body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("upstream_error", body.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("upstream_auth_error", body.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    private static Task<RunningGateway> StartGatewayAsync(ModelOptions model) =>
        SluiceGateway.StartAsync(
            new GatewayOptions { Host = "127.0.0.1", Port = 0, Models = [model] },
            configureLogging: logging => { });

    private static StringContent Json(string body) => new(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));

    private static async Task<List<SseEvent>> PostStreamAsync(RunningGateway gateway, string body)
    {
        using var client = new HttpClient { BaseAddress = gateway.BaseAddress, Timeout = TimeSpan.FromSeconds(20) };
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Json(body) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        return [.. (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment)];
    }
}
