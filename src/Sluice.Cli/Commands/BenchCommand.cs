using System.CommandLine;
using System.CommandLine.Parsing;
using System.Runtime.InteropServices;
using Sluice.Cli.Bench;

namespace Sluice.Cli.Commands;

/// <summary><c>sluice bench</c>: a streaming load test against any OpenAI-compatible server.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var url = new Option<string>("--url", "-u") { Description = "Base URL of the server (/v1/chat/completions is appended).", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var model = new Option<string>("--model", "-m") { Description = "Model to ask for.", DefaultValueFactory = _ => "sim-fast" };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Streams open at the same time (one connection each).", DefaultValueFactory = _ => 8 };
        var requests = new Option<int>("--requests", "-n") { Description = "Measured requests in total.", DefaultValueFactory = _ => 1_000 };
        var duration = new Option<double>("--duration", "-d") { Description = "Stop after this many seconds, warm-up included, even if requests remain.", DefaultValueFactory = _ => 60 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "max_tokens of each request.", DefaultValueFactory = _ => 64 };
        var prompt = new Option<string>("--prompt") { Description = "The user message sent.", DefaultValueFactory = _ => new BenchSettings().Prompt };
        var apiKey = new Option<string?>("--api-key") { Description = "Sent as 'Authorization: Bearer <key>' (default: env SLUICE_API_KEY, if set)." };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON instead of a table." };
        var warmup = new Option<int>("--warmup", "-w") { Description = "Requests run before measuring (not counted).", DefaultValueFactory = _ => 0 };
        var command = new Command(
            "bench",
            "Load-test streaming chat completions: C workers each loop over streaming requests until N are done or the duration runs out.\n"
            + "Reports time to first token (TTFT), inter-chunk gaps, streams/s, tokens/s and errors by kind.\n"
            + "Exit code 0 when every request succeeded, 12 when some failed, 10 when nothing listens at --url.\n\n"
            + "Examples:\n"
            + "  sluice bench --concurrency 32 --requests 5000 --max-tokens 64\n"
            + "  sluice bench --url http://127.0.0.1:8081 --model mock -c 256 -n 20000 --json")
        {
            url, model, concurrency, requests, duration, maxTokens, prompt, apiKey, json, warmup, CreateOverhead(), CreateProxy(), CreateCluster(),
        };
        command.SetAction((parse, cancellationToken) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var baseUrl))
            {
                return ReportUsageAsync($"--url '{parse.GetValue(url)}' is not an absolute URL; use e.g. http://127.0.0.1:8080.");
            }

            var settings = new BenchSettings
            {
                BaseUrl = baseUrl,
                Model = parse.GetValue(model)!,
                Concurrency = parse.GetValue(concurrency),
                Requests = parse.GetValue(requests),
                Duration = TimeSpan.FromSeconds(Math.Min(parse.GetValue(duration), 86_400 + 1)),
                MaxTokens = parse.GetValue(maxTokens),
                Prompt = parse.GetValue(prompt)!,
                ApiKey = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("SLUICE_API_KEY"),
                Warmup = parse.GetValue(warmup),
            };
            return RunAsync(settings, parse.GetValue(json), cancellationToken);
        });
        return command;
    }

    private static Command CreateOverhead()
    {
        var chunks = new Option<int>("--chunks") { Description = "Chunks per answer from the mock upstream.", DefaultValueFactory = _ => 64 };
        var chunkDelay = new Option<int>("--chunk-delay-ms") { Description = "Delay between the mock's chunks.", DefaultValueFactory = _ => 0 };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Streams open at once for the throughput runs.", DefaultValueFactory = _ => 32 };
        var requests = new Option<int>("--requests", "-n") { Description = "Streams per target per round.", DefaultValueFactory = _ => 3_000 };
        var rounds = new Option<int>("--rounds", "-r") { Description = "Rounds (alternating order); medians are reported.", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup", "-w") { Description = "Warm-up streams per target.", DefaultValueFactory = _ => 500 };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON." };
        var noResume = new Option<bool>("--no-resume") { Description = "Run the gateway with Streaming:Resumable false, to see what stream buffering costs." };
        var processes = new Option<bool>("--processes")
        {
            Description = "Run the mock upstream, the bare proxy and the gateway as child processes on free loopback ports (sluice mock-upstream, sluice serve), "
                + "as in production, instead of inside the bench process where they share its thread pool and GC with the load client.",
        };
        var auth = new Option<bool>("--auth")
        {
            Description = "Run the gateway with a master key and call it with a team's virtual key (auth, admission and the usage ledger on), as the budget asks; without it the gateway runs in open local mode.",
        };
        var command = new Command(
            "overhead",
            "Measure what the gateway adds: a loopback mock upstream benchmarked directly and through an in-process gateway\n"
            + "(an openai model pointing at the mock), alternating each round. Checks the budget: >= 75 % of the direct\n"
            + "streams/s, <= 0.3 ms added time to first token at concurrency 1. Exit code 0 when both are met, 15 otherwise.\n\n"
            + "Examples:\n  sluice bench overhead --chunks 64 -c 32 -n 3000 --rounds 3 --auth\n"
            + "  sluice bench overhead --processes --chunks 64 -c 32 -n 10000 --rounds 3 --warmup 2000 --auth")
        {
            chunks, chunkDelay, concurrency, requests, rounds, warmup, json, noResume, auth, processes,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var settings = new OverheadSettings
            {
                Chunks = Math.Max(1, parse.GetValue(chunks)),
                ChunkDelayMs = Math.Max(0, parse.GetValue(chunkDelay)),
                Concurrency = Math.Max(1, parse.GetValue(concurrency)),
                Requests = Math.Max(1, parse.GetValue(requests)),
                Rounds = Math.Max(1, parse.GetValue(rounds)),
                Warmup = Math.Max(0, parse.GetValue(warmup)),
                Resumable = !parse.GetValue(noResume),
                Auth = parse.GetValue(auth),
                Processes = parse.GetValue(processes),
            };

            // Ctrl+C and SIGTERM end the run through the token, so the child processes are stopped on the way out
            // (the runtime's default would end this process at once and leave them running).
            using var interrupted = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            void OnSignal(PosixSignalContext context)
            {
                context.Cancel = true;
                interrupted.Cancel();
            }

            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            try
            {
                var result = settings.Processes
                    ? await ProcessOverheadBenchmark.RunAsync(settings, Console.Error, interrupted.Token)
                    : await OverheadBenchmark.RunAsync(settings, Console.Error, interrupted.Token);
                await Console.Out.WriteLineAsync(parse.GetValue(json) ? result.ToJson() : result.ToTable());
                return result.ThroughputWithinBudget && result.TtfbWithinBudget ? ExitCodes.Success : ExitCodes.BudgetMissed;
            }
            catch (OperationCanceledException) when (interrupted.IsCancellationRequested)
            {
                await Console.Error.WriteLineAsync("sluice bench overhead: cancelled; no result. Run it again and let it finish for numbers.");
                return ExitCodes.Cancelled;
            }
            catch (InvalidOperationException ex)
            {
                await Console.Error.WriteLineAsync($"sluice bench overhead: {ex.Message}");
                return ExitCodes.ServerError;
            }
        });
        return command;
    }

    /// <summary><c>sluice bench cluster</c>: a requests-per-minute limit and job credits through a load balancer (see <see cref="ClusterBenchmark"/>).</summary>
    private static Command CreateCluster()
    {
        var url = new Option<string>("--url", "-u") { Description = "The load balancer in front of the instances.", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var masterKey = new Option<string?>("--master-key") { Description = "The gateways' master key (default: env SLUICE_MASTER_KEY)." };
        var rpm = new Option<int>("--rpm") { Description = "The team's requests-per-minute limit to measure.", DefaultValueFactory = _ => 600 };
        var seconds = new Option<double>("--seconds") { Description = "How long requests are offered (at twice the limit); at least one whole clock minute needs ~125 s.", DefaultValueFactory = _ => 125 };
        var jobs = new Option<int>("--jobs") { Description = "Jobs completed (twice each, all at once) for the credit check.", DefaultValueFactory = _ => 1000 };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at most (credit check).", DefaultValueFactory = _ => 64 };
        var command = new Command(
            "cluster",
            "Through a load balancer in front of several instances on one PostgreSQL: a team's requests-per-minute limit (admitted per clock minute, "
            + "offered at twice the limit) and exact credits under concurrent job completions. Exit code 0 when both hold (within 5 % and exactly), 15 otherwise.\n\n"
            + "Example:\n  sluice bench cluster --url http://127.0.0.1:8080 --master-key $SLUICE_MASTER_KEY")
        {
            url, masterKey, rpm, seconds, jobs, concurrency,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var baseUrl))
            {
                return await ReportUsageAsync($"--url '{parse.GetValue(url)}' is not an absolute URL; use e.g. http://127.0.0.1:8080.");
            }

            var key = parse.GetValue(masterKey) ?? Environment.GetEnvironmentVariable("SLUICE_MASTER_KEY");
            if (string.IsNullOrEmpty(key))
            {
                return await ReportUsageAsync("bench cluster creates teams: pass --master-key or set SLUICE_MASTER_KEY to the gateways' master key.");
            }

            try
            {
                return await ClusterBenchmark.RunAsync(
                    new Uri(baseUrl.ToString().TrimEnd('/') + "/"), key, parse.GetValue(rpm), parse.GetValue(seconds), parse.GetValue(jobs), parse.GetValue(concurrency), Console.Out, cancellationToken);
            }
            catch (HttpRequestException ex)
            {
                await Console.Error.WriteLineAsync($"sluice bench cluster: {ex.Message}. Check that the balancer at {baseUrl} forwards to running instances.");
                return ExitCodes.ServerError;
            }
            catch (OperationCanceledException)
            {
                return ExitCodes.Cancelled;
            }
        });
        return command;
    }

    /// <summary>
    /// <c>sluice bench proxy</c> (hidden): the bare pass-through of <c>bench overhead</c> as its own process, which
    /// <c>bench overhead --processes</c> starts as a child.
    /// </summary>
    private static Command CreateProxy()
    {
        var upstream = new Option<string>("--upstream") { Description = "Base URL of the upstream (v1/chat/completions is appended).", Required = true };
        var port = new Option<int>("--port", "-p") { Description = "Port on 127.0.0.1 (0: any free port).", DefaultValueFactory = _ => 0 };
        var command = new Command("proxy", "A bare ASP.NET Core pass-through to --upstream (POST /v1/chat/completions, GET /health), the reference of bench overhead.")
        {
            upstream, port,
        };
        command.Hidden = true;
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (!Uri.TryCreate(parse.GetValue(upstream), UriKind.Absolute, out var upstreamUrl))
            {
                return await ReportUsageAsync($"--upstream '{parse.GetValue(upstream)}' is not an absolute URL; use e.g. http://127.0.0.1:8081/.");
            }

            try
            {
                await using var proxy = await BareProxy.StartAsync(upstreamUrl, parse.GetValue(port), cancellationToken);
                await Console.Out.WriteLineAsync($"Bare proxy listening on {proxy.BaseAddress}, forwarding to {upstreamUrl}. Ctrl+C to stop.");
                await proxy.WaitForShutdownAsync(cancellationToken);
                return ExitCodes.Success;
            }
            catch (IOException ex) when (ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                await Console.Error.WriteLineAsync($"sluice bench proxy: {ex.Message}. Another process uses that port: stop it or pass another --port.");
                return ExitCodes.Config;
            }
            catch (OperationCanceledException)
            {
                return ExitCodes.Success;
            }
        });
        return command;
    }

    internal static async Task<int> RunAsync(BenchSettings settings, bool json, CancellationToken cancellationToken)
    {
        if (settings.Validate() is { } problem)
        {
            return await ReportUsageAsync(problem);
        }

        var result = await BenchRunner.RunAsync(settings, Console.Error, progressInPlace: !Console.IsErrorRedirected, cancellationToken);
        await Console.Out.WriteAsync(json ? result.ToJson() + Environment.NewLine : result.ToTable());
        if (result.StoppedBy == "unreachable")
        {
            await Console.Error.WriteLineAsync($"sluice bench: nothing answers at {result.Url}. Start the server first (sluice serve, or sluice mock-upstream), or fix --url.");
            return ExitCodes.ConnectionRefused;
        }

        if (result.StoppedBy == "cancelled")
        {
            return ExitCodes.Cancelled;
        }

        return result.Failed > 0 ? ExitCodes.ServerError : ExitCodes.Success;
    }

    private static async Task<int> ReportUsageAsync(string problem)
    {
        await Console.Error.WriteLineAsync($"sluice bench: {problem}");
        return ExitCodes.Usage;
    }
}
