using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text;

/// <summary>
/// Loaded by the runtime before Main when DOTNET_STARTUP_HOOKS names this assembly. Listens to the runtime's
/// randomized allocation sampling (.NET 9+ <c>AllocationSampled</c>: on average one sampled object per 100 KB, every
/// byte equally likely, so each type's share is unbiased) and writes the estimated bytes per type to SLUICE_ALLOC_OUT every SLUICE_ALLOC_INTERVAL seconds (default 5), so a run's allocation
/// profile can be read without a profiler. Reset with SIGUSR-free means: the file always holds the totals since
/// SLUICE_ALLOC_START seconds after start (default 0), so a warm-up can be left out.
/// </summary>
internal static class StartupHook
{
    private static AllocListener? s_listener;
    private static GcPhaseListener? s_gcPhases;

    public static void Initialize()
    {
        // Only the process named by SLUICE_ALLOC_COMMAND (default "serve"): scripts start a mock upstream with the same environment.
        var command = Environment.GetEnvironmentVariable("SLUICE_ALLOC_COMMAND") ?? "serve";
        if (Environment.GetCommandLineArgs().Contains(command))
        {
            if (Environment.GetEnvironmentVariable("SLUICE_EXC_OUT") is { Length: > 0 } excOut)
            {
                ExceptionRecorder.Start(excOut);
            }

            if (Environment.GetEnvironmentVariable("SLUICE_GC_OUT") is { Length: > 0 } gcOut)
            {
                s_gcPhases = new GcPhaseListener(gcOut);
            }
            else
            {
                s_listener = new AllocListener();
            }
        }
    }
}

internal sealed class AllocListener : EventListener
{
    // AllocationSamplingKeyword. The older GCAllocationTick (keyword 0x1) charges ~100 KB to whichever object needs a
    // new allocation context, which over-counts objects of a KB or more many times over: it is only a fallback.
    private const long SamplingKeyword = 0x80000000000;
    private const long GcKeyword = 0x1;
    private const double MeanSamplingDistance = 102_400;
    // Two tallies: the tick fallback can fire before the first sampled event, and mixing the two would bias the
    // unbiased one, so the file shows the sampled tally as soon as it has anything.
    private readonly Tally _sampled = new();
    private readonly Tally _ticks = new();
    private readonly string? _out = Environment.GetEnvironmentVariable("SLUICE_ALLOC_OUT");
    private readonly DateTime _start = DateTime.UtcNow.AddSeconds(double.Parse(Environment.GetEnvironmentVariable("SLUICE_ALLOC_START") ?? "0", CultureInfo.InvariantCulture));
    private readonly Timer _timer;

    public AllocListener()
    {
        var interval = TimeSpan.FromSeconds(double.Parse(Environment.GetEnvironmentVariable("SLUICE_ALLOC_INTERVAL") ?? "5", CultureInfo.InvariantCulture));
        _timer = new Timer(_ => Write(), null, interval, interval);
    }

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)(GcKeyword | SamplingKeyword));
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.Payload is null || DateTime.UtcNow < _start)
        {
            return;
        }

        var names = e.PayloadNames!;
        var nameIndex = names.IndexOf("TypeName");
        if (nameIndex < 0)
        {
            return;
        }

        double amount;
        Tally tally;
        if (e.EventName == "AllocationSampled")
        {
            // A sampled object of size s stands for s / (1 - e^(-s/d)) bytes (d the mean distance between samples):
            // about d for small objects, s itself for objects much larger than d.
            var size = Convert.ToDouble(e.Payload[names.IndexOf("ObjectSize")], CultureInfo.InvariantCulture);
            amount = size / (1 - Math.Exp(-size / MeanSamplingDistance));
            tally = _sampled;
        }
        else if (e.EventId == 10 && names.IndexOf("AllocationAmount64") is var amountIndex and >= 0)
        {
            amount = Convert.ToDouble(e.Payload[amountIndex], CultureInfo.InvariantCulture);
            tally = _ticks;
        }
        else
        {
            return;
        }

        var bytes = (long)amount;
        var type = (string?)e.Payload[nameIndex] ?? "?";
        if (tally == _sampled && type is "System.Byte[]" or "System.String" or "System.Char[]")
        {
            // Arrays by size too: the size usually names the buffer (a 16 KB replay segment, a 4 KB read buffer).
            var size = Convert.ToInt64(e.Payload[names.IndexOf("ObjectSize")], CultureInfo.InvariantCulture);
            tally.Bytes.AddOrUpdate($"  {type} of {size:N0} B", bytes, (_, v) => v + bytes);
        }

        // The total first: a write racing this event then never shows a type above 100 %.
        Interlocked.Add(ref tally.Total, bytes);
        tally.Bytes.AddOrUpdate(type, bytes, (_, v) => v + bytes);
    }

    private int _writing;

    private void Write()
    {
        // A timer callback can start before the previous one ends (a loaded machine, a short interval): two writers
        // would share the .tmp file and the second rename would throw, killing the process being measured.
        if (_out is null || Interlocked.Exchange(ref _writing, 1) == 1)
        {
            return;
        }

        try
        {
            WriteTally(_out);
        }
        finally
        {
            Volatile.Write(ref _writing, 0);
        }
    }

    private void WriteTally(string output)
    {

        var sampled = Interlocked.Read(ref _sampled.Total) > 0;
        var tally = sampled ? _sampled : _ticks;
        var total = Math.Max(1, Interlocked.Read(ref tally.Total));
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"estimated bytes {total:N0} ({(sampled ? "AllocationSampled, unbiased" : "GCAllocationTick, biased towards larger objects")})\n");
        foreach (var (type, bytes) in tally.Bytes.OrderByDescending(p => p.Value).Take(80))
        {
            text.Append(CultureInfo.InvariantCulture, $"{100.0 * bytes / total,6:F2} %  {bytes,14:N0}  {type}\n");
        }

        // Written beside and renamed over, so a reader never sees a half-written file.
        File.WriteAllText(output + ".tmp", text.ToString());
        File.Move(output + ".tmp", output, overwrite: true);
    }

    private sealed class Tally
    {
        public readonly ConcurrentDictionary<string, long> Bytes = new();
        public long Total;
    }
}

/// <summary>
/// SLUICE_EXC_OUT: counts first-chance exceptions by type and the stack where each was thrown (the first 2,000 in
/// full), and writes the tally to the file every 5 seconds — to find exceptions thrown on a hot path (e.g. one per
/// closed connection) without a profiler.
/// </summary>
internal static class ExceptionRecorder
{
    private static readonly ConcurrentDictionary<string, int> s_counts = new();
    private static int s_seen;
    private static Timer? s_timer;

    public static void Start(string path)
    {
        AppDomain.CurrentDomain.FirstChanceException += (_, e) =>
        {
            var n = Interlocked.Increment(ref s_seen);
            var key = n <= 2_000 ? e.Exception.GetType().FullName + ": " + e.Exception.Message + "\n" + Environment.StackTrace : e.Exception.GetType().FullName!;
            s_counts.AddOrUpdate(key, 1, static (_, c) => c + 1);
        };
        // A timer like AllocListener's (rooted in a static: the hook keeps nothing else alive).
        s_timer = new Timer(_ =>
        {
            var text = new StringBuilder().Append("first-chance exceptions: ").Append(Volatile.Read(ref s_seen)).Append('\n');
            foreach (var (key, count) in s_counts.OrderByDescending(p => p.Value).Take(20))
            {
                text.Append(count).Append(" x ").Append(key).Append("\n\n");
            }

            File.WriteAllText(path, text.ToString());
        }, null, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
    }
}
