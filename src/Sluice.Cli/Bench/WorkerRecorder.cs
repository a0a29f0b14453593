using System.Diagnostics;

namespace Sluice.Cli.Bench;

/// <summary>Why a request did not succeed.</summary>
internal enum BenchErrorKind
{
    /// <summary>The server answered with a status other than 200.</summary>
    Http,

    /// <summary>A <c>data: {"error": …}</c> frame arrived mid-stream.</summary>
    ErrorFrame,

    /// <summary>The stream ended without <c>data: [DONE]</c>.</summary>
    MissingDone,

    /// <summary>A data frame was not a JSON object.</summary>
    BadJson,

    /// <summary>The connection could not be opened.</summary>
    Connect,

    /// <summary>The connection broke while sending or reading.</summary>
    Transport,
}

/// <summary>
/// One worker's measurements. Only its worker writes to it, so recording needs no locks; the progress loop
/// reads the counters (possibly a moment stale, which is fine for a progress line) and everything is merged
/// once the workers are done.
/// </summary>
internal sealed class WorkerRecorder
{
    private static readonly double MicrosecondsPerTick = 1_000_000.0 / Stopwatch.Frequency;

    private long[] _ttft;
    private long[] _latency;
    private int _succeeded;
    private int _failed;
    private int _cut;

    public WorkerRecorder(int expectedRequests)
    {
        var capacity = Math.Clamp(expectedRequests, 16, 1 << 16);
        _ttft = new long[capacity];
        _latency = new long[capacity];
    }

    public LatencyHistogram Gaps { get; } = new();

    public int TtftCount { get; private set; }

    public int LatencyCount { get; private set; }

    public long Tokens { get; private set; }

    public long Chunks { get; private set; }

    public int[] ErrorCounts { get; } = new int[Enum.GetValues<BenchErrorKind>().Length];

    /// <summary>Counts per HTTP status for <see cref="BenchErrorKind.Http"/> failures (created on the first one).</summary>
    public Dictionary<int, int>? HttpStatuses { get; private set; }

    public int Succeeded => Volatile.Read(ref _succeeded);

    public int Failed => Volatile.Read(ref _failed);

    public int Cut => Volatile.Read(ref _cut);

    public ReadOnlySpan<long> TtftMicroseconds => _ttft.AsSpan(0, TtftCount);

    public ReadOnlySpan<long> LatencyMicroseconds => _latency.AsSpan(0, LatencyCount);

    public static long ToMicroseconds(long ticks) => (long)(ticks * MicrosecondsPerTick);

    public void RecordGap(long ticks) => Gaps.Record(ToMicroseconds(ticks));

    /// <summary>Records a stream that ended with <c>[DONE]</c>.</summary>
    /// <param name="ttftTicks">Time to the first content delta, or -1 when the stream had no content.</param>
    /// <param name="latencyTicks">Time to the end of the stream.</param>
    /// <param name="chunks">Content chunks received.</param>
    /// <param name="tokens">Completion tokens (usage, else chunks).</param>
    public void Succeed(long ttftTicks, long latencyTicks, int chunks, int tokens)
    {
        if (ttftTicks >= 0)
        {
            Append(ref _ttft, TtftCount, ToMicroseconds(ttftTicks));
            TtftCount++;
        }

        Append(ref _latency, LatencyCount, ToMicroseconds(latencyTicks));
        LatencyCount++;
        Chunks += chunks;
        Tokens += tokens;
        Volatile.Write(ref _succeeded, _succeeded + 1);
    }

    public void Fail(BenchErrorKind kind, int httpStatus = 0)
    {
        ErrorCounts[(int)kind]++;
        if (kind == BenchErrorKind.Http)
        {
            HttpStatuses ??= [];
            HttpStatuses[httpStatus] = HttpStatuses.GetValueOrDefault(httpStatus) + 1;
        }

        Volatile.Write(ref _failed, _failed + 1);
    }

    /// <summary>A stream still open when the run ended (duration bound or Ctrl+C): neither success nor error.</summary>
    public void CutShort() => Volatile.Write(ref _cut, _cut + 1);

    private static void Append(ref long[] array, int count, long value)
    {
        if (count == array.Length)
        {
            Array.Resize(ref array, array.Length * 2);
        }

        array[count] = value;
    }
}
