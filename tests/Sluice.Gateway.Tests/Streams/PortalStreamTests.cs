using System.Net;
using System.Text.Json;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;

namespace Sluice.Gateway.Tests.Streams;

/// <summary><c>POST /api/llm/chat/stream</c> over a real socket: content, done and error events, resume.</summary>
public sealed class PortalStreamTests
{
    private const string Body = """{"model":"sim-quick","messages":[{"role":"user","content":"Tell me about lighthouses"}],"temperature":0.5,"top_p":0.9,"max_tokens":20,"seed":3}""";

    private static Task<HttpResponseMessage> PostAsync(TestGateway gateway, string body) =>
        gateway.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "api/llm/chat/stream") { Content = TestGateway.Json(body) },
            HttpCompletionOption.ResponseHeadersRead);

    [Fact]
    public async Task Content_events_then_a_done_event_with_usage_numbered_for_resume()
    {
        await using var gateway = await ResumeTests.StartAsync();
        using var response = await PostAsync(gateway, Body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var read = await ResumeTests.ReadAllAsync(response);

        var events = read.Data.Select(d => JsonDocument.Parse(d).RootElement).ToList();
        Assert.True(events.Count > 5);
        Assert.All(events[..^1], e => Assert.False(string.IsNullOrEmpty(e.GetProperty("content").GetString())));
        var done = events[^1];
        Assert.True(done.GetProperty("done").GetBoolean());
        Assert.Contains(done.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        Assert.InRange(done.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 5, 20);
        Assert.True(done.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() > 0);
        Assert.False(done.TryGetProperty("session_id", out _));
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), read.Ids);

        // The same stream, resumed after event 3.
        var tail = await ResumeTests.ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}?after=3", HttpCompletionOption.ResponseHeadersRead));
        Assert.Equal(read.Data.Skip(3), tail.Data);
    }

    [Fact]
    public async Task A_failure_mid_stream_is_an_error_event_and_bad_input_an_OpenAI_error()
    {
        await using var gateway = await ResumeTests.StartAsync();
        using var failing = await PostAsync(gateway, Body.Replace("\"seed\":3", "\"seed\":3,\"metadata\":{\"sim_fail_after_tokens\":\"4\"}", StringComparison.Ordinal));
        var read = await ResumeTests.ReadAllAsync(failing);
        var last = JsonDocument.Parse(read.Data[^1]).RootElement;
        Assert.False(string.IsNullOrEmpty(last.GetProperty("error").GetString()));
        Assert.DoesNotContain(read.Data, d => d.Contains("\"done\"", StringComparison.Ordinal));

        using var bad = await PostAsync(gateway, """{"messages":[{"role":"user","content":"hi"}],"temperature":7}""");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var error = JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("temperature", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task A_resumed_portal_stream_that_is_lost_ends_with_a_portal_error_event_not_an_OpenAI_one()
    {
        // A buffer small enough to outgrow while the resumed copy is being read.
        await using var gateway = await ResumeTests.StartAsync(o => o.Streaming.MaxStreamBufferBytes = 3_000);
        using var response = await PostAsync(gateway, Body.Replace("\"max_tokens\":20", "\"max_tokens\":300", StringComparison.Ordinal));
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));
        var original = ResumeTests.ReadAllAsync(response);
        var copy = await ResumeTests.ReadAllAsync(await gateway.Client.GetAsync($"v1/streams/{streamId}", HttpCompletionOption.ResponseHeadersRead));

        var last = JsonDocument.Parse(copy.Data[^1]).RootElement;
        Assert.Equal("stream_lost", last.GetProperty("code").GetString());
        Assert.Equal(JsonValueKind.String, last.GetProperty("error").ValueKind);
        Assert.True(JsonDocument.Parse(copy.Data[0]).RootElement.TryGetProperty("content", out _));

        // The original client is not affected: its answer goes on to the end.
        Assert.True(JsonDocument.Parse((await original).Data[^1]).RootElement.GetProperty("done").GetBoolean());
    }
}
