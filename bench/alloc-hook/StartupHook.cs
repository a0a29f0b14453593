using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text;

/// <summary>
/// Loaded by the runtime before Main when DOTNET_STARTUP_HOOKS names this assembly. Listens to the runtime's
/// allocation sampling event (one event per ~100 KB allocated, naming the type that crossed the mark) and writes the
/// sampled bytes per type to SLUICE_ALLOC_OUT every SLUICE_ALLOC_INTERVAL seconds (default 5), so a run's allocation
/// profile can be read without a profiler. Reset with SIGUSR-free means: the file always holds the totals since
/// SLUICE_ALLOC_START seconds after start (default 0), so a warm-up can be left out.
/// </summary>
internal static class StartupHook
{
    private static AllocListener? s_listener;

    public static void Initialize()
    {
        // Only the process named by SLUICE_ALLOC_COMMAND (default "serve"): scripts start a mock upstream with the same environment.
        var command = Environment.GetEnvironmentVariable("SLUICE_ALLOC_COMMAND") ?? "serve";
        if (Environment.GetCommandLineArgs().Contains(command))
        {
            s_listener = new AllocListener();
        }
    }
}

internal sealed class AllocListener : EventListener
{
    private const long GcKeyword = 0x1;
    private readonly ConcurrentDictionary<string, long> _bytes = new();
    private readonly string? _out = Environment.GetEnvironmentVariable("SLUICE_ALLOC_OUT");
    private readonly DateTime _start = DateTime.UtcNow.AddSeconds(double.Parse(Environment.GetEnvironmentVariable("SLUICE_ALLOC_START") ?? "0", CultureInfo.InvariantCulture));
    private readonly Timer _timer;
    private long _total;

    public AllocListener()
    {
        var interval = TimeSpan.FromSeconds(double.Parse(Environment.GetEnvironmentVariable("SLUICE_ALLOC_INTERVAL") ?? "5", CultureInfo.InvariantCulture));
        _timer = new Timer(_ => Write(), null, interval, interval);
    }

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        // GCAllocationTick: AllocationAmount (≈100 KB since the last event) charged to the type that crossed the mark.
        if (e.EventId != 10 || e.Payload is null || DateTime.UtcNow < _start)
        {
            return;
        }

        var nameIndex = e.PayloadNames!.IndexOf("TypeName");
        var amountIndex = e.PayloadNames.IndexOf("AllocationAmount64");
        if (nameIndex < 0 || amountIndex < 0)
        {
            return;
        }

        var amount = Convert.ToInt64(e.Payload[amountIndex], CultureInfo.InvariantCulture);
        _bytes.AddOrUpdate((string?)e.Payload[nameIndex] ?? "?", amount, (_, v) => v + amount);
        Interlocked.Add(ref _total, amount);
    }

    private void Write()
    {
        if (_out is null)
        {
            return;
        }

        var total = Math.Max(1, Interlocked.Read(ref _total));
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"sampled bytes {total:N0}\n");
        foreach (var (type, bytes) in _bytes.OrderByDescending(p => p.Value).Take(60))
        {
            text.Append(CultureInfo.InvariantCulture, $"{100.0 * bytes / total,6:F2} %  {bytes,14:N0}  {type}\n");
        }

        File.WriteAllText(_out, text.ToString());
    }
}
