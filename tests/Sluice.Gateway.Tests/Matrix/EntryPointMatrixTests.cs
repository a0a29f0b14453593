using System.Text.Json;
using Sluice.Gateway.Accounting;

namespace Sluice.Gateway.Tests.Matrix;

/// <summary>
/// Every entry point × what a call can meet: a model group created through the API, limits (rate, concurrency), no
/// credits, a bad key, an upstream failure mid-stream, a client that leaves, a streamed tool call. Each cell passes on
/// every entry point — the same pipeline answers them all — in that entry point's own dialect.
/// </summary>
/// <remarks>
/// Cells that a dialect has no room for are refusals, tested as such: Ollama's <c>/api/generate</c> takes no tools
/// (as in Ollama). MQTT has no connection per request to drop: its client "leaves" by cancelling (<c>{"id", "cancel":
/// true}</c>), which ends the answer the same way.
/// </remarks>
public sealed class EntryPointMatrixTests(MatrixFixture fixture) : IClassFixture<MatrixFixture>
{
    public static TheoryData<string> EntryPoints => new(EntryPoint.All.Keys);

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_model_group_created_through_the_API_answers_and_is_billed_under_its_name(string entry)
    {
        var (team, key) = await fixture.NewTeamAsync();
        var outcome = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest(MatrixFixture.GroupName));

        Assert.True(outcome is { Done: true, Failed: false } && outcome.Text.Length > 0, outcome.ToString());
        var record = Assert.Single(await UsageOfAsync(team, 1));
        Assert.Equal((MatrixFixture.GroupName, UsageStatus.Completed), (record.Model, record.Status));
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_rate_limit_answers_429_in_the_dialects_shape(string entry)
    {
        var (_, key) = await fixture.NewTeamAsync(extra: ", \"rpm_limit\": 1");
        var first = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest("sim-fast"));
        Assert.True(first.Done, first.ToString());

        var second = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest("sim-fast"));
        AssertRefused(entry, second, 429, "rate_limit_exceeded", "rate_limit_error", "requests per minute");
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_concurrency_limit_answers_429_while_another_call_holds_the_slot(string entry)
    {
        var (_, key) = await fixture.NewTeamAsync(extra: ", \"max_parallel_requests\": 1");
        await using (await EntryPoint.All["openai"].OpenAsync(fixture, key, new MatrixRequest("sim-paced", MaxTokens: 400)))
        {
            var refused = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest("sim-fast"));
            AssertRefused(entry, refused, 429, "concurrency_limit_exceeded", "rate_limit_error", "at once");
        }
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_team_without_credits_gets_403_in_the_dialects_shape(string entry)
    {
        var (team, key) = await fixture.NewTeamAsync(credits: 0);
        var outcome = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest("sim-fast"));

        AssertRefused(entry, outcome, 403, "insufficient_credits", "permission_error", "credits");
        Assert.DoesNotContain(fixture.Usage.Records, r => r.TeamId == team);
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_bad_key_answers_401_in_the_dialects_shape_with_a_request_id(string entry)
    {
        var outcome = await EntryPoint.All[entry].CallAsync(fixture, "sk-sluice-not-a-key-0000", new MatrixRequest("sim-fast"));

        AssertRefused(entry is "websocket" ? "http-upgrade" : entry, outcome, 401, "invalid_api_key", "authentication_error", "not valid");
        Assert.False(string.IsNullOrEmpty(outcome.RequestId), $"{entry}: no request id ({outcome})");
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task An_upstream_failure_mid_stream_is_an_error_frame_after_the_text_and_one_usage_record(string entry)
    {
        var (team, key) = await fixture.NewTeamAsync();
        var outcome = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest("sim-breaks", MaxTokens: 40));

        Assert.True(outcome.Text.Length > 0 && outcome.Failed && outcome.ErrorShaped && !outcome.Done, outcome.ToString());
        Assert.True(outcome.Status is 0 or 200, outcome.ToString());
        await UsageOfAsync(team, 1);
        await Task.Delay(200);
        Assert.Equal(UsageStatus.Failed, Assert.Single(fixture.Usage.Records, r => r.TeamId == team).Status);
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_client_that_leaves_is_abandoned_and_the_upstream_request_aborted(string entry)
    {
        var (team, key) = await fixture.NewTeamAsync();
        var aborted = fixture.UpstreamAborted;
        await using (await EntryPoint.All[entry].OpenAsync(fixture, key, new MatrixRequest("up-slow", MaxTokens: 500)))
        {
        }

        var record = Assert.Single(await UsageOfAsync(team, 1));
        Assert.Equal(UsageStatus.Abandoned, record.Status);
        await WaitUntilAsync(() => fixture.UpstreamAborted > aborted, $"{entry}: the upstream request was not aborted");
    }

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public async Task A_streamed_tool_call_arrives_whole(string entry)
    {
        var (_, key) = await fixture.NewTeamAsync();
        var outcome = await EntryPoint.All[entry].CallAsync(fixture, key, new MatrixRequest("sim-fast", MatrixRequest.WeatherPrompt, MaxTokens: 80, Tools: true));
        if (entry == "ollama-generate")
        {
            // Ollama's /api/generate takes no tools: a clear refusal naming the field, not a silent drop.
            AssertRefused(entry, outcome, 400, "unsupported_parameter", "invalid_request_error", "/api/chat");
            return;
        }

        Assert.True(outcome is { Done: true, Failed: false }, outcome.ToString());
        var (name, arguments) = Assert.Single(outcome.ToolCalls);
        Assert.Equal("get_weather", name);
        using var parsed = JsonDocument.Parse(arguments);
        Assert.Equal(JsonValueKind.String, parsed.RootElement.GetProperty("city").ValueKind);
    }

    /// <summary>A refusal in the entry point's dialect: status and code (OpenAI shape), type (Anthropic), message (Ollama).</summary>
    private static void AssertRefused(string entry, MatrixOutcome outcome, int status, string code, string anthropicType, string ollamaFragment)
    {
        Assert.True(outcome.Failed && outcome.ErrorShaped, $"{entry}: {outcome}");
        switch (entry)
        {
            case "websocket" or "mqtt":
                Assert.Equal(code, outcome.ErrorCode);
                break;
            case "anthropic":
                Assert.Equal((status, anthropicType), (outcome.Status, outcome.ErrorType));
                Assert.NotNull(outcome.RequestId);
                break;
            case "ollama-chat" or "ollama-generate":
                Assert.Equal(status, outcome.Status);
                Assert.Contains(ollamaFragment, outcome.ErrorMessage, StringComparison.OrdinalIgnoreCase);
                Assert.NotNull(outcome.RequestId);
                break;
            default:
                Assert.Equal((status, code), (outcome.Status, outcome.ErrorCode));
                Assert.NotNull(outcome.RequestId);
                break;
        }
    }

    private async Task<IReadOnlyList<UsageRecord>> UsageOfAsync(string team, int count)
    {
        await WaitUntilAsync(() => fixture.Usage.Records.Count(r => r.TeamId == team) >= count, $"no {count} usage record(s) for {team}");
        return [.. fixture.Usage.Records.Where(r => r.TeamId == team)];
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what);
            await Task.Delay(20);
        }
    }
}
