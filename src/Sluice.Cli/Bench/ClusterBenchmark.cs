using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Sluice.Cli.Bench;

/// <summary>
/// <c>sluice bench cluster</c>: what several gateway instances on one store promise, measured through their load
/// balancer. (1) A team's requests-per-minute limit: requests are offered at twice the limit for a while and the
/// admitted ones are counted per clock minute (the limit's window). (2) Credits: N jobs completed twice each, all at
/// once, must charge exactly N credits. Throughput is measured with plain <c>sluice bench</c> against the balancer
/// and against one instance.
/// </summary>
internal static class ClusterBenchmark
{
    public static async Task<int> RunAsync(Uri url, string masterKey, int rpm, double seconds, int jobs, int concurrency, TextWriter output, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency, UseProxy = false }) { BaseAddress = url, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", masterKey);
        var ok = await MeasureRateLimitAsync(http, rpm, seconds, output, cancellationToken);
        ok &= await MeasureCreditsAsync(http, jobs, concurrency, output, cancellationToken);
        return ok ? ExitCodes.Success : ExitCodes.BudgetMissed;
    }

    private static async Task<bool> MeasureRateLimitAsync(HttpClient admin, int rpm, double seconds, TextWriter output, CancellationToken cancellationToken)
    {
        var (teamId, key) = await NewTeamAsync(admin, 10_000_000, $", \"rpm_limit\": {rpm}", cancellationToken);
        var rate = 2.0 * rpm / 60;
        await output.WriteLineAsync($"rate limit: team {teamId}, rpm_limit {rpm}; offering {rate:F0} requests/s (twice the limit) for {seconds:F0} s through {admin.BaseAddress}");
        var outcomes = new ConcurrentBag<(DateTimeOffset At, HttpStatusCode Status)>();
        var started = Stopwatch.GetTimestamp();
        var tasks = new List<Task>();
        for (var i = 0; Stopwatch.GetElapsedTime(started).TotalSeconds < seconds; i++)
        {
            var due = TimeSpan.FromSeconds(i / rate) - Stopwatch.GetElapsedTime(started);
            if (due > TimeSpan.Zero)
            {
                await Task.Delay(due, cancellationToken);
            }

            tasks.Add(Task.Run(
                async () =>
                {
                    var at = DateTimeOffset.UtcNow;
                    using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("v1/chat/completions", UriKind.Relative))
                    {
                        Content = new StringContent("""{"model": "sim-fast", "prompt": "hi", "max_tokens": 1}""", Encoding.UTF8, "application/json"),
                    };
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                    using var response = await admin.SendAsync(request, cancellationToken);
                    outcomes.Add((at, response.StatusCode));
                },
                cancellationToken));
        }

        await Task.WhenAll(tasks);
        var ok = true;
        var minutes = outcomes.GroupBy(o => o.At.ToUnixTimeSeconds() / 60).OrderBy(g => g.Key).ToList();
        for (var m = 0; m < minutes.Count; m++)
        {
            var admitted = minutes[m].Count(o => o.Status == HttpStatusCode.OK);
            var refused = minutes[m].Count(o => o.Status == HttpStatusCode.TooManyRequests);
            var other = minutes[m].Count() - admitted - refused;
            var whole = m > 0 && m < minutes.Count - 1;
            var drift = 100.0 * (admitted - rpm) / rpm;
            await output.WriteLineAsync(string.Create(
                CultureInfo.InvariantCulture,
                $"  minute {DateTimeOffset.FromUnixTimeSeconds(minutes[m].Key * 60):HH:mm} UTC: admitted {admitted}, refused {refused} (429), other {other}{(whole ? $" — {drift:+0.0;-0.0;0.0} % of the limit" : " (partial minute)")}"));
            ok &= other == 0 && (!whole || Math.Abs(drift) <= 5);
        }

        return ok;
    }

    private static async Task<bool> MeasureCreditsAsync(HttpClient admin, int jobs, int concurrency, TextWriter output, CancellationToken cancellationToken)
    {
        var (teamId, key) = await NewTeamAsync(admin, jobs, string.Empty, cancellationToken);
        using var gate = new SemaphoreSlim(concurrency);
        async Task<JsonElement> Post(string path, string body)
        {
            await gate.WaitAsync(cancellationToken);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(path, UriKind.Relative)) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                using var response = await admin.SendAsync(request, cancellationToken);
                var text = await response.Content.ReadAsStringAsync(cancellationToken);
                return response.IsSuccessStatusCode
                    ? JsonDocument.Parse(text).RootElement.Clone()
                    : throw new HttpRequestException($"{path}: {(int)response.StatusCode} {text}");
            }
            finally
            {
                gate.Release();
            }
        }

        var created = await Task.WhenAll(Enumerable.Range(0, jobs).Select(_ => Post("api/jobs/create", "{}")));
        var ids = created.Select(c => c.GetProperty("job_id").GetString()!).ToList();
        var started = Stopwatch.GetTimestamp();

        // Every job completed twice at once, the pairs spread over the instances by the balancer.
        var completions = await Task.WhenAll(ids.SelectMany(id => new[]
        {
            Post($"api/jobs/{id}/complete", """{"status": "completed"}"""),
            Post($"api/jobs/{id}/complete", """{"status": "completed"}"""),
        }));
        var took = Stopwatch.GetElapsedTime(started);
        var charged = completions.Count(c => !c.GetProperty("already_completed").GetBoolean());
        var balance = (await GetAsync(admin, $"api/credits/teams/{teamId}/balance", cancellationToken)).GetProperty("credits_remaining").GetInt64();
        var ok = charged == jobs && balance == 0;
        await output.WriteLineAsync(string.Create(
            CultureInfo.InvariantCulture,
            $"credits: {jobs} jobs completed twice each at once ({2 * jobs} calls, {concurrency} at a time) in {took.TotalSeconds:F1} s: charged {charged}, balance {jobs} → {balance} ({(ok ? "exact" : "WRONG")})"));
        return ok;
    }

    private static async Task<(string TeamId, string Key)> NewTeamAsync(HttpClient admin, long credits, string extra, CancellationToken cancellationToken)
    {
        var org = await PostAsync(admin, "api/organizations/create", $$"""{"name": "bench-{{Guid.NewGuid():N}}"}""", cancellationToken);
        var team = await PostAsync(
            admin,
            "api/teams/create",
            $$"""{"organization_id": "{{org.GetProperty("organization_id").GetString()}}", "team_alias": "bench-{{Guid.NewGuid():N}}", "credits_allocated": {{credits}}{{extra}}}""",
            cancellationToken);
        return (team.GetProperty("team_id").GetString()!, team.GetProperty("virtual_key").GetString()!);
    }

    private static async Task<JsonElement> PostAsync(HttpClient http, string path, string body, CancellationToken cancellationToken)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(new Uri(path, UriKind.Relative), content, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        return response.IsSuccessStatusCode
            ? JsonDocument.Parse(text).RootElement.Clone()
            : throw new HttpRequestException($"{path}: {(int)response.StatusCode} {text}. Check --master-key.");
    }

    private static async Task<JsonElement> GetAsync(HttpClient http, string path, CancellationToken cancellationToken)
    {
        var text = await http.GetStringAsync(new Uri(path, UriKind.Relative), cancellationToken);
        return JsonDocument.Parse(text).RootElement.Clone();
    }
}
