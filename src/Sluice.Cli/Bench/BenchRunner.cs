using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Sluice.Protocol.Sse;

namespace Sluice.Cli.Bench;

/// <summary>
/// Runs a streaming load test: <see cref="BenchSettings.Concurrency"/> workers each loop over streaming chat
/// requests on one shared <see cref="HttpClient"/> until the requests are used up or the duration bound hits.
/// </summary>
internal sealed class BenchRunner : IDisposable
{
    private readonly BenchSettings _settings;
    private readonly HttpClient _client;
    private readonly byte[] _body;
    private readonly Uri _endpoint;
    private readonly string? _authorization;
    private readonly CancellationTokenSource _stop;
    private int _issued;
    private int _limit;
    private int _anySucceeded;
    private volatile bool _unreachable;

    private BenchRunner(BenchSettings settings, CancellationToken cancellationToken)
    {
        _settings = settings;
        _endpoint = settings.Endpoint;
        _body = BuildBody(settings);
        _authorization = string.IsNullOrEmpty(settings.ApiKey) ? null : "Bearer " + settings.ApiKey;
        var handler = new SocketsHttpHandler
        {
            // One connection per worker: HTTP/1.1 carries one stream at a time, and waiting for a free
            // connection would be measured as server latency.
            MaxConnectionsPerServer = settings.Concurrency,
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(2),
            ConnectTimeout = TimeSpan.FromSeconds(10),
            AutomaticDecompression = DecompressionMethods.None,
            AllowAutoRedirect = false,
            UseCookies = false,
            UseProxy = false,
        };
        _client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
    }

    /// <summary>Runs the benchmark; never throws for failed requests (they are counted).</summary>
    /// <param name="settings">What to run.</param>
    /// <param name="progress">Where the progress line goes (null: none).</param>
    /// <param name="progressInPlace">Redraw one line with <c>\r</c> (a terminal) instead of writing a line each time (a log).</param>
    /// <param name="cancellationToken">Ctrl+C: ends the run early; the result covers what finished.</param>
    public static async Task<BenchResult> RunAsync(BenchSettings settings, TextWriter? progress, bool progressInPlace, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        using var runner = new BenchRunner(settings, cancellationToken);
        return await runner.RunCoreAsync(progress, progressInPlace, cancellationToken);
    }

    public void Dispose()
    {
        _client.Dispose();
        _stop.Dispose();
    }

    private async Task<BenchResult> RunCoreAsync(TextWriter? progress, bool progressInPlace, CancellationToken cancellationToken)
    {
        _stop.CancelAfter(_settings.Duration);
        var concurrency = _settings.Concurrency;
        if (_settings.Warmup > 0)
        {
            var warmupWorkers = Math.Min(concurrency, _settings.Warmup);
            var warmup = CreateRecorders(warmupWorkers, _settings.Warmup);
            await RunPhaseAsync(warmup, _settings.Warmup, null, false, "warm-up");
        }

        var recorders = CreateRecorders(concurrency, _settings.Requests);
        var start = Stopwatch.GetTimestamp();
        await RunPhaseAsync(recorders, _settings.Requests, progress, progressInPlace, "bench");
        var elapsed = Stopwatch.GetElapsedTime(start);
        return Summarize(recorders, elapsed, StoppedBy(recorders, cancellationToken));
    }

    private string StoppedBy(WorkerRecorder[] recorders, CancellationToken cancellationToken)
    {
        if (_unreachable)
        {
            return "unreachable";
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return "cancelled";
        }

        return recorders.Sum(r => (long)r.Succeeded + r.Failed) >= _settings.Requests ? "requests" : "duration";
    }

    private static WorkerRecorder[] CreateRecorders(int workers, int requests)
    {
        var perWorker = (int)Math.Min(int.MaxValue, ((long)requests / workers) + 1);
        var recorders = new WorkerRecorder[workers];
        for (var i = 0; i < workers; i++)
        {
            recorders[i] = new WorkerRecorder(perWorker);
        }

        return recorders;
    }

    private async Task RunPhaseAsync(WorkerRecorder[] recorders, int requests, TextWriter? progress, bool inPlace, string label)
    {
        _issued = 0;
        _limit = requests;
        var token = _stop.Token;
        var workers = new Task[recorders.Length];
        for (var i = 0; i < recorders.Length; i++)
        {
            var recorder = recorders[i];
            workers[i] = Task.Run(() => WorkerAsync(recorder, token), CancellationToken.None);
        }

        var all = Task.WhenAll(workers);
        if (progress is not null)
        {
            await ReportProgressAsync(all, recorders, requests, progress, inPlace, label);
        }

        await all;
    }

    private async Task WorkerAsync(WorkerRecorder recorder, CancellationToken token)
    {
        while (!token.IsCancellationRequested && Interlocked.Increment(ref _issued) <= _limit)
        {
            await RunOneAsync(recorder, token);
        }
    }

    private async Task RunOneAsync(WorkerRecorder recorder, CancellationToken token)
    {
        var start = Stopwatch.GetTimestamp();
        long first = -1;
        long last = 0;
        var chunks = 0;
        var tokens = -1;
        var done = false;
        using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint) { Content = new ByteArrayContent(_body) };
        request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/json");
        request.Headers.TryAddWithoutValidation("Accept", "text/event-stream");
        if (_authorization is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", _authorization);
        }

        try
        {
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, token);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                recorder.Fail(BenchErrorKind.Http, (int)response.StatusCode);
                return;
            }

            await using var stream = await response.Content.ReadAsStreamAsync(token);
            await foreach (var sseEvent in SseReader.ReadAsync(stream, surfaceComments: false, token))
            {
                if (done)
                {
                    // Read on to the end so the connection goes back to the pool clean.
                    continue;
                }

                if (sseEvent.IsDone)
                {
                    done = true;
                    continue;
                }

                ChunkInfo chunk;
                try
                {
                    chunk = ChunkScanner.Scan(sseEvent.Data.Span);
                }
                catch (JsonException)
                {
                    recorder.Fail(BenchErrorKind.BadJson);
                    return;
                }

                if (chunk.IsError)
                {
                    recorder.Fail(BenchErrorKind.ErrorFrame);
                    return;
                }

                if (chunk.CompletionTokens >= 0)
                {
                    tokens = chunk.CompletionTokens;
                }

                if (chunk.HasContent)
                {
                    var now = Stopwatch.GetTimestamp();
                    if (chunks == 0)
                    {
                        first = now;
                    }
                    else
                    {
                        recorder.RecordGap(now - last);
                    }

                    last = now;
                    chunks++;
                }
            }

            if (!done)
            {
                recorder.Fail(BenchErrorKind.MissingDone);
                return;
            }

            Volatile.Write(ref _anySucceeded, 1);
            recorder.Succeed(first < 0 ? -1 : first - start, Stopwatch.GetTimestamp() - start, chunks, tokens >= 0 ? tokens : chunks);
        }
        catch (Exception ex) when (token.IsCancellationRequested && ex is OperationCanceledException or IOException or HttpRequestException)
        {
            // The run ended (duration bound or Ctrl+C) while this stream was open.
            recorder.CutShort();
        }
        catch (HttpRequestException ex) when (ex.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError)
        {
            recorder.Fail(BenchErrorKind.Connect);
            if (Volatile.Read(ref _anySucceeded) == 0)
            {
                // Nothing has ever answered: every further request would fail the same way, so stop now.
                _unreachable = true;
                await _stop.CancelAsync();
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
        {
            recorder.Fail(BenchErrorKind.Transport);
        }
    }

    private async Task ReportProgressAsync(Task all, WorkerRecorder[] recorders, int requests, TextWriter progress, bool inPlace, string label)
    {
        var interval = _settings.ProgressInterval;
        using var timer = new PeriodicTimer(interval);
        var started = Stopwatch.GetTimestamp();
        var lastTime = started;
        long lastSucceeded = 0;
        var width = 0;
        while (true)
        {
            var tick = timer.WaitForNextTickAsync().AsTask();
            await Task.WhenAny(all, tick);
            if (all.IsCompleted)
            {
                break;
            }

            long succeeded = 0;
            long failed = 0;
            foreach (var recorder in recorders)
            {
                succeeded += recorder.Succeeded;
                failed += recorder.Failed;
            }

            var now = Stopwatch.GetTimestamp();
            var seconds = Stopwatch.GetElapsedTime(lastTime, now).TotalSeconds;
            var rate = seconds > 0 ? (succeeded - lastSucceeded) / seconds : 0;
            lastTime = now;
            lastSucceeded = succeeded;
            var line = string.Create(
                CultureInfo.InvariantCulture,
                $"{label}: {succeeded + failed}/{requests} done, {failed} errors, {rate:0.0} streams/s, {Stopwatch.GetElapsedTime(started).TotalSeconds:0.0} s");
            if (inPlace)
            {
                width = Math.Max(width, line.Length);
                await progress.WriteAsync("\r" + line.PadRight(width));
            }
            else
            {
                await progress.WriteLineAsync(line);
            }

            await progress.FlushAsync();
        }

        if (inPlace && width > 0)
        {
            await progress.WriteAsync("\r" + new string(' ', width) + "\r");
            await progress.FlushAsync();
        }
    }

    private BenchResult Summarize(WorkerRecorder[] recorders, TimeSpan elapsed, string stoppedBy)
    {
        var ttft = new long[recorders.Sum(r => r.TtftCount)];
        var latency = new long[recorders.Sum(r => r.LatencyCount)];
        var gaps = new LatencyHistogram();
        var errors = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int succeeded = 0, failed = 0, cut = 0;
        long tokens = 0, chunks = 0;
        int ttftAt = 0, latencyAt = 0;
        foreach (var recorder in recorders)
        {
            recorder.TtftMicroseconds.CopyTo(ttft.AsSpan(ttftAt));
            ttftAt += recorder.TtftCount;
            recorder.LatencyMicroseconds.CopyTo(latency.AsSpan(latencyAt));
            latencyAt += recorder.LatencyCount;
            gaps.Add(recorder.Gaps);
            succeeded += recorder.Succeeded;
            failed += recorder.Failed;
            cut += recorder.Cut;
            tokens += recorder.Tokens;
            chunks += recorder.Chunks;
            for (var kind = 0; kind < recorder.ErrorCounts.Length; kind++)
            {
                if (kind != (int)BenchErrorKind.Http && recorder.ErrorCounts[kind] > 0)
                {
                    var name = ErrorName((BenchErrorKind)kind);
                    errors[name] = errors.GetValueOrDefault(name) + recorder.ErrorCounts[kind];
                }
            }

            foreach (var (status, count) in recorder.HttpStatuses ?? [])
            {
                var name = string.Create(CultureInfo.InvariantCulture, $"http_{status}");
                errors[name] = errors.GetValueOrDefault(name) + count;
            }
        }

        var seconds = Math.Max(elapsed.TotalSeconds, 1e-9);
        return new BenchResult
        {
            Url = _endpoint.ToString(),
            Model = _settings.Model,
            Concurrency = _settings.Concurrency,
            Requests = _settings.Requests,
            MaxTokens = _settings.MaxTokens,
            Warmup = _settings.Warmup,
            Succeeded = succeeded,
            Failed = failed,
            Cut = cut,
            StoppedBy = stoppedBy,
            DurationSeconds = Math.Round(elapsed.TotalSeconds, 3),
            StreamsPerSecond = Math.Round(succeeded / seconds, 1),
            TokensPerSecond = Math.Round(tokens / seconds, 1),
            CompletionTokens = tokens,
            Chunks = chunks,
            TtftMs = LatencySummary.FromExact(ttft),
            GapMs = LatencySummary.FromHistogram(gaps),
            LatencyMs = LatencySummary.FromExact(latency),
            Errors = errors,
        };
    }

    private static string ErrorName(BenchErrorKind kind) => kind switch
    {
        BenchErrorKind.ErrorFrame => "error_frame",
        BenchErrorKind.MissingDone => "missing_done",
        BenchErrorKind.BadJson => "bad_json",
        BenchErrorKind.Connect => "connect",
        BenchErrorKind.Transport => "transport",
        _ => "http",
    };

    private static byte[] BuildBody(BenchSettings settings)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + settings.Prompt.Length);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model"u8, settings.Model);
            json.WriteStartArray("messages"u8);
            json.WriteStartObject();
            json.WriteString("role"u8, "user"u8);
            json.WriteString("content"u8, settings.Prompt);
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteBoolean("stream"u8, true);
            json.WriteStartObject("stream_options"u8);
            json.WriteBoolean("include_usage"u8, true);
            json.WriteEndObject();
            json.WriteNumber("max_tokens"u8, settings.MaxTokens);
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}
