using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Sluice.WebChat.Tests;

/// <summary>The web chat's files as HTTP resources: content types, caching, and the paths around them.</summary>
public sealed class StaticFilesTests(GatewayHarness harness) : IClassFixture<GatewayHarness>
{
    [Theory]
    [InlineData("/", "text/html")]
    [InlineData("/webchat/app.js", "text/javascript")]
    [InlineData("/webchat/markdown.js", "text/javascript")]
    [InlineData("/webchat/app.css", "text/css")]
    public async Task Files_are_served_with_their_content_type_an_etag_and_revalidation(string path, string mediaType)
    {
        using var response = await harness.Http.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(mediaType, response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("utf-8", response.Content.Headers.ContentType?.CharSet);
        Assert.NotNull(response.Headers.ETag);
        Assert.False(response.Headers.ETag!.IsWeak);
        Assert.True(response.Headers.CacheControl?.NoCache, "Cache-Control: no-cache makes browsers revalidate after an upgrade.");
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal(response.Content.Headers.ContentLength, body.Length);
        Assert.True(body.Length > 100);

        using var again = new HttpRequestMessage(HttpMethod.Get, path);
        again.Headers.IfNoneMatch.Add(response.Headers.ETag);
        using var revalidated = await harness.Http.SendAsync(again);
        Assert.Equal(HttpStatusCode.NotModified, revalidated.StatusCode);
        Assert.Empty(await revalidated.Content.ReadAsByteArrayAsync());

        using var stale = new HttpRequestMessage(HttpMethod.Get, path);
        stale.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"not-the-current-version\""));
        using var full = await harness.Http.SendAsync(stale);
        Assert.Equal(HttpStatusCode.OK, full.StatusCode);
        Assert.Equal(body, await full.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task The_page_allows_only_its_own_origin_and_refers_only_to_its_own_files()
    {
        using var response = await harness.Http.GetAsync("/");
        var policy = response.Headers.GetValues("Content-Security-Policy").Single();
        Assert.Contains("default-src 'none'", policy, StringComparison.Ordinal);
        Assert.Contains("connect-src 'self'", policy, StringComparison.Ordinal);
        Assert.Contains("script-src 'self'", policy, StringComparison.Ordinal);
        var html = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("http://", html, StringComparison.Ordinal);
        Assert.DoesNotContain("https://", html, StringComparison.Ordinal);
        Assert.Contains("src=\"/webchat/app.js\"", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Head_answers_headers_without_a_body()
    {
        using var request = new HttpRequestMessage(HttpMethod.Head, "/webchat/app.js");
        using var response = await harness.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Content.Headers.ContentLength > 100);
        Assert.Empty(await response.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [InlineData("/webchat/missing.js")]
    [InlineData("/index.htm")]
    [InlineData("/webchat")]
    [InlineData("/nothing/here")]
    public async Task Other_paths_keep_the_json_404(string path)
    {
        using var response = await harness.Http.GetAsync(path);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("unknown_url", json.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Posting_to_the_page_is_not_served()
    {
        using var response = await harness.Http.PostAsync("/", new StringContent("x"));
        Assert.NotEqual(HttpStatusCode.OK, response.StatusCode);
    }
}
