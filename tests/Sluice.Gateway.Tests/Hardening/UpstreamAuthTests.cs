using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// An upstream that refuses the gateway's own key is the operator's problem: the client gets a 502
/// <c>upstream_auth_error</c> that names no configuration (before: a 401 <c>authentication_error</c> naming the
/// operator's environment variable, which told the client its own key was wrong).
/// </summary>
public sealed class UpstreamAuthTests
{
    private const string Env = "SLUICE_TEST_UPSTREAM_KEY_FOR_AUTH_TESTS";

    [Theory]
    [InlineData("v1/chat/completions", """{"model": "up", "messages": [{"role": "user", "content": "hi"}]}""", "openai")]
    [InlineData("v1/chat/completions", """{"model": "up", "stream": true, "messages": [{"role": "user", "content": "hi"}]}""", "openai")]
    [InlineData("v1/messages", """{"model": "up", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}""", "anthropic")]
    [InlineData("api/chat", """{"model": "up", "messages": [{"role": "user", "content": "hi"}]}""", "ollama")]
    public async Task An_upstream_401_is_a_502_upstream_auth_error_without_configuration_details(string path, string body, string dialect)
    {
        Environment.SetEnvironmentVariable(Env, "upstream-secret-0123456789");
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.StatusCode = 401;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}""");
        });
        await using var gateway = await TestGateway.StartAsync(o =>
            o.Models = [new ModelOptions { Name = "up", Provider = "openai", BaseUrl = upstream.BaseUrl + "/v1", ApiKeyEnv = Env }]);

        using var response = await gateway.Client.PostAsync(path, TestGateway.Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var root = JsonDocument.Parse(text).RootElement;
        MalformedInputTests.AssertShape(root, dialect);
        if (dialect == "openai")
        {
            Assert.Equal("upstream_auth_error", root.GetProperty("error").GetProperty("code").GetString());
            Assert.NotEqual("authentication_error", root.GetProperty("error").GetProperty("type").GetString());
        }

        foreach (var detail in new[] { Env, upstream.BaseUrl, "Incorrect API key", "ApiKeyEnv" })
        {
            Assert.DoesNotContain(detail, text, StringComparison.Ordinal);
        }
    }
}
