using Sluice.Protocol;
using Sluice.Providers.Routing;
using Sluice.Providers.Upstream;

namespace Sluice.Providers.Tests.Upstream;

public sealed class CatalogValidationTests
{
    [Fact]
    public void Every_provider_builds_its_adapter()
    {
        using var catalog = new ModelCatalog(
        [
            new ModelOptions { Name = "a", Provider = "openai", BaseUrl = "http://127.0.0.1:8000/v1" },
            new ModelOptions { Name = "b", Provider = "anthropic", BaseUrl = "https://api.anthropic.com/v1" },
            new ModelOptions { Name = "c", Provider = "gemini", BaseUrl = "https://generativelanguage.googleapis.com/v1beta" },
            new ModelOptions { Name = "d", Provider = "ollama", BaseUrl = "http://127.0.0.1:11434" },
            new ModelOptions { Name = "e", Provider = "sim" },
        ]);

        Assert.IsType<OpenAIChatBackend>(catalog.Models[0].Source);
        Assert.IsType<AnthropicChatBackend>(catalog.Models[1].Source);
        Assert.IsType<GeminiChatBackend>(catalog.Models[2].Source);
        Assert.IsType<OllamaChatBackend>(catalog.Models[3].Source);
        Assert.Equal("anthropic", catalog.Models[1].OwnedBy);
    }

    [Fact]
    public void Unknown_provider_names_the_entry_and_the_choices()
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "x", Provider = "sim" }, new ModelOptions { Name = "gpt", Provider = "azure", BaseUrl = "https://x" }]));

        Assert.Contains("Models[1] (\"gpt\")", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"azure\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("openai, anthropic, gemini, ollama", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("api.openai.com/v1")]
    [InlineData("ftp://example.com")]
    public void Upstream_without_a_usable_base_url_is_refused(string? baseUrl)
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = baseUrl }]));

        Assert.Contains("Models[0] (\"claude\")", ex.Message, StringComparison.Ordinal);
        Assert.Contains("BaseUrl", ex.Message, StringComparison.Ordinal);
        Assert.Contains("https://api.anthropic.com/v1", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Key_variable_named_but_unset_makes_the_model_unavailable_with_the_fix()
    {
        var variable = "SLUICE_TEST_UNSET_" + Guid.NewGuid().ToString("N");
        var other = "SLUICE_TEST_UNSET_" + Guid.NewGuid().ToString("N");
        using var catalog = new ModelCatalog(
        [
            new ModelOptions { Name = "sim", Provider = "sim" },
            new ModelOptions { Name = "gpt-4o", Provider = "openai", BaseUrl = "https://api.openai.com/v1", ApiKeyEnv = variable },
            new ModelOptions { Name = "claude", Provider = "anthropic", BaseUrl = "https://api.anthropic.com/v1", ApiKeyEnv = other },
        ]);

        // Every missing variable at once, in configuration order; the rest of the catalog serves.
        Assert.Equal([new MissingKey("gpt-4o", variable), new MissingKey("claude", other)], catalog.MissingKeys);
        Assert.True(catalog.TryGet("sim", out var sim));
        Assert.Null(sim.UnavailableReason);
        Assert.True(catalog.TryGet("gpt-4o", out var gpt));
        Assert.Contains($"Export {variable}=", gpt.UnavailableReason, StringComparison.Ordinal);

        // Calling it fails at once with a 503 that names the variable (and is not retried into a slower failure).
        var ex = await Assert.ThrowsAsync<ChatException>(() => UpstreamKit.CollectAsync(gpt.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest)));
        Assert.Equal(503, ex.StatusCode);
        Assert.Equal(UnavailableChatBackend.Code, ex.Error.Code);
        Assert.Contains(variable, ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unreachable_upstream_error_gives_each_failure_once_with_its_attempts()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }

        using var catalog = new ModelCatalog(
            [new ModelOptions { Name = "local", Provider = "openai", BaseUrl = $"http://127.0.0.1:{port}/v1", MaxAttempts = 3 }],
            retry: new RetryOptions { BaseDelayMs = 1, MaxDelayMs = 2 });

        var ex = await Assert.ThrowsAsync<ChatException>(() => UpstreamKit.CollectAsync(catalog.Models[0].Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest)));

        var message = ex.Error.Message;
        Assert.StartsWith("Every attempt failed: local (3 attempts): ", message, StringComparison.Ordinal);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(message, "Cannot reach"));
        Assert.DoesNotContain("..", message, StringComparison.Ordinal);
        Assert.DoesNotContain(".;", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Group_skips_unavailable_members_and_is_unavailable_when_none_is_left()
    {
        var variable = "SLUICE_TEST_UNSET_" + Guid.NewGuid().ToString("N");
        using var catalog = new ModelCatalog(
            [
                new ModelOptions { Name = "sim", Provider = "sim" },
                new ModelOptions { Name = "gpt-4o", Provider = "openai", BaseUrl = "https://api.openai.com/v1", ApiKeyEnv = variable },
            ],
            [
                new ModelGroupOptions { Name = "mixed", Models = ["gpt-4o", "sim"] },
                new ModelGroupOptions { Name = "keyed", Models = ["gpt-4o"] },
            ]);

        Assert.True(catalog.TryGet("mixed", out var mixed));
        Assert.Null(mixed.UnavailableReason);
        var events = await UpstreamKit.CollectAsync(mixed.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest));
        Assert.NotEmpty(events);

        Assert.True(catalog.TryGet("keyed", out var keyed));
        Assert.Contains(variable, keyed.UnavailableReason, StringComparison.Ordinal);
        var ex = await Assert.ThrowsAsync<ChatException>(() => UpstreamKit.CollectAsync(keyed.Backend, UpstreamKit.Request(UpstreamKit.SimpleRequest)));
        Assert.Equal(503, ex.StatusCode);
        Assert.Contains(variable, ex.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Negative_timeout_is_refused()
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "m", Provider = "ollama", BaseUrl = "http://127.0.0.1:11434", IdleTimeoutMs = -1 }]));

        Assert.Contains("timeout", ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("0 to disable", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Header_that_cannot_be_a_request_header_is_refused()
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "m", Provider = "openai", BaseUrl = "http://127.0.0.1:1/v1", Headers = new() { ["Content-Type"] = "text/plain" } }]));

        Assert.Contains("Content-Type", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Key_with_a_line_break_inside_is_refused_and_surrounding_whitespace_is_trimmed()
    {
        var broken = "SLUICE_TEST_KEY_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(broken, "sk-abc\ndef");
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "m", Provider = "openai", BaseUrl = "https://api.openai.com/v1", ApiKeyEnv = broken }]));
        Assert.Contains(broken, ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("sk-abc", ex.Message, StringComparison.Ordinal);

        var padded = "SLUICE_TEST_KEY_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(padded, "  sk-abc\n");
        using var catalog = new ModelCatalog([new ModelOptions { Name = "m", Provider = "openai", BaseUrl = "https://api.openai.com/v1", ApiKeyEnv = padded }]);
        Assert.IsType<OpenAIChatBackend>(catalog.Models[0].Source);
    }
}
