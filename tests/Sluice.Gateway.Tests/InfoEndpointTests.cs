using System.Net;
using System.Text.Json;

namespace Sluice.Gateway.Tests;

public sealed class InfoEndpointTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync();

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    [Fact]
    public async Task Models_are_listed_in_openai_format()
    {
        var list = JsonDocument.Parse(await _gateway.Client.GetStringAsync("v1/models")).RootElement;
        Assert.Equal("list", list.GetProperty("object").GetString());
        var ids = list.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.Equal(["sim-realistic", "sim-fast", "sim-slow", "sim-embed", "sim-paced"], ids);
        Assert.All(list.GetProperty("data").EnumerateArray(), m =>
        {
            Assert.Equal("model", m.GetProperty("object").GetString());
            Assert.Equal("sluice-simulation", m.GetProperty("owned_by").GetString());
            Assert.True(m.GetProperty("created").GetInt64() > 0);
        });

        var one = JsonDocument.Parse(await _gateway.Client.GetStringAsync("v1/models/sim-realistic")).RootElement;
        Assert.Equal("sim-realistic", one.GetProperty("id").GetString());

        using var missing = await _gateway.Client.GetAsync("v1/models/nope");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("model_not_found", JsonDocument.Parse(await missing.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Anthropic_clients_get_type_display_name_created_at_and_paging_fields()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        request.Headers.TryAddWithoutValidation("anthropic-version", "2023-06-01");
        using var response = await _gateway.Client.SendAsync(request);
        var list = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var data = list.GetProperty("data").EnumerateArray().ToList();
        Assert.All(data, m =>
        {
            Assert.Equal("model", m.GetProperty("type").GetString());
            Assert.Equal(m.GetProperty("id").GetString(), m.GetProperty("display_name").GetString());
            var created = DateTimeOffset.Parse(m.GetProperty("created_at").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(m.GetProperty("created").GetInt64(), created.ToUnixTimeSeconds());
        });
        Assert.False(list.GetProperty("has_more").GetBoolean());
        Assert.Equal(data[0].GetProperty("id").GetString(), list.GetProperty("first_id").GetString());
        Assert.Equal(data[^1].GetProperty("id").GetString(), list.GetProperty("last_id").GetString());

        using var one = new HttpRequestMessage(HttpMethod.Get, "v1/models/sim-fast");
        one.Headers.TryAddWithoutValidation("anthropic-version", "2023-06-01");
        using var oneResponse = await _gateway.Client.SendAsync(one);
        Assert.Equal("model", JsonDocument.Parse(await oneResponse.Content.ReadAsStringAsync()).RootElement.GetProperty("type").GetString());

        // OpenAI clients see the list as before.
        var plain = JsonDocument.Parse(await _gateway.Client.GetStringAsync("v1/models")).RootElement;
        Assert.False(plain.TryGetProperty("has_more", out _));
        Assert.False(plain.GetProperty("data")[0].TryGetProperty("type", out _));
    }

    [Fact]
    public async Task Health_reports_ok_and_usage_totals()
    {
        using (var chat = await _gateway.PostChatAsync("""{"model":"sim-fast","prompt":"hello there","max_tokens":9}"""))
        {
            Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
        }

        var health = JsonDocument.Parse(await _gateway.Client.GetStringAsync("health")).RootElement;
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.Equal(5, health.GetProperty("models").GetInt32());
        Assert.True(health.GetProperty("usage").GetProperty("completion_tokens").GetInt64() >= 9);
    }

    [Fact]
    public async Task Unknown_paths_get_a_json_404()
    {
        using var response = await _gateway.Client.GetAsync("v1/nothing-here");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("unknown_url", error.GetProperty("code").GetString());
        Assert.Contains("/v1/chat/completions", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_paths_under_v1_messages_answer_in_anthropic_s_shape_naming_its_endpoints()
    {
        using var response = await _gateway.Client.GetAsync("v1/messages/batches");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Contains("POST /v1/messages", body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("POST", "api/teams//keys", false)]
    [InlineData("GET", "api/credits/teams", false)]
    [InlineData("GET", "api/sessions/x/y/z", false)]
    [InlineData("POST", "api/nothing", true)]
    [InlineData("GET", "api/tagz", true)]
    public async Task Unknown_paths_under_api_answer_in_ollama_s_shape_except_under_sluice_s_own_api(string method, string path, bool ollama)
    {
        using var response = await _gateway.Client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        if (ollama)
        {
            Assert.Contains("/api/tags", error.GetString(), StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal("unknown_url", error.GetProperty("code").GetString());
            Assert.Contains("/api/teams", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }
}
