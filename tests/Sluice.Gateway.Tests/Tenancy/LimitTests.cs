using System.Globalization;
using System.Net;
using Sluice.Testing;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Tenancy;

/// <summary>Requests, tokens and concurrent streams per key and per team: 429 with Retry-After and x-ratelimit-* headers.</summary>
public abstract class LimitTests : TenancyTestBase
{
    public override Task InitializeAsync()
    {
        // A whole one-minute rate window ahead: the counts below cannot straddle a window boundary.
        Time.AlignToMinuteStart();
        return base.InitializeAsync();
    }

    [Fact]
    public async Task A_keys_requests_per_minute_are_counted_and_the_next_gets_429_with_headers()
    {
        var (teamId, _) = await Host.NewTeamAsync(10);
        var key = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"rpm_limit": 3}""")).Json.GetProperty("virtual_key").GetString();
        using var client = Host.NewClient(key);

        for (var i = 0; i < 3; i++)
        {
            var ok = (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
            Assert.Equal("3", ok.Header("x-ratelimit-limit-requests"));
            Assert.Equal((2 - i).ToString(CultureInfo.InvariantCulture), ok.Header("x-ratelimit-remaining-requests"));
        }

        var refused = (await ChatAsync(client)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");
        var retryAfter = int.Parse(refused.Header("retry-after")!, CultureInfo.InvariantCulture);
        Assert.InRange(retryAfter, 1, 60);
        Assert.Equal("3", refused.Header("x-ratelimit-limit-requests"));
        Assert.Equal("0", refused.Header("x-ratelimit-remaining-requests"));
        Assert.Matches("^[0-9]+s$", refused.Header("x-ratelimit-reset-requests")!);

        // Job calls count too, and the other keys of the team are not affected.
        var job = (await PostAsync(client, "api/jobs/create")).Json.GetProperty("job_id").GetString();
        (await PostAsync(client, $"api/jobs/{job}/llm-call", """{"model_group": "sim-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}"""))
            .AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error");
        var (_, otherKey) = await Host.NewTeamAsync(10);
        using var other = Host.NewClient(otherKey);
        (await ChatAsync(other)).AssertStatus(HttpStatusCode.OK);

        // The next window admits again.
        Time.Advance(TimeSpan.FromMinutes(1));
        (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task A_team_limit_covers_all_of_its_keys()
    {
        var (teamId, first) = await Host.NewTeamAsync(10, """, "rpm_limit": 2""");
        var second = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", "{}")).Json.GetProperty("virtual_key").GetString();
        using var a = Host.NewClient(first);
        using var b = Host.NewClient(second);
        (await ChatAsync(a)).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(b)).AssertStatus(HttpStatusCode.OK);
        var refused = (await ChatAsync(a)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error");
        Assert.Contains("team", refused.Error.GetProperty("message").GetString(), StringComparison.Ordinal);
        (await ChatAsync(b)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error");

        // Limits can be changed through the API; this gateway sees the change at once.
        (await SendAsync(Host.Admin, HttpMethod.Put, $"api/teams/{teamId}/limits", """{"rpm_limit": 10}""")).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(b)).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Tokens_per_minute_count_prompts_before_and_completions_after_each_call()
    {
        var (teamId, _) = await Host.NewTeamAsync(50);
        var key = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"tpm_limit": 60}""")).Json.GetProperty("virtual_key").GetString();
        using var client = Host.NewClient(key);

        var longPrompt = string.Join(' ', Enumerable.Repeat("harbour", 200));
        var tooLong = (await PostAsync(client, "v1/chat/completions", $$"""{"model": "sim-fast", "prompt": "{{longPrompt}}", "max_tokens": 3}"""))
            .AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");
        Assert.Equal("60", tooLong.Header("x-ratelimit-limit-tokens"));
        Assert.NotNull(tooLong.Header("retry-after"));

        var first = (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
        var promptTokens = first.Json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal((60 - promptTokens).ToString(CultureInfo.InvariantCulture), first.Header("x-ratelimit-remaining-tokens"));

        // Each call uses its prompt at once and its completion (8) a moment later: the window fills and refuses.
        var (admitted, refused) = await CallUntilRefusedAsync(client, admittedBefore: 1);

        Assert.NotNull(refused);
        Assert.Equal("60", refused.Header("x-ratelimit-limit-tokens"));
        Assert.InRange(admitted, 1, 60 / promptTokens);
    }

    [Fact]
    public async Task Completion_tokens_reach_the_right_keys_window_among_many_cached_keys_and_unknown_secrets()
    {
        var (teamId, _) = await Host.NewTeamAsync(50);
        var others = new List<HttpClient>();
        for (var i = 0; i < 3; i++)
        {
            var other = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"tpm_limit": 100000}""")).Json.GetProperty("virtual_key").GetString();
            others.Add(Host.NewClient(other));
        }

        // Unknown secrets are cached as misses, and other keys as hits: the ledger must still find this key by its id.
        for (var i = 0; i < 30; i++)
        {
            using var junk = Host.NewClient("sk-sluice-unknown-" + i.ToString(CultureInfo.InvariantCulture));
            (await ChatAsync(junk)).AssertError(HttpStatusCode.Unauthorized, "authentication_error");
        }

        var key = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"tpm_limit": 60}""")).Json.GetProperty("virtual_key").GetString();
        using var client = Host.NewClient(key);
        foreach (var other in others)
        {
            (await ChatAsync(other)).AssertStatus(HttpStatusCode.OK);
        }

        var first = (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
        var promptTokens = first.Json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        var (admitted, refused) = await CallUntilRefusedAsync(client, admittedBefore: 1);

        // Call n is admitted while the n - 1 before it (prompt and completion of 8 each) and its own prompt fit in 60;
        // had the completions not reached this key's window, prompts alone would have admitted more.
        Assert.NotNull(refused);
        var expected = ((60 - promptTokens) / (promptTokens + 8)) + 1;
        Assert.NotEqual(60 / promptTokens, expected);
        Assert.Equal(expected, admitted);
        foreach (var other in others)
        {
            other.Dispose();
        }
    }

    /// <summary>
    /// Calls until a tokens-per-minute refusal (at most 20 more calls), letting the ledger count each answer's
    /// completion first; returns how many calls were admitted in all and the refusal (null if none came).
    /// </summary>
    private async Task<(int Admitted, ApiResponse? Refused)> CallUntilRefusedAsync(HttpClient client, int admittedBefore)
    {
        var admitted = admittedBefore;
        for (var i = 0; i < 20; i++)
        {
            await Host.DrainLedgerAsync();
            var answer = await ChatAsync(client);
            if (answer.Status != HttpStatusCode.OK)
            {
                return (admitted, answer.AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error"));
            }

            admitted++;
        }

        return (admitted, null);
    }

    [Fact]
    public async Task Embeddings_are_limited_and_billed_on_their_input_tokens()
    {
        var (teamId, _) = await Host.NewTeamAsync(50);
        var key = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"tpm_limit": 60}""")).Json.GetProperty("virtual_key").GetString();
        using var client = Host.NewClient(key);

        var longInput = string.Join(' ', Enumerable.Repeat("harbour", 200));
        var tooLong = (await PostAsync(client, "v1/embeddings", $$"""{"model": "sim-embed", "input": ["short", "{{longInput}}"]}"""))
            .AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");
        Assert.Contains("this prompt has 201", tooLong.Error.GetProperty("message").GetString(), StringComparison.Ordinal);

        var ok = (await PostAsync(client, "v1/embeddings", """{"model": "sim-embed", "input": ["one two three", "four five"]}""")).AssertStatus(HttpStatusCode.OK);
        Assert.Equal(5, ok.Json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal("55", ok.Header("x-ratelimit-remaining-tokens"));
    }

    [Fact]
    public async Task Concurrent_streams_beyond_the_limit_get_429_until_one_ends()
    {
        var (teamId, _) = await Host.NewTeamAsync(10);
        var key = (await PostAsync(Host.Admin, $"api/teams/{teamId}/keys", """{"max_parallel_requests": 1}""")).Json.GetProperty("virtual_key").GetString();
        using var client = Host.NewClient(key);

        using (var running = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = Json("""{"model": "sim-paced", "prompt": "Tell me a long story", "stream": true, "max_tokens": 30}"""),
            },
            HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, running.StatusCode);
            var refused = (await ChatAsync(client)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "concurrency_limit_exceeded");
            Assert.Equal("1", refused.Header("retry-after"));
            var events = await SseTestClient.ReadAllAsync(running);
            Assert.True(events[^1].IsDone);
        }

        // The slot was released before the first stream's response ended.
        (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(client)).AssertStatus(HttpStatusCode.OK);
    }
}

public sealed class SqliteLimitTests : LimitTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}

public sealed class PostgresLimitTests : LimitTests
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();
}
