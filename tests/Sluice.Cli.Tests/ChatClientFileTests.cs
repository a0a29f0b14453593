using System.Text.Json;
using Sluice.Cli.Client;
using Sluice.Testing;

namespace Sluice.Cli.Tests;

/// <summary>
/// <c>sluice chat</c>'s default client files (the user's, then the directory's), the shipped template, the resolved
/// settings under <c>--debug</c>, and both tokens/s figures.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ChatClientFileTests(GatewayFixture gateway) : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-client-files-");

    public void Dispose() => _root.Delete(recursive: true);

    [Fact]
    public async Task User_file_then_directory_file_then_command_line_each_with_its_source_under_debug()
    {
        var config = Directory.CreateDirectory(Path.Combine(_root.FullName, "xdg", "sluice")).FullName;
        var userFile = Path.Combine(config, "client.json");
        await File.WriteAllTextAsync(userFile, $$"""
            // the user's defaults
            { "ApiUrl": "{{gateway.Url}}", "ApiKey": "sk-user-file-key-0123456789", "Model": "sim-slow", "MaxTokens": 7, "SystemPrompt": "Be brief." }
            """);
        var project = Directory.CreateDirectory(Path.Combine(_root.FullName, "project")).FullName;
        var localFile = Path.Combine(project, "sluice-client.json");
        await File.WriteAllTextAsync(localFile, """{ "Model": "sim-fast", "Temperature": 0.5 }""");

        var result = await CliProcess.RunAsync(
            ["chat", "Tell me about rivers", "--debug", "--json", "--seed", "4"],
            environment: new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = Path.Combine(_root.FullName, "xdg") },
            workingDirectory: project);

        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.StderrLines;
        Assert.Contains($"[config] ApiUrl = {gateway.Url}  ({userFile})", lines);
        Assert.Contains($"[config] Model = sim-fast  ({localFile})", lines);
        Assert.Contains($"[config] MaxTokens = 7  ({userFile})", lines);
        Assert.Contains($"[config] Temperature = 0.5  ({localFile})", lines);
        Assert.Contains($"[config] SystemPrompt = \"Be brief.\"  ({userFile})", lines);
        Assert.Contains("[config] ConnectTimeoutSeconds = 10 s  (built-in default)", lines);
        var key = Assert.Single(lines, l => l.StartsWith("[config] ApiKey = ", StringComparison.Ordinal));
        Assert.DoesNotContain("sk-user-file-key-0123456789", result.Stderr, StringComparison.Ordinal);
        Assert.Contains($"({userFile})", key, StringComparison.Ordinal);

        // The file's defaults reach the request: 7 tokens, the system prompt first, the directory's model.
        using var payload = JsonDocument.Parse(lines.Single(l => l.StartsWith("[http] request ", StringComparison.Ordinal))["[http] request ".Length..]);
        Assert.Equal(7, payload.RootElement.GetProperty("max_tokens").GetInt32());
        Assert.Equal("system", payload.RootElement.GetProperty("messages")[0].GetProperty("role").GetString());
        Assert.Equal("Be brief.", payload.RootElement.GetProperty("messages")[0].GetProperty("content").GetString());
        using var stats = JsonDocument.Parse(lines.Last());
        Assert.Equal("sim-fast", stats.RootElement.GetProperty("model").GetString());
        Assert.Equal(7, stats.RootElement.GetProperty("tokens").GetInt32());

        // The command line and SLUICE_API_KEY win, and say so.
        var overridden = await CliProcess.RunAsync(
            ["chat", "Hi", "--debug", "--max-tokens", "3", "--model", "sim-fast"],
            environment: new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = Path.Combine(_root.FullName, "xdg"), ["SLUICE_API_KEY"] = "sk-from-the-environment-99" },
            workingDirectory: project);
        Assert.True(overridden.ExitCode == 0, overridden.ToString());
        Assert.Contains("[config] MaxTokens = 3  (--max-tokens)", overridden.StderrLines);
        Assert.Contains("[config] Model = sim-fast  (--model)", overridden.StderrLines);
        Assert.Contains(overridden.StderrLines, l => l.StartsWith("[config] ApiKey = sk-f…t-99", StringComparison.Ordinal) && l.EndsWith("(env SLUICE_API_KEY)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Explicit_config_replaces_the_default_files()
    {
        var xdg = Directory.CreateDirectory(Path.Combine(_root.FullName, "xdg2", "sluice")).FullName;
        await File.WriteAllTextAsync(Path.Combine(xdg, "client.json"), """{ "ApiUrl": "http://127.0.0.1:1", "MaxTokens": 99 }""");
        var explicitFile = Path.Combine(_root.FullName, "explicit.json");
        await File.WriteAllTextAsync(explicitFile, $$"""{ "ApiUrl": "{{gateway.Url}}", "Model": "sim-fast" }""");

        var result = await CliProcess.RunAsync(
            ["chat", "Hi", "--config", explicitFile, "--max-tokens", "4", "--debug"],
            environment: new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = Path.Combine(_root.FullName, "xdg2") });

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"[config] ApiUrl = {gateway.Url}  ({explicitFile})", result.StderrLines);
    }

    [Fact]
    public void Shipped_template_loads_and_sets_only_documented_keys()
    {
        var template = Path.Combine(Fixtures.RepositoryRoot, "sluice-client.example.json");

        var settings = ChatClientSettings.Load(template);

        Assert.Equal(ChatClientSettings.DefaultApiUrl, settings.ApiUrl);
        Assert.Contains(template, settings.Sources.Values);
    }

    [Fact]
    public async Task Stats_give_the_rate_after_the_first_token_and_the_overall_rate_labelled()
    {
        var text = await CliProcess.RunAsync(["chat", "Tell me about rivers", "--url", gateway.Url, "--model", "sim-realistic", "--max-tokens", "20"]);
        Assert.True(text.ExitCode == 0, text.ToString());
        var line = Assert.Single(text.StderrLines);
        Assert.Matches(@" · \d+\.\d tokens/s after first token · \d+\.\d tokens/s overall$", line);

        var json = await CliProcess.RunAsync(["chat", "Tell me about rivers", "--url", gateway.Url, "--model", "sim-realistic", "--max-tokens", "20", "--json"]);
        Assert.True(json.ExitCode == 0, json.ToString());
        using var stats = JsonDocument.Parse(Assert.Single(json.StderrLines));
        var after = stats.RootElement.GetProperty("tokens_per_second").GetDouble();
        var overall = stats.RootElement.GetProperty("overall_tokens_per_second").GetDouble();
        var expected = 20 / (stats.RootElement.GetProperty("duration_ms").GetDouble() / 1000);

        // Overall includes the wait for the first token (~300 ms for sim-realistic), so it is the lower figure.
        Assert.InRange(overall, expected * 0.99, expected * 1.01);
        Assert.True(overall < after, stats.RootElement.ToString());
    }
}
