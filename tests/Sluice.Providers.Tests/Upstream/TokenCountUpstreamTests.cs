using System.Text;
using Sluice.Protocol;
using Sluice.Protocol.Anthropic;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Anthropic's count_tokens and Gemini's countTokens: the request as it would be generated, the provider's count back.</summary>
public sealed class TokenCountUpstreamTests
{
    private const string Request = """
        {"model": "test-model", "max_tokens": 100, "temperature": 0.5, "stop_sequences": ["x"], "metadata": {"user_id": "u"},
         "system": "Be brief.",
         "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
         "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}
        """;

    private static async Task<UpstreamRig> RigAsync(string provider, string answer, int status = 200) =>
        await UpstreamRig.StartAsync(provider, await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(answer), "application/json", status: status));

    private static Sluice.Protocol.Chat.ChatRequest Parse() => AnthropicRequestParser.Parse(Encoding.UTF8.GetBytes(Request), requireMaxTokens: false);

    [Fact]
    public async Task Anthropic_is_asked_at_count_tokens_with_only_the_fields_it_takes()
    {
        await using var rig = await RigAsync("anthropic", """{"input_tokens": 412}""");
        var counter = Assert.IsAssignableFrom<IPromptTokenCounter>(rig.Catalog.Models[0].Source);

        Assert.Equal(412, await counter.CountPromptTokensAsync(Parse(), CancellationToken.None));

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("/v1/messages/count_tokens", sent.PathAndQuery);
        Assert.Equal(AnthropicChatBackendVersion, sent.Headers["anthropic-version"]);
        Assert.Equal(["model", "system", "messages", "tools"], sent.Json.EnumerateObject().Select(p => p.Name));
        Assert.Equal("upstream-model", sent.Json.GetProperty("model").GetString());
        Assert.Equal("Be brief.", sent.Json.GetProperty("system").GetString());
        Assert.Equal("weather", sent.Json.GetProperty("tools")[0].GetProperty("name").GetString());
    }

    [Fact]
    public async Task Gemini_is_asked_at_countTokens_with_the_whole_generate_request()
    {
        await using var rig = await RigAsync("gemini", """{"totalTokens": 37, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 37}]}""");
        var counter = Assert.IsAssignableFrom<IPromptTokenCounter>(rig.Catalog.Models[0].Source);

        Assert.Equal(37, await counter.CountPromptTokensAsync(Parse(), CancellationToken.None));

        var sent = Assert.Single(rig.Upstream.Requests);
        Assert.Equal("/v1/models/upstream-model:countTokens", sent.PathAndQuery);
        var inner = sent.Json.GetProperty("generateContentRequest");
        Assert.Equal("models/upstream-model", inner.GetProperty("model").GetString());
        Assert.Equal("What is the weather in Paris?", inner.GetProperty("contents")[0].GetProperty("parts")[0].GetProperty("text").GetString());
        Assert.Equal("Be brief.", inner.GetProperty("systemInstruction").GetProperty("parts")[0].GetProperty("text").GetString());
        Assert.True(inner.TryGetProperty("tools", out _));
    }

    [Theory]
    [InlineData("anthropic", """{"tokens": 3}""")]
    [InlineData("anthropic", """{"input_tokens": -1}""")]
    [InlineData("gemini", "not json")]
    public async Task An_answer_without_a_count_is_a_502_that_quotes_it(string provider, string answer)
    {
        await using var rig = await RigAsync(provider, answer);
        var counter = (IPromptTokenCounter)rig.Catalog.Models[0].Source!;

        var error = await Assert.ThrowsAsync<ChatException>(async () => await counter.CountPromptTokensAsync(Parse(), CancellationToken.None));

        Assert.Equal(502, error.StatusCode);
        Assert.Equal("upstream_malformed", error.Error.Code);
        Assert.Contains("token count", error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_provider_error_is_mapped_like_a_calls()
    {
        await using var rig = await RigAsync("anthropic", """{"type":"error","error":{"type":"invalid_request_error","message":"messages: at least one message is required"}}""", status: 400);
        var counter = (IPromptTokenCounter)rig.Catalog.Models[0].Source!;

        var error = await Assert.ThrowsAsync<ChatException>(async () => await counter.CountPromptTokensAsync(Parse(), CancellationToken.None));

        Assert.Equal(400, error.StatusCode);
        Assert.Contains("at least one message is required", error.Error.Message, StringComparison.Ordinal);
    }

    private const string AnthropicChatBackendVersion = Sluice.Providers.Upstream.AnthropicChatBackend.ApiVersion;
}
