using System.Text;
using System.Text.Json;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Requests Kestrel rejects before any Sluice code runs (bad bytes, bad framing, over its limits, too slow) get the
/// JSON error body every other error has — they used to be empty.
/// </summary>
public sealed class ProtocolErrorTests(ProtocolErrorTests.SharedGateway shared) : IClassFixture<ProtocolErrorTests.SharedGateway>
{
    public static TheoryData<string, string, int, string> Requests() => new()
    {
        { "garbage request line", "GARBAGE\r\n\r\n", 400, "bad_request" },
        { "NUL in a header value", "GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n", 400, "bad_request" },
        { "space in a header name", "GET /health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", 400, "bad_request" },
        { "non-ASCII header name", "GET /health HTTP/1.1\r\nHost: x\r\nX-\u00e9: x\r\n\r\n", 400, "bad_request" },
        { "no Host header", "GET /health HTTP/1.1\r\n\r\n", 400, "bad_request" },
        { "Content-Length not a number", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "bad_request" },
        { "two Content-Lengths", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "bad_request" },
        { "URL over the limit", $"GET /v1/models/{new string('m', 10_000)} HTTP/1.1\r\nHost: x\r\n\r\n", 414, "url_too_long" },
        { "headers over the limit", $"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {new string('h', 40_000)}\r\n\r\n", 431, "headers_too_large" },
        { "unsupported HTTP version (a 400, not Kestrel's 505)", "GET /health HTTP/3.7\r\nHost: x\r\n\r\n", 400, "http_version_not_supported" },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task Kestrels_own_rejection_has_a_JSON_error_body(string what, string request, int status, string code)
    {
        var response = await RawHttp.SendAsync(shared.Gateway.BaseAddress, Encoding.Latin1.GetBytes(request));
        Assert.True(response is not null, what);
        Assert.Equal(status, response.Status);
        AssertJsonError(response, code);
    }

    [Fact]
    public async Task A_client_that_trickles_its_headers_gets_a_408_with_a_JSON_body()
    {
        var response = await RawHttp.SendAsync(
            shared.Gateway.BaseAddress, Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "), TimeSpan.FromSeconds(15), pauseAfterSend: TimeSpan.FromSeconds(2));
        Assert.NotNull(response);
        Assert.Equal(408, response.Status);
        AssertJsonError(response, "request_timeout");
    }

    [Fact]
    public async Task Well_formed_requests_and_Sluices_own_errors_are_untouched()
    {
        var health = await RawHttp.SendAsync(shared.Gateway.BaseAddress, Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        Assert.Equal(200, health!.Status);
        Assert.Equal("ok", JsonDocument.Parse(health.Body).RootElement.GetProperty("status").GetString());

        var missing = await RawHttp.SendAsync(shared.Gateway.BaseAddress, Encoding.ASCII.GetBytes("GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        Assert.Equal(404, missing!.Status);
        Assert.Equal("unknown_url", JsonDocument.Parse(missing.Body).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    private static void AssertJsonError(RawResponse response, string code)
    {
        Assert.Equal("application/json", response.Headers["Content-Type"]);
        Assert.Equal(response.Body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), response.Headers["Content-Length"]);
        var error = JsonDocument.Parse(response.Body).RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("type").GetString()));
    }

    /// <summary>One gateway (with a short header timeout, for the slow client) for every case.</summary>
    public sealed class SharedGateway : IAsyncLifetime
    {
        public TestGateway Gateway { get; private set; } = null!;

        public async Task InitializeAsync() => Gateway = await TestGateway.StartAsync(o => o.Limits.RequestHeadersTimeoutSeconds = 1);

        public async Task DisposeAsync() => await Gateway.DisposeAsync();
    }
}
