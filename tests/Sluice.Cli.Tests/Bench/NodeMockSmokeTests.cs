using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// <c>bench/node-mock.mjs</c>, the Node.js upstream of <c>bench/overhead-wrk.sh --upstream node</c>: it streams a whole
/// OpenAI answer (role, N contents, finish, usage, [DONE]), refuses bad JSON in OpenAI's shape, and a real
/// <c>sluice serve</c> in front of it relays the same answer.
/// </summary>
public sealed partial class NodeMockSmokeTests : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-node-mock-");

    [Fact]
    public async Task Streams_an_OpenAI_answer_directly_and_through_the_gateway()
    {
        await using var mock = CliProcess.Start([Path.Combine(Fixtures.RepositoryRoot, "bench", "node-mock.mjs"), "--port", "0", "--chunks", "5", "--model", "mock"], executable: "node");
        await mock.WaitForOutputAsync((stdout, _) => Listening().IsMatch(stdout), TimeSpan.FromSeconds(30));
        var upstream = Listening().Match(mock.Stdout).Groups[1].Value;

        AssertWholeAnswer(await StreamAsync(new Uri(upstream + "/v1/chat/completions")), "mock");

        using (var bad = await Http.PostAsync(new Uri(upstream + "/v1/chat/completions"), new StringContent("{not json", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(400, (int)bad.StatusCode);
            using var error = JsonDocument.Parse(await bad.Content.ReadAsStringAsync());
            Assert.Contains("not JSON", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        var config = Path.Combine(_root.FullName, "sluice.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
        {
            Models = new[] { new { Name = "mock", Provider = "openai", BaseUrl = upstream + "/v1", MaxAttempts = 1 } },
        }));
        await using var gateway = await ServeProcess.StartAsync(["--config", config, "--data", Directory.CreateDirectory(Path.Combine(_root.FullName, "data")).FullName]);
        AssertWholeAnswer(await StreamAsync(new Uri(gateway.Address, "v1/chat/completions")), "mock");
    }

    /// <summary>
    /// <c>bench/ttfb-probe.c</c>, the concurrency-1 client of <c>overhead-wrk.sh</c>: built with cc, it times answers
    /// straight from the mock and through the gateway (first data frame no later than the stream's end, percentiles in
    /// order), and a refused request stops it with the status named.
    /// </summary>
    [Fact]
    public async Task The_first_token_probe_times_answers_directly_and_through_the_gateway()
    {
        var probe = await BenchTools.BuildCAsync("ttfb-probe.c", _root.FullName);

        await using var mock = CliProcess.Start([Path.Combine(Fixtures.RepositoryRoot, "bench", "node-mock.mjs"), "--port", "0", "--chunks", "5", "--model", "mock"], executable: "node");
        await mock.WaitForOutputAsync((stdout, _) => Listening().IsMatch(stdout), TimeSpan.FromSeconds(30));
        var upstream = new Uri(Listening().Match(mock.Stdout).Groups[1].Value);
        var config = Path.Combine(_root.FullName, "sluice.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
        {
            Models = new[] { new { Name = "mock", Provider = "openai", BaseUrl = upstream + "v1", MaxAttempts = 1 } },
        }));
        await using var gateway = await ServeProcess.StartAsync(["--config", config, "--data", Directory.CreateDirectory(Path.Combine(_root.FullName, "data")).FullName]);

        foreach (var port in new[] { upstream.Port, gateway.Address.Port })
        {
            var run = await CliProcess.RunAsync(
                ["127.0.0.1", port.ToString(CultureInfo.InvariantCulture), "30", "--max-tokens", "5", "--warmup", "3"], executable: probe);
            Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr);
            Assert.Contains("30 requests one after another", run.Stdout, StringComparison.Ordinal);
            var firstData = Percentiles(run.Stdout, "first data");
            var whole = Percentiles(run.Stdout, "whole stream");
            Assert.True(firstData[0] > 0 && firstData[0] <= whole[0], run.Stdout);
            Assert.True(firstData.Zip(firstData.Skip(1)).All(pair => pair.First <= pair.Second), run.Stdout);
        }

        var refused = await CliProcess.RunAsync(
            ["127.0.0.1", gateway.Address.Port.ToString(CultureInfo.InvariantCulture), "5", "--model", "no-such-model", "--warmup", "0"], executable: probe);
        Assert.Equal(12, refused.ExitCode);
        Assert.Contains("answer 1 has status 404", refused.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => _root.Delete(recursive: true);

    /// <summary>p50, p90, p99, p99.9 and max (ms) of one line of the probe's report.</summary>
    private static double[] Percentiles(string report, string what)
    {
        var line = report.Split('\n').Single(l => l.StartsWith(what, StringComparison.Ordinal));
        return [.. ProbeNumber().Matches(line[what.Length..]).Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture))];
    }

    [GeneratedRegex(@"(?:p50|p90|p99|p99\.9|max) ([0-9.]+)")]
    private static partial Regex ProbeNumber();

    private static async Task<string> StreamAsync(Uri url)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Content = new StringContent(
                """{"model":"mock","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}""",
                Encoding.UTF8,
                "application/json"),
        };
        using var response = await Http.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>Frame by frame: a role chunk, five " hello" chunks, a stop, the usage chunk, then [DONE] last.</summary>
    private static void AssertWholeAnswer(string body, string model)
    {
        // The gateway's frames also carry an event id (resumable streams) and start with a comment naming the stream.
        var frames = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(f => f.Split('\n').SingleOrDefault(line => line.StartsWith("data: ", StringComparison.Ordinal)))
            .OfType<string>()
            .Select(line => line["data: ".Length..])
            .ToList();
        Assert.Equal("[DONE]", frames[^1]);
        var chunks = frames[..^1].Select(f => JsonDocument.Parse(f).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal(model, c.GetProperty("model").GetString()));
        var text = string.Concat(chunks
            .Where(c => c.GetProperty("choices").GetArrayLength() > 0)
            .Select(c => c.GetProperty("choices")[0].GetProperty("delta"))
            .Where(d => d.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
            .Select(d => d.GetProperty("content").GetString()));
        Assert.Equal(string.Concat(Enumerable.Repeat(" hello", 5)), text);
        Assert.Contains(chunks, c => c.GetProperty("choices").GetArrayLength() > 0 && c.GetProperty("choices")[0].GetProperty("finish_reason").GetString() == "stop");
        var usage = chunks[^1].GetProperty("usage");
        Assert.Equal(5, usage.GetProperty("completion_tokens").GetInt32());
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() > 0, body);
    }

    [GeneratedRegex(@"node mock listening on (http://127\.0\.0\.1:\d+)")]
    private static partial Regex Listening();
}
