using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Headers;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Providers;
using Sluice.Providers.Routing;
using static Sluice.Gateway.Tests.Observability.MetricsScrape;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Observability;

/// <summary><c>GET /metrics</c> after known traffic: exact counts, bounded labels, the guard.</summary>
public sealed class MetricsTests
{
    private const string Streamed = """{"model":"sim-fast","messages":[{"role":"user","content":"Tell me about rivers"}],"stream":true,"max_tokens":8,"stream_options":{"include_usage":true}}""";

    [Fact]
    public void Measurements_reach_their_own_series_whatever_the_previous_one_was()
    {
        // The exporter remembers the series of the last measurement and compares tag strings by reference first: equal
        // text in another string instance, another value, another tag set, and the same tags again must each count
        // where they belong.
        using var meter = new Meter("Sluice.Tests.Exporter." + Guid.NewGuid().ToString("N"));
        using var exporter = new PrometheusExporter(meter, maxSeriesPerMetric: 100);
        var calls = meter.CreateCounter<long>("test.calls");
        var gaps = meter.CreateHistogram<double>("test.gap", unit: "s");
        var a = "model-a";
        var aAgain = new string(a.AsSpan());
        calls.Add(1, new KeyValuePair<string, object?>("model", a));
        calls.Add(2, new KeyValuePair<string, object?>("model", a));
        calls.Add(4, new KeyValuePair<string, object?>("model", aAgain));
        calls.Add(8, new KeyValuePair<string, object?>("model", "model-b"));
        calls.Add(16, new KeyValuePair<string, object?>("model", a));
        calls.Add(32, new("model", a), new("dialect", "openai"));
        calls.Add(64, new KeyValuePair<string, object?>("dialect", a));
        calls.Add(128, new("model", a), new("dialect", "openai"));
        gaps.Record(0.5, new KeyValuePair<string, object?>("model", a));
        gaps.Record(0.25, new KeyValuePair<string, object?>("model", "model-b"));
        gaps.Record(0.125, new KeyValuePair<string, object?>("model", a));

        Assert.Equal(1 + 2 + 4 + 16 + 32 + 128, exporter.Value("test_calls_total", ("model", "model-a")));
        Assert.Equal(32 + 128, exporter.Value("test_calls_total", ("model", "model-a"), ("dialect", "openai")));
        Assert.Equal(8, exporter.Value("test_calls_total", ("model", "model-b")));
        Assert.Equal(64 + 32 + 128, exporter.Value("test_calls_total", ("dialect", "model-a")) + exporter.Value("test_calls_total", ("dialect", "openai")));
        Assert.Equal(2, exporter.Value("test_gap_seconds", ("model", "model-a")));
        Assert.Equal(1, exporter.Value("test_gap_seconds", ("model", "model-b")));
        var text = new System.Text.StringBuilder();
        exporter.Write(text);
        Assert.Contains("test_calls_total{model=\"model-a\"} 23\n", text.ToString(), StringComparison.Ordinal);
        Assert.Contains("test_gap_seconds_sum{model=\"model-a\"} 0.625\n", text.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Known_traffic_gives_exact_counts_per_model_dialect_status_and_outcome()
    {
        await using var gateway = await TestGateway.StartAsync();
        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.PostChatAsync(Streamed);
            Assert.Contains("[DONE]", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var plain = await gateway.PostChatAsync("""{"model":"sim-fast","messages":[{"role":"user","content":"Hi"}],"max_tokens":5}"""))
        {
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        }

        using (var missing = await gateway.PostChatAsync("""{"model":"no-such-model","messages":[{"role":"user","content":"Hi"}],"stream":true}"""))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }

        using (var anthropic = await gateway.Client.PostAsync("v1/messages", TestGateway.Json(
            """{"model":"sim-fast","max_tokens":6,"stream":true,"messages":[{"role":"user","content":"Hi"}]}""")))
        {
            Assert.Contains("message_stop", await anthropic.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        await gateway.Usage.WaitForCountAsync(5);
        var text = await WaitForAsync(gateway.Client, 1, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "anthropic"), ("status", "200"), ("outcome", "completed"));

        Assert.Equal(4, Value(text, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "openai"), ("status", "200"), ("outcome", "completed")));
        Assert.Equal(1, Value(text, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "anthropic"), ("status", "200"), ("outcome", "completed")));

        // A name that does not resolve is counted under the empty model label: clients cannot grow the label set.
        Assert.Equal(1, Value(text, "sluice_requests_total", ("model", ""), ("dialect", "openai"), ("status", "404"), ("outcome", "refused")));
        Assert.DoesNotContain("no-such-model", text, StringComparison.Ordinal);

        // Every answered call has one duration, every answer with tokens one time to first token.
        Assert.Equal(4, Value(text, "sluice_request_duration_seconds_count", ("model", "sim-fast"), ("dialect", "openai"), ("outcome", "completed")));
        Assert.Equal(4, Value(text, "sluice_time_to_first_token_seconds_count", ("model", "sim-fast"), ("dialect", "openai")));
        Assert.Equal(0, Value(text, "sluice_streams_active", ("dialect", "openai")));

        // Tokens: the usage records' sums, by direction.
        var records = gateway.Usage.Records.Where(r => r.Model == "sim-fast").ToList();
        Assert.Equal(records.Sum(r => r.PromptTokens), Value(text, "sluice_tokens_total", ("model", "sim-fast"), ("direction", "input")));
        Assert.Equal(records.Sum(r => r.CompletionTokens), Value(text, "sluice_tokens_total", ("model", "sim-fast"), ("direction", "output")));

        // No team labels unless asked for; process and runtime figures are there.
        Assert.DoesNotContain("team=", text, StringComparison.Ordinal);
        Assert.True(Value(text, "process_resident_memory_bytes") > 10_000_000);
        Assert.True(Value(text, "process_open_fds") > 0);
        Assert.True(Value(text, "process_threads") > 0);
        Assert.Contains("# TYPE process_cpu_seconds_total counter", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE sluice_time_to_first_token_seconds histogram", text, StringComparison.Ordinal);
        Assert.Contains("sluice_time_to_first_token_seconds_bucket{model=\"sim-fast\",dialect=\"openai\",le=\"+Inf\"} 4", text, StringComparison.Ordinal);
        Assert.Contains("dotnet_gc_collections_total", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Retries_fallbacks_and_upstream_errors_are_counted_per_attempt()
    {
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Retry = new RetryOptions { BaseDelayMs = 1, MaxDelayMs = 5 };
            o.Models.Add(new ModelOptions { Name = "down", Provider = "openai", BaseUrl = "http://127.0.0.1:9/v1", MaxAttempts = 2, ConnectTimeoutMs = 2000 });
            o.ModelGroups = [new ModelGroupOptions { Name = "grp", Models = ["down", "sim-fast"] }];
        });

        using var response = await gateway.PostChatAsync("""{"model":"grp","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":4}""");
        Assert.Contains("[DONE]", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var text = await WaitForAsync(gateway.Client, 1, "sluice_requests_total", ("model", "grp"), ("dialect", "openai"), ("status", "200"), ("outcome", "completed"));
        Assert.Equal(1, Value(text, "sluice_retries_total", ("model", "down")));
        Assert.Equal(1, Value(text, "sluice_fallbacks_total", ("from", "down"), ("to", "sim-fast")));
        Assert.Equal(2, Value(text, "sluice_upstream_errors_total", ("model", "down"), ("kind", "unreachable")));
    }

    [Fact]
    public async Task A_simulated_failure_mid_stream_is_an_upstream_error_of_its_kind_and_a_failed_request()
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.PostChatAsync(
            """{"model":"sim-fast","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":20,"metadata":{"sim_fail_after_tokens":"3"}}""");
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("error", body, StringComparison.Ordinal);

        var text = await WaitForAsync(gateway.Client, 1, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "openai"), ("status", "200"), ("outcome", "failed"));
        Assert.Equal(1, Value(text, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "openai"), ("status", "200"), ("outcome", "failed")));
        Assert.Equal(1, text.Split('\n').Where(l => l.StartsWith("sluice_upstream_errors_total{model=\"sim-fast\"", StringComparison.Ordinal)).Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Fact]
    public async Task The_endpoint_takes_the_master_key_or_the_scrape_token_never_a_team_key_and_counts_rejections_per_team_when_asked()
    {
        const string scrapeToken = "scrape-token-0123456789abcdef";
        var store = "sqlite:" + Path.Combine(Path.GetTempPath(), "sluice-metrics-" + Guid.NewGuid().ToString("N"), "sluice.db");
        await using var host = await TenancyHost.StartAsync(store, configure: o =>
        {
            o.Observability.Metrics.ScrapeToken = scrapeToken;
            o.Observability.Metrics.TeamLabels = true;
        });
        var (teamId, key) = await host.NewTeamAsync(100);
        var keyed = (await PostAsync(host.Admin, $"api/teams/{teamId}/keys", """{"rpm_limit": 1}""")).Json.GetProperty("virtual_key").GetString()!;
        using var team = host.NewClient(keyed);
        (await ChatAsync(team)).AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(team)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");

        Assert.Equal(HttpStatusCode.Unauthorized, (await host.Anonymous.GetAsync("metrics")).StatusCode);
        using var withTeamKey = host.NewClient(key);
        Assert.Equal(HttpStatusCode.Unauthorized, (await withTeamKey.GetAsync("metrics")).StatusCode);
        using var scraper = host.NewClient(scrapeToken);

        var text = await WaitForAsync(scraper, 1, "sluice_rate_limit_rejections_total", ("reason", "rate_limit_exceeded"), ("team", teamId));
        Assert.Equal(1, Value(text, "sluice_rate_limit_rejections_total", ("reason", "rate_limit_exceeded"), ("team", teamId)));
        Assert.Equal(1, Value(text, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "openai"), ("team", teamId), ("status", "429"), ("outcome", "refused")));
        Assert.Equal(1, Value(text, "sluice_requests_total", ("model", "sim-fast"), ("dialect", "openai"), ("team", teamId), ("status", "200"), ("outcome", "completed")));
        Assert.Equal(2, Value(text, "sluice_auth_failures_total", ("status", "401")));
        Assert.Equal(HttpStatusCode.OK, (await host.Admin.GetAsync("metrics")).StatusCode);

        // Credits: a completed job charges one credit.
        var job = (await PostAsync(team, "api/jobs/create", "{}")).Json.GetProperty("job_id").GetString();
        (await PostAsync(team, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK);
        text = await ReadAsync(scraper);
        Assert.Equal(1, Value(text, "sluice_credits_charged_total", ("team", teamId)));
    }

    [Fact]
    public async Task Resumes_and_pings_are_counted()
    {
        await using var gateway = await TestGateway.StartAsync(o => o.Streaming.PingIntervalSeconds = 0.05);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = TestGateway.Json("""{"model":"sim-slow","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":2}"""),
        };
        using var response = await gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var streamId = Assert.Single(response.Headers.GetValues("x-sluice-stream-id"));
        _ = await response.Content.ReadAsStringAsync();
        using (var resumed = await gateway.Client.GetAsync($"v1/streams/{streamId}"))
        {
            Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        }

        var text = await ReadAsync(gateway.Client);
        Assert.Equal(1, Value(text, "sluice_stream_resumes_total", ("kind", "resume")));
        Assert.True(Value(text, "sluice_stream_pings_total") >= 1);
    }
}
