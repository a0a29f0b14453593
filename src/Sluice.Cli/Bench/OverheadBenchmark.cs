using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Providers;

namespace Sluice.Cli.Bench;

/// <summary>What <c>sluice bench overhead</c> runs.</summary>
internal sealed record OverheadSettings
{
    public int Chunks { get; init; } = 64;

    public int ChunkDelayMs { get; init; }

    public int Concurrency { get; init; } = 32;

    /// <summary>Measured requests per target per round.</summary>
    public int Requests { get; init; } = 3_000;

    public int Rounds { get; init; } = 3;

    public int Warmup { get; init; } = 500;

    /// <summary>Whether the gateway keeps frames for resumable streams (its default), to see what buffering costs.</summary>
    public bool Resumable { get; init; } = true;

    /// <summary>
    /// Whether the gateway runs with a master key and is called with a team's virtual key (authentication, admission
    /// and the usage ledger on), instead of in open local mode.
    /// </summary>
    public bool Auth { get; init; }

    /// <summary>
    /// Whether the mock upstream, the bare proxy and the gateway run as child processes (as in production) instead
    /// of inside the bench process, where they share its thread pool and GC with the load client.
    /// </summary>
    public bool Processes { get; init; }

    /// <summary>Bound on each measured run.</summary>
    public TimeSpan RoundDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Budget: the gateway must keep at least this share of the direct streams/s.</summary>
    public double MinThroughputRatio { get; init; } = 0.75;

    /// <summary>Budget: time to first byte the gateway may add at concurrency 1, in milliseconds.</summary>
    public double MaxAddedTtfbMs { get; init; } = 0.3;
}

/// <summary>
/// Measures what the gateway adds between an upstream and a client: the loopback mock upstream is benchmarked
/// directly and through an in-process gateway (an <c>openai</c> model pointing at the mock), alternating the
/// order each round so both see the same machine noise. Reports the throughput ratio and the added time to
/// first token at concurrency 1, against the performance budget.
/// </summary>
internal static class OverheadBenchmark
{
    public static async Task<OverheadResult> RunAsync(OverheadSettings settings, TextWriter progress, CancellationToken cancellationToken)
    {
        await using var mock = await MockUpstream.StartAsync(
            new MockUpstreamOptions { Port = 0, Chunks = settings.Chunks, ChunkDelayMs = settings.ChunkDelayMs },
            cancellationToken);

        // A throwaway store: the bench must not touch (or depend on the schema of) a store in the working directory.
        var dataDirectory = Path.Combine(Path.GetTempPath(), "sluice-bench-" + Guid.NewGuid().ToString("N")[..12]);
        var masterKey = settings.Auth ? "sk-bench-master-" + Guid.NewGuid().ToString("N") : null;
        var options = new GatewayOptions
        {
            Port = 0,
            DataDirectory = dataDirectory,
            MasterKey = masterKey,
            Streaming = new StreamingOptions { Resumable = settings.Resumable },
            Models =
            [
                new ModelOptions
                {
                    Name = "mock",
                    Provider = "openai",
                    BaseUrl = new Uri(mock.BaseAddress, "v1").ToString(),
                    MaxAttempts = 1,
                },
            ],
        };
        try
        {
            return await RunAsync(settings, options, mock, masterKey, progress, cancellationToken);
        }
        finally
        {
            try
            {
                Directory.Delete(dataDirectory, recursive: true);
            }
            catch (IOException)
            {
                // A leftover temp directory is harmless.
            }
        }
    }

    private static async Task<OverheadResult> RunAsync(
        OverheadSettings settings,
        GatewayOptions options,
        MockUpstream mock,
        string? masterKey,
        TextWriter progress,
        CancellationToken cancellationToken)
    {
        await using var gateway = await SluiceGateway.StartAsync(
            options,
            configureLogging: logging => logging.SetMinimumLevel(LogLevel.Warning),
            cancellationToken: cancellationToken);
        var gatewayKey = masterKey is null ? null : await CreateTeamKeyAsync(gateway.BaseAddress, masterKey, cancellationToken);

        await using var bare = await BareProxy.StartAsync(mock.BaseAddress, 0, cancellationToken);
        return await MeasureAsync(
            settings,
            new BenchTarget("direct", mock.BaseAddress, null),
            new BenchTarget("bare-proxy", bare.BaseAddress, null),
            new BenchTarget("gateway", gateway.BaseAddress, gatewayKey),
            progress,
            cancellationToken);
    }

    /// <summary>
    /// The measurement itself, wherever the three servers run: warm-up, then per round a throughput run at
    /// <see cref="OverheadSettings.Concurrency"/> and a latency run at concurrency 1 against each target, in ABBA order.
    /// </summary>
    internal static async Task<OverheadResult> MeasureAsync(
        OverheadSettings settings,
        BenchTarget direct,
        BenchTarget bareProxy,
        BenchTarget gateway,
        TextWriter progress,
        CancellationToken cancellationToken)
    {
        var targets = new[] { direct, bareProxy, gateway };
        var throughput = targets.ToDictionary(t => t.Name, _ => new List<BenchResult>());
        var latency = targets.ToDictionary(t => t.Name, _ => new List<BenchResult>());

        foreach (var (name, url, key) in targets)
        {
            await progress.WriteLineAsync($"warming up {name} ({settings.Warmup} requests)…");
            await RunOneAsync(url, key, settings.Concurrency, settings.Warmup, settings, null, cancellationToken);
        }

        for (var round = 0; round < settings.Rounds; round++)
        {
            // ABBA ordering: neither target always runs on a warmer or cooler machine.
            var order = round % 2 == 0 ? targets : [.. targets.Reverse()];
            foreach (var (name, url, key) in order)
            {
                await progress.WriteLineAsync($"round {round + 1}/{settings.Rounds}: {name}, C={settings.Concurrency}, {settings.Requests} streams");
                throughput[name].Add(await RunOneAsync(url, key, settings.Concurrency, settings.Requests, settings, progress, cancellationToken));
            }

            foreach (var (name, url, key) in order)
            {
                var single = Math.Max(200, settings.Requests / 10);
                await progress.WriteLineAsync($"round {round + 1}/{settings.Rounds}: {name}, C=1, {single} streams");
                latency[name].Add(await RunOneAsync(url, key, 1, single, settings, progress, cancellationToken));
            }
        }

        return new OverheadResult(
            settings,
            Summarize(throughput[direct.Name], latency[direct.Name]),
            Summarize(throughput[bareProxy.Name], latency[bareProxy.Name]),
            Summarize(throughput[gateway.Name], latency[gateway.Name]));
    }

    /// <summary>Creates an organization and a team with ample credits through the admin API; returns the team's virtual key.</summary>
    internal static async Task<string> CreateTeamKeyAsync(Uri gateway, string masterKey, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = gateway };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", masterKey);
        async Task<JsonElement> PostAsync(string path, string body)
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.PostAsync(path, content, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new InvalidOperationException($"Setting up the benchmark team failed: POST {path} answered {(int)response.StatusCode} {text}");
            }

            using var json = JsonDocument.Parse(text);
            return json.RootElement.Clone();
        }

        await PostAsync("api/organizations/create", """{"organization_id": "org_bench", "name": "Bench"}""");
        var team = await PostAsync("api/teams/create", """{"organization_id": "org_bench", "team_id": "team_bench", "team_alias": "Bench", "credits_allocated": 1000000000}""");
        return team.GetProperty("virtual_key").GetString()
            ?? throw new InvalidOperationException("Setting up the benchmark team failed: no virtual_key in the answer of api/teams/create.");
    }

    private static async Task<BenchResult> RunOneAsync(Uri url, string? apiKey, int concurrency, int requests, OverheadSettings settings, TextWriter? progress, CancellationToken cancellationToken)
    {
        var bench = new BenchSettings
        {
            BaseUrl = url,
            ApiKey = apiKey,
            Model = "mock",
            Concurrency = concurrency,
            Requests = Math.Max(1, requests),
            MaxTokens = settings.Chunks,
            Duration = settings.RoundDuration,
        };
        var result = await BenchRunner.RunAsync(bench, progress, progressInPlace: false, cancellationToken);

        // A cancelled run returns what finished; the comparison needs every run whole.
        cancellationToken.ThrowIfCancellationRequested();
        if (result.Failed > 0)
        {
            throw new InvalidOperationException(
                $"{result.Failed} of {result.Requests} streams to {url} failed ({string.Join(", ", result.Errors.Select(e => $"{e.Key} × {e.Value}"))}); the comparison would be meaningless.");
        }

        return result;
    }

    private static TargetSummary Summarize(List<BenchResult> throughput, List<BenchResult> latency) => new(
        Median(throughput.Select(r => r.StreamsPerSecond)),
        Median(throughput.Select(r => r.TtftMs.P50)),
        Median(throughput.Select(r => r.TtftMs.P99)),
        Median(latency.Select(r => r.TtftMs.P50)),
        Median(latency.Select(r => r.TtftMs.P99)));

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[sorted.Length / 2];
    }
}

/// <summary>One server the load client runs against: its name in the table, base address and API key (if any).</summary>
internal sealed record BenchTarget(string Name, Uri Url, string? Key);

/// <summary>Medians over the rounds for one target.</summary>
internal sealed record TargetSummary(double StreamsPerSecond, double TtftP50Ms, double TtftP99Ms, double SingleTtftP50Ms, double SingleTtftP99Ms);

/// <summary>The comparison and its verdict against the budget.</summary>
internal sealed record OverheadResult(OverheadSettings Settings, TargetSummary Direct, TargetSummary BareProxy, TargetSummary Gateway)
{
    public double ThroughputRatio => Direct.StreamsPerSecond == 0 ? 0 : Gateway.StreamsPerSecond / Direct.StreamsPerSecond;

    /// <summary>What a do-nothing ASP.NET Core proxy keeps on this machine, for reference.</summary>
    public double BareProxyRatio => Direct.StreamsPerSecond == 0 ? 0 : BareProxy.StreamsPerSecond / Direct.StreamsPerSecond;

    public double AddedTtfbMs => Gateway.SingleTtftP50Ms - Direct.SingleTtftP50Ms;

    public bool ThroughputWithinBudget => ThroughputRatio >= Settings.MinThroughputRatio;

    public bool TtfbWithinBudget => AddedTtfbMs <= Settings.MaxAddedTtfbMs;

    public string ToTable()
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine(string.Create(c, $"Gateway overhead — mock upstream, {Settings.Chunks} chunks/stream, median of {Settings.Rounds} rounds, {(Settings.Processes ? "servers in separate processes" : "all in one process")}, gateway {(Settings.Auth ? "with a virtual key (auth + ledger)" : "in open mode (no auth)")}, resumable {(Settings.Resumable ? "on" : "off")}"));
        text.AppendLine(string.Create(c, $"{"",-12}{"streams/s (C=" + Settings.Concurrency + ")",22}{"TTFT p50",12}{"TTFT p99",12}{"C=1 TTFT p50",15}{"C=1 p99",10}"));
        foreach (var (name, s) in new[] { ("direct", Direct), ("bare-proxy", BareProxy), ("gateway", Gateway) })
        {
            text.AppendLine(string.Create(c, $"{name,-12}{s.StreamsPerSecond,22:0}{s.TtftP50Ms,12:0.000}{s.TtftP99Ms,12:0.000}{s.SingleTtftP50Ms,15:0.000}{s.SingleTtftP99Ms,10:0.000}"));
        }

        text.AppendLine(string.Create(c, $"bare-proxy ratio  {BareProxyRatio:P1}   (reference: a proxy that only copies bytes)"));
        text.AppendLine(string.Create(c, $"throughput ratio  {ThroughputRatio:P1}   (budget ≥ {Settings.MinThroughputRatio:P0}: {(ThroughputWithinBudget ? "met" : "NOT met")})"));
        text.AppendLine(string.Create(c, $"added TTFT at C=1 {AddedTtfbMs:0.000} ms (budget ≤ {Settings.MaxAddedTtfbMs:0.0} ms: {(TtfbWithinBudget ? "met" : "NOT met")})"));
        return text.ToString();
    }

    public string ToJson() => JsonSerializer.Serialize(new
    {
        chunks = Settings.Chunks,
        concurrency = Settings.Concurrency,
        rounds = Settings.Rounds,
        auth = Settings.Auth,
        processes = Settings.Processes,
        resumable = Settings.Resumable,
        direct = Direct,
        bare_proxy = BareProxy,
        gateway = Gateway,
        bare_proxy_ratio = Math.Round(BareProxyRatio, 4),
        throughput_ratio = Math.Round(ThroughputRatio, 4),
        added_ttfb_ms = Math.Round(AddedTtfbMs, 4),
        throughput_within_budget = ThroughputWithinBudget,
        ttfb_within_budget = TtfbWithinBudget,
    });
}
