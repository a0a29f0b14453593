using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Testing;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>
/// <c>GET /metrics</c> as a real Prometheus sees it (Debian's <c>prometheus</c> and <c>promtool</c>, installed by
/// <c>scripts/test.sh</c>): the exposition passes <c>promtool check metrics</c>, the scrape configuration
/// docs/observability.md prints scrapes the gateway with its token, and every query of docs/grafana-dashboard.json —
/// the template variables' too — parses and, after known traffic, returns the series the panel is for.
/// </summary>
public sealed partial class PrometheusServerTests : IAsyncLifetime
{
    private const string ScrapeToken = "scrape-token-for-prometheus-0123456789";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-prometheus-");
    private TenancyHost? _host;
    private readonly Queue<string> _log = new();
    private Process? _prometheus;

    public async Task InitializeAsync()
    {
        var store = "sqlite:" + Path.Combine(_root.FullName, "sluice.db");
        _host = await TenancyHost.StartAsync(store, configure: o => o.Observability.Metrics.ScrapeToken = ScrapeToken);
    }

    public async Task DisposeAsync()
    {
        if (_prometheus is { HasExited: false })
        {
            _prometheus.Kill(entireProcessTree: true);
            await _prometheus.WaitForExitAsync();
        }

        _prometheus?.Dispose();
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }

        _root.Delete(recursive: true);
    }

    [Fact]
    public async Task A_real_prometheus_scrapes_the_documented_config_and_answers_every_dashboard_query()
    {
        var host = _host!;
        await MakeTrafficAsync(host);
        using var scraper = host.NewClient(ScrapeToken);

        // 1. The exposition as promtool reads it: no parse error, and no naming advice for Sluice's own metrics. The .NET
        //    runtime's gauges keep their OpenTelemetry names (dotnet.assembly.count → dotnet_assembly_count), which
        //    promtool's naming advice flags for the "_count" ending that histograms also use.
        var exposition = await MetricsScrape.WaitForAsync(scraper, 1, "sluice_credits_charged_total");
        var lint = await RunAsync(Tool("promtool"), ["check", "metrics"], exposition);
        Assert.True(lint.ExitCode is 0 or 3, $"promtool could not read the exposition (exit {lint.ExitCode}): {lint.Output}");
        var advice = lint.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.All(advice, line => Assert.Matches(RuntimeCountAdvice(), line));

        // 2. The scrape configuration from docs/observability.md, as printed, with this gateway and token filled in.
        var documented = DocumentedScrapeConfig();
        var port = LoopbackPorts.Free();
        var config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + documented
            .Replace("\"<Observability:Metrics:ScrapeToken>\"", $"\"{ScrapeToken}\"", StringComparison.Ordinal)
            .Replace("127.0.0.1:8080", host.BaseAddress.Authority, StringComparison.Ordinal);
        Assert.Contains(ScrapeToken, config, StringComparison.Ordinal);
        var configPath = Path.Combine(_root.FullName, "prometheus.yml");
        await File.WriteAllTextAsync(configPath, config);
        var check = await RunAsync(Tool("promtool"), ["check", "config", configPath]);
        Assert.True(check.ExitCode == 0, check.Output);

        _prometheus = Start(
            Tool("prometheus"),
            [$"--config.file={configPath}", $"--storage.tsdb.path={Path.Combine(_root.FullName, "tsdb")}", $"--web.listen-address=127.0.0.1:{port}"]);
        var api = new Uri($"http://127.0.0.1:{port}/");

        // 3. The target is up (the token accepted), then two scrapes of the series exist (a rate needs two samples).
        var target = await PollAsync(api, "api/v1/targets", json =>
            json.GetProperty("data").GetProperty("activeTargets") is { ValueKind: JsonValueKind.Array } targets && targets.GetArrayLength() == 1
            && targets[0].GetProperty("health").GetString() == "up" ? targets[0] : (JsonElement?)null);
        Assert.Equal(string.Empty, target.GetProperty("lastError").GetString());
        Assert.Equal($"http://{host.BaseAddress.Authority}/metrics", target.GetProperty("scrapeUrl").GetString());
        await PollAsync(api, "api/v1/query?query=" + Uri.EscapeDataString("count_over_time(sluice_credits_charged_total[1m])"), json =>
            json.GetProperty("data").GetProperty("result") is { ValueKind: JsonValueKind.Array } result && result.GetArrayLength() > 0
            && double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture) >= 2 ? result : (JsonElement?)null);

        // 4. The dashboard's template variables find this gateway and its model.
        var instances = await GetJsonAsync(api, "api/v1/label/instance/values?match[]=sluice_requests_total");
        Assert.Contains(host.BaseAddress.Authority, instances.GetProperty("data").EnumerateArray().Select(v => v.GetString()));
        var models = await GetJsonAsync(api, "api/v1/label/model/values?match[]=sluice_requests_total");
        Assert.Contains("sim-paced", models.GetProperty("data").EnumerateArray().Select(v => v.GetString()));

        // 5. Every panel's query parses; those whose series this traffic made return them, with the labels they group by.
        var empty = new List<string>();
        foreach (var (title, expr) in DashboardQueries())
        {
            // A regular expression inside a PromQL string: its backslashes are escaped once more.
            var query = expr.Replace("$instance", Regex.Escape(host.BaseAddress.Authority).Replace("\\", "\\\\", StringComparison.Ordinal), StringComparison.Ordinal)
                .Replace("$model", ".*", StringComparison.Ordinal).Replace("$__rate_interval", "1m", StringComparison.Ordinal);
            var answer = await GetJsonAsync(api, "api/v1/query?query=" + Uri.EscapeDataString(query));
            Assert.True(answer.GetProperty("status").GetString() == "success", $"{title}: {query}\n{answer}");
            var result = answer.GetProperty("data").GetProperty("result");
            if (result.GetArrayLength() == 0)
            {
                empty.Add(title);
                continue;
            }

            // Histogram quantiles group by the bucket bound, which the quantile consumes.
            foreach (var grouped in GroupedLabels().Matches(query).SelectMany(m => m.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries)).Where(l => l != "le"))
            {
                Assert.True(result.EnumerateArray().All(series => series.GetProperty("metric").TryGetProperty(grouped, out _)), $"{title}: no '{grouped}' label in {result}");
            }
        }

        // Only upstream errors, retries, fallbacks, resumes, pings and slow clients had no traffic here.
        Assert.Equal(
            ["Resumes, pings, slow-client drops, auth failures (/s)", "Resumes, pings, slow-client drops, auth failures (/s)", "Resumes, pings, slow-client drops, auth failures (/s)",
                "Retries and fallbacks/s", "Retries and fallbacks/s", "Upstream errors/s by kind"],
            empty.Order(StringComparer.Ordinal).ToArray());
        var outcomes = await QueryLabelsAsync(api, "sum by (outcome) (sluice_requests_total)", "outcome");
        Assert.Superset(new HashSet<string> { "completed", "refused" }, outcomes);
    }

    // A completed stream (paced, so its tokens reach the client in several flushes: inter-token gaps), a refused request (400), a rate-limit refusal (429), a wrong key (401) and a completed job
    // (one credit): every panel but upstream errors, retries, fallbacks, resumes, pings and slow clients has a series.
    private static async Task MakeTrafficAsync(TenancyHost host)
    {
        var (teamId, _) = await host.NewTeamAsync(100);
        var keyed = (await PostAsync(host.Admin, $"api/teams/{teamId}/keys", """{"rpm_limit": 1}""")).Json.GetProperty("virtual_key").GetString()!;
        using var team = host.NewClient(keyed);
        var stream = await PostAsync(team, "v1/chat/completions", """{"model":"sim-paced","messages":[{"role":"user","content":"Tell me about rivers"}],"stream":true,"max_tokens":4}""");
        stream.AssertStatus(HttpStatusCode.OK);
        (await ChatAsync(team)).AssertError(HttpStatusCode.TooManyRequests, "rate_limit_error", "rate_limit_exceeded");
        using var other = host.NewClient((await host.NewTeamAsync(100)).Key);
        (await PostAsync(other, "v1/chat/completions", """{"model":"sim-fast","messages":[]}""")).AssertStatus(HttpStatusCode.BadRequest);
        using var wrong = host.NewClient("sk-not-a-key-0123456789abcdef");
        Assert.Equal(HttpStatusCode.Unauthorized, (await ChatAsync(wrong)).Status);
        var job = (await PostAsync(other, "api/jobs/create", "{}")).Json.GetProperty("job_id").GetString();
        (await PostAsync(other, $"api/jobs/{job}/complete", """{"status": "completed"}""")).AssertStatus(HttpStatusCode.OK);
    }

    private static string DocumentedScrapeConfig()
    {
        var doc = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "docs", "observability.md"));
        var block = YamlBlock().Match(doc);
        Assert.True(block.Success, "docs/observability.md has a ```yaml block with the scrape configuration");
        return block.Groups[1].Value;
    }

    private static IEnumerable<(string Title, string Expr)> DashboardQueries()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "docs", "grafana-dashboard.json")));
        var queries = new List<(string, string)>();
        void Walk(JsonElement panels)
        {
            foreach (var panel in panels.EnumerateArray())
            {
                if (panel.TryGetProperty("targets", out var targets))
                {
                    foreach (var target in targets.EnumerateArray())
                    {
                        queries.Add((panel.GetProperty("title").GetString()!, target.GetProperty("expr").GetString()!));
                    }
                }

                if (panel.TryGetProperty("panels", out var inner))
                {
                    Walk(inner);
                }
            }
        }

        Walk(dashboard.RootElement.GetProperty("panels"));
        Assert.True(queries.Count >= 20, $"the dashboard's queries were found ({queries.Count})");
        return queries;
    }

    private static async Task<HashSet<string>> QueryLabelsAsync(Uri api, string query, string label)
    {
        var answer = await GetJsonAsync(api, "api/v1/query?query=" + Uri.EscapeDataString(query));
        return [.. answer.GetProperty("data").GetProperty("result").EnumerateArray().Select(s => s.GetProperty("metric").GetProperty(label).GetString()!)];
    }

    private static async Task<JsonElement> GetJsonAsync(Uri api, string path)
    {
        using var response = await Http.GetAsync(new Uri(api, path));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        using var json = JsonDocument.Parse(text);
        return json.RootElement.Clone();
    }

    // Polls the API (up to 60 s: Prometheus starts, then scrapes every second) until `found` returns a value.
    private async Task<JsonElement> PollAsync(Uri api, string path, Func<JsonElement, JsonElement?> found)
    {
        var deadline = Stopwatch.GetTimestamp() + (60 * Stopwatch.Frequency);
        var last = "(no answer)";
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (_prometheus!.HasExited)
            {
                Assert.Fail($"prometheus exited ({_prometheus.ExitCode}): {PrometheusLog}");
            }

            try
            {
                using var response = await Http.GetAsync(new Uri(api, path));
                last = await response.Content.ReadAsStringAsync();
                if (response.IsSuccessStatusCode)
                {
                    using var json = JsonDocument.Parse(last);
                    if (found(json.RootElement) is { } value)
                    {
                        return value.Clone();
                    }
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            await Task.Delay(200);
        }

        Assert.Fail($"Prometheus did not get there in 60 s: {path} answered {last}\n{PrometheusLog}");
        return default;
    }

    private static string Tool(string name)
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var path = Path.Combine(directory, name);
            if (File.Exists(path))
            {
                return path;
            }
        }

        Assert.Fail($"{name} not found: run the tests with `bash scripts/test.sh` (it installs Debian's prometheus package) or `apt-get install -y prometheus`.");
        return name;
    }

    // The server's last lines, for a failure message.
    private string PrometheusLog
    {
        get
        {
            lock (_log)
            {
                return string.Join('\n', _log);
            }
        }
    }

    private Process Start(string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info)!;
        // Drained (a chatty server must never block on a full pipe), the last 40 lines kept.
        void Keep(object sender, DataReceivedEventArgs line)
        {
            lock (_log)
            {
                if (line.Data is not null)
                {
                    _log.Enqueue(line.Data);
                }

                while (_log.Count > 40)
                {
                    _log.Dequeue();
                }
            }
        }

        process.OutputDataReceived += Keep;
        process.ErrorDataReceived += Keep;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string file, IEnumerable<string> args, string? stdin = null)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }

        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"^dotnet_[a-z_]+_count non-histogram and non-summary metrics should not have ""_count"" suffix$")]
    private static partial Regex RuntimeCountAdvice();

    [GeneratedRegex(@"```yaml\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex YamlBlock();

    [GeneratedRegex(@"by \(([^)]*)\)")]
    private static partial Regex GroupedLabels();
}
