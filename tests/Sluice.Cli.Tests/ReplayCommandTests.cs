using System.Text;
using System.Text.Json;
using Sluice.Protocol.Sse;

namespace Sluice.Cli.Tests;

/// <summary><c>sluice replay</c> run as a real process against streams the gateway kept.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ReplayCommandTests(GatewayFixture gateway)
{
    /// <summary>Streams a seeded sim answer and returns its stream id and text.</summary>
    private async Task<(string StreamId, string Text)> StreamAsync(int maxTokens, long seed)
    {
        var body = JsonSerializer.Serialize(new
        {
            model = "sim-fast",
            messages = new[] { new { role = "user", content = "Tell me about rivers." } },
            max_tokens = maxTokens,
            seed,
            stream = true,
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(gateway.Url + "/v1/chat/completions"))
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        using var response = await gateway.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        var streamId = Assert.Single(response.Headers.GetValues("x-sluice-stream-id"));
        var text = new StringBuilder();
        await using var stream = await response.Content.ReadAsStreamAsync();
        await foreach (var sseEvent in SseReader.ReadAsync(stream))
        {
            if (sseEvent.IsDone)
            {
                break;
            }

            using var chunk = JsonDocument.Parse(sseEvent.Data);
            foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                {
                    text.Append(content.GetString());
                }
            }
        }

        Assert.True(text.Length > 0);
        return (streamId, text.ToString());
    }

    [Fact]
    public async Task Replay_prints_the_same_text_and_stats_on_stderr()
    {
        var (streamId, text) = await StreamAsync(maxTokens: 30, seed: 11);

        var result = await CliProcess.RunAsync(["replay", streamId, "--url", gateway.Url]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(text, result.Stdout.TrimEnd('\n'));
        Assert.Contains("[sim-fast]", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("tokens", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Timed_replay_prints_the_same_text()
    {
        var (streamId, text) = await StreamAsync(maxTokens: 12, seed: 5);

        var result = await CliProcess.RunAsync(["replay", streamId, "--url", gateway.Url, "--timed"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(text, result.Stdout.TrimEnd('\n'));
    }

    [Fact]
    public async Task After_skips_the_events_already_seen()
    {
        var (streamId, text) = await StreamAsync(maxTokens: 30, seed: 12);

        var result = await CliProcess.RunAsync(["replay", streamId, "--url", gateway.Url, "--after", "5"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        var rest = result.Stdout.TrimEnd('\n');
        Assert.True(rest.Length > 0 && rest.Length < text.Length, result.ToString());
        Assert.EndsWith(rest, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_stream_exits_11_and_says_it_expired()
    {
        var result = await CliProcess.RunAsync(["replay", "strm_does_not_exist", "--url", gateway.Url]);

        Assert.True(result.ExitCode == 11, result.ToString());
        Assert.Contains("expired", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("strm_does_not_exist", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, result.Stdout);
    }
}
