using System.Net.Http.Json;
using System.Text.Json;
using Sluice.Engine.Gguf;
using Sluice.Testing;

namespace Sluice.Cli.Tests;

/// <summary>
/// <c>sluice serve</c> with a <c>"Provider": "local"</c> model: the weights load before the gateway listens, with progress
/// in the log; a file that cannot be used stops the start with one line naming it (exit 3).
/// </summary>
public sealed class LocalServeTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-local-serve-");

    public void Dispose() => _root.Delete(recursive: true);

    [Fact]
    public async Task Serve_loads_the_model_with_progress_in_the_log_before_listening_and_answers()
    {
        var model = LocalTestModels.WriteChatModel(Path.Combine(_root.FullName, "tiny.gguf"), LocalTestModels.Tiny(seed: 5));
        var config = Config(model);

        await using var server = await ServeProcess.StartAsync(["--config", config, "--data", Dir("ok")]);

        var log = server.Log.Split('\n');
        var loading = Array.FindIndex(log, l => l.Contains($"Model tiny: loading {model}", StringComparison.Ordinal));
        var ready = Array.FindIndex(log, l => l.Contains("Model tiny: ready in", StringComparison.Ordinal));
        var listening = Array.FindIndex(log, l => l.Contains("listening on", StringComparison.Ordinal));
        Assert.True(loading >= 0 && ready > loading && listening > ready, server.Log);
        Assert.Contains("llama, ", log[ready], StringComparison.Ordinal);
        Assert.Contains("the file's chat template", log[ready], StringComparison.Ordinal);
        Assert.Contains(log, l => l.Contains("Model tiny: read ", StringComparison.Ordinal) && l.Contains("MiB of weights", StringComparison.Ordinal));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        using var response = await http.PostAsync(server.Url + "/v1/chat/completions", JsonContent.Create(new
        {
            model = "tiny",
            messages = new[] { new { role = "user", content = "Hello" } },
            max_tokens = 6,
            temperature = 0,
        }));
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.True(response.IsSuccessStatusCode, json.RootElement.ToString());
        Assert.Equal(6, json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.False(string.IsNullOrEmpty(json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()));
    }

    [Theory]
    [InlineData("missing", "does not exist. Check the path.")]
    [InlineData("truncated", "is not a usable GGUF file: ")]
    [InlineData("unsupported", "cannot be run by Sluice's engine: architecture 'gemma3' is not supported")]
    public async Task A_model_file_that_cannot_be_used_stops_the_start_with_one_line_naming_it(string kind, string problem)
    {
        var path = Path.Combine(_root.FullName, kind + ".gguf");
        switch (kind)
        {
            case "truncated":
                var whole = LocalTestModels.WriteChatModel(Path.Combine(_root.FullName, "whole.gguf"));
                var bytes = await File.ReadAllBytesAsync(whole);
                await File.WriteAllBytesAsync(path, bytes[..(bytes.Length * 2 / 3)]);
                break;
            case "unsupported":
                var writer = new GgufWriter();
                writer.AddString("general.architecture", "gemma3");
                writer.WriteTo(path);
                break;
        }

        var result = await CliProcess.RunAsync(["serve", "--host", "127.0.0.1", "--port", "0", "--config", Config(path), "--data", Dir(kind)]);

        Assert.True(result.ExitCode == 3, result.ToString());
        var line = Assert.Single(result.StderrLines);
        Assert.StartsWith($"sluice serve: Models[0] (\"tiny\"): model file '{path}' {problem}", line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stdout + result.Stderr, StringComparison.Ordinal);
    }

    private string Config(string modelPath)
    {
        var path = Path.Combine(_root.FullName, Guid.NewGuid().ToString("N") + ".json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            Models = new[] { new { Name = "tiny", Provider = "local", ModelPath = modelPath, ContextSize = 512, Threads = 1 } },
        }));
        return path;
    }

    private string Dir(string name) => Directory.CreateDirectory(Path.Combine(_root.FullName, "data-" + name)).FullName;
}
