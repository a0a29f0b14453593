using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Sluice.Cli.Tests.ScaleOut;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// <c>bench/paced-mock.c</c>, the paced upstream of <c>bench/proxied-streams.sh</c>: built with cc, it answers in
/// OpenAI's streaming format with each content chunk stamped with its send time and none early, a usage chunk when
/// asked, keeps a connection for the next request unless told "Connection: close", answers other paths with a JSON
/// error, and says on SIGINT how late its sends were.
/// </summary>
public sealed class PacedMockSmokeTests : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-paced-mock-");

    [Fact]
    public async Task Streams_stamped_chunks_at_their_pace_keeps_connections_and_reports_lateness()
    {
        var executable = await BenchTools.BuildCAsync("paced-mock.c", _root.FullName);
        var port = NginxProcess.FreePort();
        await using var mock = CliProcess.Start(
            ["--port", port.ToString(CultureInfo.InvariantCulture), "--chunks", "3", "--pace-ms", "50", "--model", "paced"], executable: executable);
        var models = await BenchTools.WaitUntilAnswersAsync(new Uri($"http://127.0.0.1:{port}/v1/models"), mock);
        Assert.Contains("\"id\":\"paced\"", models, StringComparison.Ordinal);

        // A stream with usage: role, three stamped chunks 50 ms apart (never sooner), finish, usage, [DONE].
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        using var response = await Http.PostAsync(
            new Uri($"http://127.0.0.1:{port}/v1/chat/completions"),
            new StringContent("""{"model":"paced","messages":[],"stream":true,"stream_options":{"include_usage":true}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await SseTestClient.ReadAllAsync(response);
        Assert.Equal(7, events.Count);
        Assert.Equal("assistant", events[0].Json().GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var stamps = events.Skip(1).Take(3).Select(e =>
        {
            var text = e.Json().GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString()!;
            Assert.Matches(@"^t=\d+\.\d{3};$", text);
            return double.Parse(text[2..^1], CultureInfo.InvariantCulture);
        }).ToList();
        Assert.InRange(stamps[0], before - 1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 1);
        Assert.True(stamps[1] - stamps[0] >= 49 && stamps[2] - stamps[0] >= 99, $"due 50 ms apart from the first: {string.Join(", ", stamps)}");
        Assert.Equal("stop", events[4].Json().GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(3, events[5].Json().GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.True(events[6].IsDone, events[6].DataText);

        // Two requests on one connection (as the gateway's pool sends them), the second with "Connection: close": both
        // answered whole, then the mock ends the connection.
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(IPAddress.Loopback, port);
            var stream = socket.GetStream();
            const string Body = """{"model":"paced","messages":[],"stream":true}""";
            var first = $"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {Body.Length}\r\n\r\n{Body}";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(first));
            var answer = await ReadUntilAsync(stream, "data: [DONE]\n\n\r\n0\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 200 OK\r\n", answer, StringComparison.Ordinal);
            Assert.DoesNotContain("\"usage\"", answer, StringComparison.Ordinal); // not asked for

            var second = $"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {Body.Length}\r\n\r\n{Body}";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(second));
            using var reader = new StreamReader(stream, Encoding.ASCII);
            var rest = await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10)); // ends: the mock closed its side
            Assert.Contains("Connection: close\r\n", rest, StringComparison.Ordinal);
            Assert.Equal(3, rest.Split("\"content\":\"t=").Length - 1);
            Assert.EndsWith("data: [DONE]\n\n\r\n0\r\n\r\n", rest, StringComparison.Ordinal);
        }

        // Not streamed: one JSON completion. Another path: a JSON error.
        var plain = await Http.PostAsync(new Uri($"http://127.0.0.1:{port}/v1/chat/completions"), new StringContent("""{"model":"paced","messages":[]}"""));
        Assert.Contains("\"object\":\"chat.completion\"", await plain.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var missing = await Http.GetAsync(new Uri($"http://127.0.0.1:{port}/v1/embeddings"));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("serves POST /v1/chat/completions", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await mock.InterruptAsync();
        Assert.Equal(0, await mock.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        Assert.Matches(@"paced-mock: 9 chunks sent; later than due by over 1 ms: \d+, over 5 ms: \d+, at most [\d.]+ ms; 0 connections dropped", mock.Stderr);
    }

    [Fact]
    public async Task A_bad_option_stops_it_with_a_message()
    {
        var executable = await BenchTools.BuildCAsync("paced-mock.c", _root.FullName);
        var unknown = await CliProcess.RunAsync(["--port", "1", "--speed", "9"], executable: executable);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("unknown option '--speed'", unknown.Stderr, StringComparison.Ordinal);
        var noPort = await CliProcess.RunAsync(["--chunks", "3"], executable: executable);
        Assert.Equal(2, noPort.ExitCode);
        Assert.Contains("give --port", noPort.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => _root.Delete(recursive: true);

    private static async Task<string> ReadUntilAsync(NetworkStream stream, string end)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!text.ToString().EndsWith(end, StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            Assert.True(read > 0, $"the connection ended before '{end}': {text}");
            text.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        return text.ToString();
    }
}
