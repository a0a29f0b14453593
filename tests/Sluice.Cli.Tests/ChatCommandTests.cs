using System.Globalization;
using System.Text.Json;

namespace Sluice.Cli.Tests;

/// <summary><c>sluice chat</c> run as a real process against a real gateway.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ChatCommandTests(GatewayFixture gateway)
{
    private const string Prompt = "Tell me a story about rivers";

    [Fact]
    public async Task Prompt_streams_the_same_answer_as_a_direct_request_and_reports_stats()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, maxTokens: 40, seed: 42);

        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--model", "sim-fast", "--max-tokens", "40", "--seed", "42"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(expected + "\n", result.Stdout);
        var stats = Assert.Single(result.StderrLines);
        Assert.StartsWith("[sim-fast] 40 tokens · first token ", stats, StringComparison.Ordinal);
        Assert.Contains("tokens/s", stats, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_stats_are_one_object_with_the_servers_token_count()
    {
        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--model", "sim-fast", "--max-tokens", "25", "--seed", "1", "--json"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var stats = JsonDocument.Parse(Assert.Single(result.StderrLines));
        var root = stats.RootElement;
        Assert.Equal("completed", root.GetProperty("status").GetString());
        Assert.Equal("sim-fast", root.GetProperty("model").GetString());
        Assert.Equal(25, root.GetProperty("tokens").GetInt32());
        Assert.Equal("usage", root.GetProperty("tokens_source").GetString());
        Assert.Equal("length", root.GetProperty("finish_reason").GetString());
        Assert.True(root.GetProperty("prompt_tokens").GetInt32() > 0);
        var ttft = root.GetProperty("time_to_first_token_ms").GetDouble();
        Assert.True(ttft > 0 && ttft <= root.GetProperty("duration_ms").GetDouble(), result.Stderr);
    }

    [Fact]
    public async Task Debug_prints_the_request_payload_and_every_raw_event_while_stdout_stays_clean()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, maxTokens: 8, seed: 3);

        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--model", "sim-fast", "--max-tokens", "8", "--seed", "3", "--debug"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(expected + "\n", result.Stdout);
        var lines = result.StderrLines;
        Assert.Contains(lines, l => l == $"[http] POST {gateway.Url}/v1/chat/completions");
        using var payload = JsonDocument.Parse(RequestPayloads(lines).Single());
        Assert.True(payload.RootElement.GetProperty("stream").GetBoolean());
        Assert.True(payload.RootElement.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.Equal(3, payload.RootElement.GetProperty("seed").GetInt64());
        Assert.Equal(Prompt, payload.RootElement.GetProperty("messages")[0].GetProperty("content").GetString());

        // 8 text chunks, the finish chunk, the usage chunk, then [DONE] — each exactly as received.
        var events = lines.Where(l => l.StartsWith("[sse] data: ", StringComparison.Ordinal)).ToList();
        Assert.Equal(11, events.Count);
        Assert.Equal("[sse] data: [DONE]", events[^1]);
        Assert.Contains("\"completion_tokens\":8", events[^2], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_model_exits_11_with_the_servers_message()
    {
        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--model", "no-such-model"]);

        Assert.Equal(11, result.ExitCode);
        Assert.Equal(string.Empty, result.Stdout);
        Assert.Contains("HTTP 404, model_not_found, param 'model'", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("The model 'no-such-model' does not exist. GET /v1/models lists the models", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Invalid_parameter_exits_11_and_json_stats_carry_the_param()
    {
        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--temperature", "7", "--json"]);

        Assert.Equal(11, result.ExitCode);
        using var stats = JsonDocument.Parse(Assert.Single(result.StderrLines));
        var error = stats.RootElement.GetProperty("error");
        Assert.Equal("failed", stats.RootElement.GetProperty("status").GetString());
        Assert.Equal("client_error", error.GetProperty("kind").GetString());
        Assert.Equal(400, error.GetProperty("http_status").GetInt32());
        Assert.Equal("temperature", error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task Server_not_running_exits_10_and_says_how_to_start_it()
    {
        var url = $"http://127.0.0.1:{GatewayFixture.UnusedPort()}";

        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", url]);

        Assert.Equal(10, result.ExitCode);
        Assert.Contains("connection refused", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("sluice serve", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Error_frame_mid_stream_exits_13_after_the_partial_answer()
    {
        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--model", "sim-fast", "--seed", "9", "--metadata", "sim_fail_after_tokens=3"]);

        Assert.Equal(13, result.ExitCode);
        Assert.False(string.IsNullOrWhiteSpace(result.Stdout));
        Assert.Contains("failed after 3 tokens (counted)", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("simulated_failure", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("retry", result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Server_error_before_the_first_token_exits_12()
    {
        var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--metadata", "sim_fail_status=500"]);

        Assert.Equal(12, result.ExitCode);
        Assert.Equal(string.Empty, result.Stdout);
        Assert.Contains("HTTP 500", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("Retry", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stall_longer_than_the_first_token_timeout_exits_14()
    {
        var config = WriteConfig("""{ "FirstTokenTimeoutSeconds": 0.5 }""");
        try
        {
            // The stall (20 s) outlasts the limit by far: exit code 14 can only come from the client's timer.
            var result = await CliProcess.RunAsync(["chat", Prompt, "--url", gateway.Url, "--config", config, "--metadata", "sim_stall_ms=20000"]);

            Assert.Equal(14, result.ExitCode);
            Assert.Contains("No token arrived within 0.5 s (FirstTokenTimeoutSeconds)", result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Config_file_supplies_url_and_model_and_the_command_line_overrides_them()
    {
        var config = WriteConfig($$"""{ "ApiUrl": "{{gateway.Url}}/v1", "Model": "no-such-model" }""");
        try
        {
            var fromFile = await CliProcess.RunAsync(["chat", Prompt, "--config", config]);
            var overridden = await CliProcess.RunAsync(["chat", Prompt, "--config", config, "--model", "sim-fast", "--max-tokens", "5"]);

            Assert.Equal(11, fromFile.ExitCode);
            Assert.Contains("'no-such-model'", fromFile.Stderr, StringComparison.Ordinal);
            Assert.True(overridden.ExitCode == 0, overridden.ToString());
            Assert.StartsWith("[sim-fast] 5 tokens", overridden.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Config_file_with_an_unknown_key_exits_3_and_names_the_key()
    {
        var config = WriteConfig("""{ "ApiURLs": "http://127.0.0.1:1" }""");
        try
        {
            var result = await CliProcess.RunAsync(["chat", Prompt, "--config", config]);

            Assert.Equal(3, result.ExitCode);
            Assert.Contains("unknown key 'ApiURLs'", result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Session_new_then_session_id_continues_a_conversation_stored_on_the_gateway()
    {
        var first = await CliProcess.RunAsync(
            ["chat", "How do rivers form?", "--url", gateway.Url, "--model", "sim-fast", "--max-tokens", "10", "--system", "Be brief", "--session", "new", "--json"]);
        Assert.True(first.ExitCode == 0, first.ToString());
        string sessionId;
        using (var stats = JsonDocument.Parse(Assert.Single(first.StderrLines)))
        {
            sessionId = stats.RootElement.GetProperty("session_id").GetString()!;
        }

        Assert.StartsWith("sess_", sessionId, StringComparison.Ordinal);

        var second = await CliProcess.RunAsync(["chat", "And lakes?", "--url", gateway.Url, "--max-tokens", "6", "--session", sessionId]);
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.EndsWith("· session " + sessionId, Assert.Single(second.StderrLines), StringComparison.Ordinal);

        // The gateway kept the whole conversation: the system prompt, both questions and both answers as printed.
        using var stored = JsonDocument.Parse(await gateway.Http.GetStringAsync(gateway.Url + "/api/sessions/" + sessionId));
        Assert.Equal("Be brief", stored.RootElement.GetProperty("system_prompt").GetString());
        var messages = stored.RootElement.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("content").GetString()).ToList();
        Assert.Equal(["How do rivers form?", first.Stdout.TrimEnd('\n'), "And lakes?", second.Stdout.TrimEnd('\n')], messages);
    }

    [Fact]
    public async Task Unknown_session_exits_11_with_the_servers_message()
    {
        var result = await CliProcess.RunAsync(["chat", "hello", "--url", gateway.Url, "--session", "sess_missing"]);
        Assert.Equal(11, result.ExitCode);
        Assert.Contains("sess_missing", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Interactive_chat_sends_the_history_with_each_request_and_exits_on_slash_exit()
    {
        var result = await CliProcess.RunAsync(
            ["chat", "--url", gateway.Url, "--model", "sim-fast", "--max-tokens", "12", "--seed", "5", "--system", "Be brief", "--debug"],
            stdin: "Tell me about rivers\nAnd about lakes\n/exit\nThis line is never sent\n");

        Assert.True(result.ExitCode == 0, result.ToString());
        var answers = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, answers.Length);
        Assert.Equal(await gateway.CompleteAsync("sim-fast", "Tell me about rivers", 12, 5) + "\n", answers[0] + "\n");

        var payloads = RequestPayloads(result.StderrLines).ToList();
        Assert.Equal(2, payloads.Count);
        using var second = JsonDocument.Parse(payloads[1]);
        var messages = second.RootElement.GetProperty("messages").EnumerateArray()
            .Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString()))
            .ToList();
        Assert.Equal(
            [("system", "Be brief"), ("user", "Tell me about rivers"), ("assistant", answers[0]), ("user", "And about lakes")],
            messages);
    }

    [Fact]
    public async Task Interactive_reset_clears_the_history_and_end_of_input_quits()
    {
        var result = await CliProcess.RunAsync(
            ["chat", "--url", gateway.Url, "--max-tokens", "5", "--debug"],
            stdin: "First question\n/reset\nSecond question\n");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Conversation cleared.", result.Stderr, StringComparison.Ordinal);
        var payloads = RequestPayloads(result.StderrLines).ToList();
        Assert.Equal(2, payloads.Count);
        using var second = JsonDocument.Parse(payloads[1]);
        var only = Assert.Single(second.RootElement.GetProperty("messages").EnumerateArray());
        Assert.Equal("Second question", only.GetProperty("content").GetString());
    }

    [Fact]
    public async Task Ctrl_c_stops_the_stream_shows_partial_stats_and_exits_130()
    {
        await using var process = CliProcess.Start(["chat", Prompt, "--url", gateway.Url, "--model", "sim-slow", "--max-tokens", "400"], defaultSigInt: true);
        process.Stdin.Close();

        // sim-slow writes ~12 tokens/s: 400 tokens would take over 30 s, so the answer is mid-stream here.
        await process.WaitForOutputAsync((stdout, _) => stdout.Length > 0, TimeSpan.FromSeconds(20));
        await process.InterruptAsync();
        var exitCode = await process.WaitForExitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(130, exitCode);
        var stats = process.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Single(l => l.StartsWith("[sim-slow] cancelled after ", StringComparison.Ordinal));
        var tokens = int.Parse(stats["[sim-slow] cancelled after ".Length..].Split(' ')[0], CultureInfo.InvariantCulture);
        Assert.InRange(tokens, 1, 399);
        Assert.Contains("first token ", stats, StringComparison.Ordinal);
        Assert.DoesNotContain("first token none", stats, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ctrl_c_in_interactive_mode_returns_to_the_prompt()
    {
        await using var process = CliProcess.Start(["chat", "--url", gateway.Url, "--model", "sim-slow", "--max-tokens", "400"], defaultSigInt: true);
        await process.Stdin.WriteLineAsync("Tell me a long story");
        await process.Stdin.FlushAsync();

        await process.WaitForOutputAsync((stdout, _) => stdout.Length > 0, TimeSpan.FromSeconds(20));
        await process.InterruptAsync();
        await process.WaitForOutputAsync((_, stderr) => stderr.Contains("cancelled after", StringComparison.Ordinal) && stderr.EndsWith("> ", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        await process.Stdin.WriteLineAsync("/exit");
        await process.Stdin.FlushAsync();
        var exitCode = await process.WaitForExitAsync(TimeSpan.FromSeconds(10));

        Assert.True(exitCode == 0, $"exit {exitCode}\nstderr: {process.Stderr}");
    }

    private static IEnumerable<string> RequestPayloads(IEnumerable<string> stderrLines) =>
        stderrLines.Where(l => l.StartsWith("[http] request ", StringComparison.Ordinal)).Select(l => l["[http] request ".Length..]);

    private static string WriteConfig(string json)
    {
        var path = Path.Combine(Path.GetTempPath(), $"sluice-chat-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }
}
