using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using Sluice.Gateway.Hosting;
using Sluice.Providers;
using Sluice.Testing;

namespace Sluice.Gateway.Tests;

public sealed class ConfigurationTests
{
    [Fact]
    public void The_example_config_loads_and_every_model_builds()
    {
        var path = Path.Combine(Fixtures.RepositoryRoot, "sluice.example.json");
        string[] keys = ["OPENAI_API_KEY", "XAI_API_KEY", "CLOUDTEMPLE_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"];
        foreach (var key in keys)
        {
            Environment.SetEnvironmentVariable(key, "test-key-" + key);
        }

        var options = GatewayConfiguration.Bind(GatewayConfiguration.Build(path));
        Assert.Equal(8080, options.Port);
        Assert.Equal(15, options.Streaming.PingIntervalSeconds);
        Assert.Equal(5000, options.Limits.MaxPromptChars);
        var catalog = new ModelCatalog(options.Models, options.ModelGroups, options.Retry);
        Assert.Equal(options.Models.Count + options.ModelGroups.Count, catalog.Models.Count);
        Assert.Contains(catalog.Models, m => m.Name == "sim-flaky" && m.Options.FailAfterTokens == 25);
        Assert.Contains(catalog.Models, m => m.Name == "resilient" && m.Members.SequenceEqual(["sim-flaky", "sim-fast"]));
        Assert.Equal(10, options.Retry.MaxRetryAfterSeconds);
        Assert.Equal(ModelCatalog.Providers.Order(), options.Models.Select(m => m.Provider).Distinct().Order());
        Assert.Contains(catalog.Models, m => m.Name == "claude" && m.Options.MaxOutputTokens == 8192);
        catalog.Dispose();
        foreach (var key in keys)
        {
            Environment.SetEnvironmentVariable(key, null);
        }
    }

    [Fact]
    public void The_example_configs_limits_are_the_defaults_it_documents()
    {
        // sluice.example.json states the defaults operators start from: a value it shows must be the one a gateway without it uses.
        var example = GatewayConfiguration.Bind(GatewayConfiguration.Build(Path.Combine(Fixtures.RepositoryRoot, "sluice.example.json"), new Dictionary<string, string?>()));
        var defaults = new GatewayOptions();

        Assert.Equal(defaults.Limits.MaxRequestBodyBytes, example.Limits.MaxRequestBodyBytes);
        Assert.Equal(defaults.Limits.MaxBodyBytesPerClient, example.Limits.MaxBodyBytesPerClient);
        Assert.Equal(defaults.Limits.MaxAttachments, example.Limits.MaxAttachments);
        Assert.Equal(defaults.Limits.MaxAttachmentBytes, example.Limits.MaxAttachmentBytes);
        Assert.Equal(defaults.Limits.MaxPromptChars, example.Limits.MaxPromptChars);
        // Anthropic's own Messages limit: an agent's long conversation with screenshots fits.
        Assert.Equal(32 * 1024 * 1024, defaults.Limits.MaxRequestBodyBytes);
    }

    [Fact]
    public void Command_line_overrides_beat_environment_which_beats_the_file()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, """{"Port": 1111, "Host": "127.0.0.1", "Streaming": {"PingIntervalSeconds": 3}}""");
            Environment.SetEnvironmentVariable("SLUICE_PORT", "2222");
            Environment.SetEnvironmentVariable("SLUICE_Streaming__PingIntervalSeconds", "4");
            var fromEnv = GatewayConfiguration.Bind(GatewayConfiguration.Build(file));
            Assert.Equal(2222, fromEnv.Port);
            Assert.Equal(4, fromEnv.Streaming.PingIntervalSeconds);

            var fromArgs = GatewayConfiguration.Bind(GatewayConfiguration.Build(file, new Dictionary<string, string?> { ["Port"] = "3333" }));
            Assert.Equal(3333, fromArgs.Port);
        }
        finally
        {
            Environment.SetEnvironmentVariable("SLUICE_PORT", null);
            Environment.SetEnvironmentVariable("SLUICE_Streaming__PingIntervalSeconds", null);
            File.Delete(file);
        }
    }

    [Fact]
    public void Missing_or_invalid_files_and_values_give_actionable_errors()
    {
        var missing = Assert.Throws<GatewayConfigurationException>(() => GatewayConfiguration.Build("/nonexistent/sluice.json"));
        Assert.Contains("sluice.example.json", missing.Message, StringComparison.Ordinal);

        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "{ \"Port\": ");
            var invalid = Assert.Throws<GatewayConfigurationException>(() => GatewayConfiguration.Build(file));
            Assert.Contains("not valid JSON", invalid.Message, StringComparison.Ordinal);

            File.WriteAllText(file, """{"Port": 70000}""");
            var range = Assert.Throws<GatewayConfigurationException>(() => GatewayConfiguration.Bind(GatewayConfiguration.Build(file)));
            Assert.Contains("70000", range.Message, StringComparison.Ordinal);

            File.WriteAllText(file, """{"Port": "eighty"}""");
            Assert.Throws<GatewayConfigurationException>(() => GatewayConfiguration.Bind(GatewayConfiguration.Build(file)));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("Observability:Otlp:Headers:x team", "v", "is not a valid HTTP header name")]
    [InlineData("Observability:Otlp:Headers:Authorization", "Basic abc\r\nX-Injected: 1", "one line of visible ASCII text")]
    public void Otlp_headers_that_are_not_http_headers_are_refused_at_start(string key, string value, string expected)
    {
        var path = Path.Combine(Fixtures.RepositoryRoot, "sluice.example.json");
        var refused = Assert.Throws<GatewayConfigurationException>(
            () => GatewayConfiguration.Bind(GatewayConfiguration.Build(path, new Dictionary<string, string?> { [key] = value })));
        Assert.Contains("Observability:Otlp:Headers", refused.Message, StringComparison.Ordinal);
        Assert.Contains(expected, refused.Message, StringComparison.Ordinal);

        var accepted = GatewayConfiguration.Bind(GatewayConfiguration.Build(path, new Dictionary<string, string?> { ["Observability:Otlp:Headers:x-honeycomb-team"] = "abc, d=e" }));
        Assert.Equal("abc, d=e", accepted.Observability.Otlp.Headers["x-honeycomb-team"]);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("65")]
    public void Socket_io_queues_out_of_range_are_refused_naming_the_setting(string value)
    {
        var path = Path.Combine(Fixtures.RepositoryRoot, "sluice.example.json");
        var refused = Assert.Throws<GatewayConfigurationException>(
            () => GatewayConfiguration.Bind(GatewayConfiguration.Build(path, new Dictionary<string, string?> { ["Streaming:IoQueues"] = value })));
        Assert.Contains("Streaming:IoQueues", refused.Message, StringComparison.Ordinal);
        Assert.Contains(value, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kestrel_keeps_its_io_queues_unless_told_to_hand_socket_work_to_the_thread_pool()
    {
        await using (var plain = await TestGateway.StartAsync())
        {
            Assert.Equal(new SocketTransportOptions().IOQueueCount, plain.Gateway.GetRequiredService<IOptions<SocketTransportOptions>>().Value.IOQueueCount);
            Assert.Equal(HttpStatusCode.OK, (await plain.Client.GetAsync(new Uri("/health", UriKind.Relative))).StatusCode);
        }

        await using (var direct = await TestGateway.StartAsync(o => o.Streaming.IoQueues = 0))
        {
            Assert.Equal(0, direct.Gateway.GetRequiredService<IOptions<SocketTransportOptions>>().Value.IOQueueCount);
            Assert.Equal(HttpStatusCode.OK, (await direct.Client.GetAsync(new Uri("/health", UriKind.Relative))).StatusCode);
        }

        await using var queued = await TestGateway.StartAsync(o => o.Streaming.IoQueues = 3);
        Assert.Equal(3, queued.Gateway.GetRequiredService<IOptions<SocketTransportOptions>>().Value.IOQueueCount);
        Assert.Equal(HttpStatusCode.OK, (await queued.Client.GetAsync(new Uri("/health", UriKind.Relative))).StatusCode);
    }
}
