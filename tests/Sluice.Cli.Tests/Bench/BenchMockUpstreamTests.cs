using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Sluice.Cli.Bench;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

public sealed class BenchMockUpstreamTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    [Fact]
    public async Task Bench_against_mock_counts_K_chunks_per_request()
    {
        const int chunks = 5;
        await using var mock = await BenchHarness.StartMockAsync(chunks, chunkDelayMs: 1);
        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = mock.BaseAddress,
            Model = "mock",
            Concurrency = 3,
            Requests = 30,
            Warmup = 3,
        });

        Assert.Equal(30, result.Succeeded);
        Assert.Equal(0, result.Failed);
        Assert.Equal(30L * chunks, result.Chunks);
        Assert.Equal(30L * chunks, result.CompletionTokens);
        Assert.Equal(30L * (chunks - 1), result.GapMs.Count);
        BenchHarness.AssertOrdered(result.TtftMs);
        BenchHarness.AssertOrdered(result.GapMs);
        Assert.True(result.GapMs.P50 <= result.LatencyMs.Max, "a gap lies inside a stream");
    }

    [Fact]
    public async Task Duration_bound_stops_an_endless_run_and_counts_open_streams_as_cut()
    {
        // 100 000 chunks 50 ms apart: each stream would take well over an hour.
        await using var mock = await BenchHarness.StartMockAsync(100_000, chunkDelayMs: 50);
        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = mock.BaseAddress,
            Concurrency = 4,
            Requests = 1_000_000,
            Duration = TimeSpan.FromSeconds(1),
        });

        Assert.Equal("duration", result.StoppedBy);
        Assert.Equal(0, result.Succeeded);
        Assert.Equal(0, result.Failed);
        Assert.Equal(4, result.Cut);
        Assert.True(result.GapMs.Count > 0, "chunks arrived before the bound hit");
    }

    [Fact]
    public async Task Nothing_listening_stops_at_once_as_unreachable()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var result = await BenchHarness.RunAsync(new BenchSettings
        {
            BaseUrl = new Uri($"http://127.0.0.1:{port}"),
            Concurrency = 2,
            Requests = 1_000_000,
        });

        Assert.Equal("unreachable", result.StoppedBy);
        Assert.Equal(0, result.Succeeded);
        Assert.True(result.Errors["connect"] >= 1);
        Assert.True(result.Failed + result.Cut <= 2, "the run stops after the first refused connection");
    }

    [Fact]
    public async Task Mock_streams_the_OpenAI_format_with_usage_then_done()
    {
        await using var mock = await BenchHarness.StartMockAsync(3, chunkText: "a \"quoted\" é");
        using var response = await PostAsync(mock, """{"model":"x","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}""");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await SseTestClient.ReadAllAsync(response);
        Assert.Equal(7, events.Count); // role, 3 content, finish, usage, [DONE]
        Assert.True(events[^1].IsDone);
        var chunks = events.Take(6).Select(e => e.Json()).ToList();
        var id = chunks[0].GetProperty("id").GetString();
        Assert.StartsWith("chatcmpl-", id, StringComparison.Ordinal);
        Assert.All(chunks, c =>
        {
            Assert.Equal(id, c.GetProperty("id").GetString());
            Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString());
            Assert.Equal("mock", c.GetProperty("model").GetString());
            Assert.True(c.GetProperty("created").GetInt64() > 0);
        });
        var role = chunks[0].GetProperty("choices")[0].GetProperty("delta");
        Assert.Equal("assistant", role.GetProperty("role").GetString());
        Assert.Equal(string.Empty, role.GetProperty("content").GetString());
        for (var i = 1; i <= 3; i++)
        {
            var choice = chunks[i].GetProperty("choices")[0];
            Assert.Equal("a \"quoted\" é", choice.GetProperty("delta").GetProperty("content").GetString());
            Assert.Equal(JsonValueKind.Null, choice.GetProperty("finish_reason").ValueKind);
        }

        var finish = chunks[4].GetProperty("choices")[0];
        Assert.Equal("stop", finish.GetProperty("finish_reason").GetString());
        Assert.Empty(finish.GetProperty("delta").EnumerateObject());
        Assert.Equal(0, chunks[5].GetProperty("choices").GetArrayLength());
        var usage = chunks[5].GetProperty("usage");
        Assert.Equal(3, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + 3, usage.GetProperty("total_tokens").GetInt32());
    }

    [Theory]
    [InlineData(MockPacing.Precise)]
    [InlineData(MockPacing.Timer)]
    public async Task Mock_puts_each_chunks_send_time_in_its_text_when_asked(MockPacing pacing)
    {
        await using var mock = await MockUpstream.StartAsync(new MockUpstreamOptions { Port = 0, Chunks = 3, ChunkDelayMs = 50, TimestampChunks = true, Pacing = pacing });
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        using var response = await PostAsync(mock, """{"model":"x","messages":[],"stream":true}""");
        var events = await SseTestClient.ReadAllAsync(response);
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var stamps = events.Skip(1).Take(3).Select(e =>
        {
            var text = e.Json().GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString()!;
            Assert.Matches(@"^t=\d+\.\d{3};$", text);
            return double.Parse(text[2..^1], System.Globalization.CultureInfo.InvariantCulture);
        }).ToList();
        Assert.All(stamps, t => Assert.InRange(t, before - 1, after + 1));
        if (pacing == MockPacing.Precise)
        {
            // Each chunk at its own time from the request's start (a late one does not push the next back, so the gap
            // after a late chunk can be short): chunk i no earlier than i × 50 ms after the request was sent.
            Assert.True(stamps[1] >= before + 50 - 1 && stamps[2] >= before + 100 - 1, $"chunks due 50 ms apart from {before}: {string.Join(", ", stamps)}");
        }
        else
        {
            Assert.True(stamps[1] - stamps[0] >= 45 && stamps[2] - stamps[1] >= 45, $"chunks 50 ms apart: {string.Join(", ", stamps)}");
        }
    }

    [Fact]
    public async Task Mock_sends_no_usage_chunk_unless_asked()
    {
        await using var mock = await BenchHarness.StartMockAsync(2);
        using var response = await PostAsync(mock, """{"model":"x","messages":[],"stream":true}""");
        var events = await SseTestClient.ReadAllAsync(response);

        Assert.Equal(5, events.Count); // role, 2 content, finish, [DONE]
        Assert.DoesNotContain(events.Where(e => !e.IsDone), e => e.Json().TryGetProperty("usage", out _));
    }

    [Fact]
    public async Task Mock_answers_non_streaming_with_one_completion_and_lists_its_model()
    {
        await using var mock = await BenchHarness.StartMockAsync(4, chunkText: "ab");
        using var response = await PostAsync(mock, """{"model":"x","messages":[{"role":"user","content":"Hi"}],"stream":false}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = completion.RootElement;
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        var choice = root.GetProperty("choices")[0];
        Assert.Equal("abababab", choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(4, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        using var models = JsonDocument.Parse(await Http.GetStringAsync(new Uri(mock.BaseAddress, "v1/models")));
        Assert.Equal("mock", models.RootElement.GetProperty("data")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task Mock_rejects_a_body_that_is_not_json_with_an_OpenAI_error()
    {
        await using var mock = await BenchHarness.StartMockAsync(1);
        using var response = await PostAsync(mock, "not json");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Contains("JSON", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http2Only_answers_HTTP2_without_TLS_and_refuses_HTTP11()
    {
        await using var mock = await MockUpstream.StartAsync(new MockUpstreamOptions { Port = 0, Chunks = 3, ChunkText = " h2", Http2Only = true });
        var body = """{"model":"mock","stream":true,"messages":[{"role":"user","content":"hi"}]}""";

        using var h2 = new HttpRequestMessage(HttpMethod.Post, new Uri(mock.BaseAddress, "v1/chat/completions"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        using var answer = await Http.SendAsync(h2);
        var text = await answer.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(HttpVersion.Version20, answer.Version);
        Assert.Equal(3, text.Split("\" h2\"").Length - 1);
        Assert.EndsWith("data: [DONE]\n\n", text, StringComparison.Ordinal);

        // An HTTP/1.1 request on the same endpoint is not served.
        using var h11 = await PostAsync(mock, body);
        Assert.False(h11.IsSuccessStatusCode, $"HTTP/1.1 answered {(int)h11.StatusCode} {h11.Version}");
    }

    private static Task<HttpResponseMessage> PostAsync(MockUpstream mock, string body) =>
        Http.PostAsync(new Uri(mock.BaseAddress, "v1/chat/completions"), new StringContent(body, Encoding.UTF8, "application/json"));
}
