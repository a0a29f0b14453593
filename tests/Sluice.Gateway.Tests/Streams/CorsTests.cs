using System.Net;

namespace Sluice.Gateway.Tests.Streams;

/// <summary>CORS: none by default; configured origins get preflights answered and the stream id exposed.</summary>
public sealed class CorsTests
{
    private static HttpRequestMessage Preflight(string path, string origin)
    {
        var request = new HttpRequestMessage(HttpMethod.Options, path);
        request.Headers.Add("Origin", origin);
        request.Headers.Add("Access-Control-Request-Method", "POST");
        request.Headers.Add("Access-Control-Request-Headers", "content-type,authorization");
        return request;
    }

    [Fact]
    public async Task An_allowed_origin_gets_its_preflight_answered_for_API_paths_and_the_stream_id_exposed()
    {
        await using var gateway = await ResumeTests.StartAsync(o => o.Cors.AllowedOrigins = ["https://chat.example.com"]);
        foreach (var path in new[] { "v1/chat/completions", "api/llm/chat/stream" })
        {
            using var preflight = await gateway.Client.SendAsync(Preflight(path, "https://chat.example.com"));
            Assert.Equal(HttpStatusCode.NoContent, preflight.StatusCode);
            Assert.Equal("https://chat.example.com", Assert.Single(preflight.Headers.GetValues("Access-Control-Allow-Origin")));
            Assert.Contains("POST", string.Join(",", preflight.Headers.GetValues("Access-Control-Allow-Methods")), StringComparison.Ordinal);
            Assert.Contains("authorization", string.Join(",", preflight.Headers.GetValues("Access-Control-Allow-Headers")), StringComparison.OrdinalIgnoreCase);
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = TestGateway.Json("""{"model":"sim-fast","prompt":"hi","stream":true,"max_tokens":3}"""),
        };
        request.Headers.Add("Origin", "https://chat.example.com");
        using var response = await gateway.Client.SendAsync(request);
        Assert.Equal("https://chat.example.com", Assert.Single(response.Headers.GetValues("Access-Control-Allow-Origin")));
        Assert.Contains("x-sluice-stream-id", string.Join(",", response.Headers.GetValues("Access-Control-Expose-Headers")), StringComparison.OrdinalIgnoreCase);

        using var other = await gateway.Client.SendAsync(Preflight("v1/chat/completions", "https://evil.example.net"));
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task Without_configured_origins_no_CORS_headers_are_sent()
    {
        await using var gateway = await ResumeTests.StartAsync();
        using var preflight = await gateway.Client.SendAsync(Preflight("v1/chat/completions", "https://chat.example.com"));
        Assert.False(preflight.Headers.Contains("Access-Control-Allow-Origin"));
        Assert.NotEqual(HttpStatusCode.NoContent, preflight.StatusCode);
    }
}
