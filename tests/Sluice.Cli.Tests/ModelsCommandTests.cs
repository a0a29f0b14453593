using System.Text.Json;

namespace Sluice.Cli.Tests;

/// <summary><c>sluice models</c> run as a real process against a real gateway.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ModelsCommandTests(GatewayFixture gateway)
{
    [Fact]
    public async Task Lists_every_model_in_a_table()
    {
        var result = await CliProcess.RunAsync(["models", "--url", gateway.Url]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var rows = result.Stdout.Split('\n').Where(l => l.StartsWith("│ sim-", StringComparison.Ordinal)).ToList();
        Assert.Equal(["sim-realistic", "sim-fast", "sim-slow", "sim-embed"], rows.Select(r => r.Split('│')[1].Trim()));
        Assert.All(rows, r => Assert.Contains("32,768", r, StringComparison.Ordinal));
        Assert.Contains("4 models.", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_prints_an_array_scripts_can_read()
    {
        var result = await CliProcess.RunAsync(["models", "--url", gateway.Url + "/v1", "--json"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var document = JsonDocument.Parse(result.Stdout);
        var models = document.RootElement.EnumerateArray().ToList();
        Assert.Equal(["sim-realistic", "sim-fast", "sim-slow", "sim-embed"], models.Select(m => m.GetProperty("id").GetString()));
        Assert.All(models, m => Assert.Equal(32_768, m.GetProperty("context_window").GetInt32()));
        Assert.All(models, m => Assert.Equal("sluice-simulation", m.GetProperty("owned_by").GetString()));
        Assert.Equal(string.Empty, result.Stderr);
    }

    [Fact]
    public async Task Unreachable_gateway_exits_10_and_a_wrong_path_exits_11_with_what_to_check()
    {
        var refused = await CliProcess.RunAsync(["models", "--url", $"http://127.0.0.1:{GatewayFixture.UnusedPort()}"]);
        var wrongPath = await CliProcess.RunAsync(["models", "--url", gateway.Url + "/nothing"]);

        Assert.Equal(10, refused.ExitCode);
        Assert.Contains("connection refused", refused.Stderr, StringComparison.Ordinal);
        Assert.Contains("--url", refused.Stderr, StringComparison.Ordinal);
        Assert.Equal(11, wrongPath.ExitCode);
        Assert.Contains("HTTP 404", wrongPath.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, wrongPath.Stdout);
    }

    [Fact]
    public async Task Help_shows_an_example()
    {
        var result = await CliProcess.RunAsync(["models", "--help"]);

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("sluice models --json", result.Stdout, StringComparison.Ordinal);
    }
}
