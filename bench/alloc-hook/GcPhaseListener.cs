using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text;

/// <summary>
/// Where a blocking collection's pause goes (gen 0, gen 1 and blocking gen 2 each on their own), from the runtime's own GC events (keyword GC, informational): suspending the
/// threads, the collection itself, restarting them; and the collection's marking by root kind (<c>GCMarkWithType</c>:
/// stacks, finalization queue, handles, older generations through the card table, …) with the bytes each kind kept
/// alive and the time until its event. Written to SLUICE_GC_OUT every 2 s, counting collections from SLUICE_ALLOC_START
/// seconds after start. The question it answers: is a collection's pause the threads, the survivors, or the references
/// from older objects into new ones?
/// </summary>
internal sealed class GcPhaseListener : EventListener
{
    // GCMarkWithType's Type values (gcinterface.h, gc_root_kind).
    private static readonly string[] RootKinds = ["stacks", "finalization queue", "handles", "older generations (cards)", "sized refs", "overflow", "dependent handles", "new finalizable", "?"];

    private readonly Lock _gate = new();
    private readonly string _out;
    private readonly DateTime _start = DateTime.UtcNow.AddSeconds(double.Parse(Environment.GetEnvironmentVariable("SLUICE_ALLOC_START") ?? "0", CultureInfo.InvariantCulture));
    // Per generation collected (0, 1, 2 blocking): gen-1 collections also pause every thread, and with many streams
    // open they can be what a tail is made of.
    private readonly List<double>[] _pauses = [[], [], []];
    private readonly double[][] _markBytes = [new double[RootKinds.Length], new double[RootKinds.Length], new double[RootKinds.Length]];
    private readonly double[][] _markMs = [new double[RootKinds.Length], new double[RootKinds.Length], new double[RootKinds.Length]];
    private readonly int[] _count = new int[3];
    // When each counted pause began (Unix ms, UTC) and how long it was: to line pauses up with a packet capture.
    private readonly List<(double AtUnixMs, double Ms, int Gen)> _when = [];
    private readonly double[] _suspendMs = new double[3], _gcMs = new double[3], _restartMs = new double[3], _promoted = new double[3];
    private readonly Timer _timer;
    private DateTime _suspendBegin, _suspendEnd, _gcStart, _gcEnd, _restartBegin, _lastMark;
    private int _depth = -1;
    private bool _background;
    private DateTime _firstCounted, _lastCounted;

    public GcPhaseListener(string output)
    {
        _out = output;
        _timer = new Timer(_ => Write(), null, 2000, 2000);
    }

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Informational, (EventKeywords)0x1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        var at = e.TimeStamp;
        lock (_gate)
        {
            switch (e.EventName)
            {
                case "GCSuspendEEBegin_V1": _suspendBegin = at; break;
                case "GCSuspendEEEnd_V1": _suspendEnd = at; break;
                case "GCStart_V2":
                    _gcStart = _lastMark = at;
                    _depth = Convert.ToInt32(e.Payload![e.PayloadNames!.IndexOf("Depth")], CultureInfo.InvariantCulture);
                    // Type 1 is a background collection: its marking runs beside the program, not in a pause.
                    _background = Convert.ToInt32(e.Payload[e.PayloadNames.IndexOf("Type")], CultureInfo.InvariantCulture) == 1;
                    break;
                case "GCMarkWithType" when Counted(at):
                    var kind = Math.Min(RootKinds.Length - 1, Convert.ToInt32(e.Payload![e.PayloadNames!.IndexOf("Type")], CultureInfo.InvariantCulture));
                    _markBytes[_depth][kind] += Convert.ToDouble(e.Payload[e.PayloadNames.IndexOf("Bytes")], CultureInfo.InvariantCulture);
                    _markMs[_depth][kind] += (at - _lastMark).TotalMilliseconds;
                    _lastMark = at;
                    break;
                case "GCHeapStats_V2" when Counted(at):
                    _promoted[_depth] += Convert.ToDouble(e.Payload![e.PayloadNames!.IndexOf("TotalPromotedSize" + _depth)], CultureInfo.InvariantCulture);
                    break;
                case "GCEnd_V1": _gcEnd = at; break;
                case "GCRestartEEBegin_V1": _restartBegin = at; break;
                case "GCRestartEEEnd_V1" when Counted(at) && _suspendBegin <= _gcStart:
                    _count[_depth]++;
                    _suspendMs[_depth] += (_suspendEnd - _suspendBegin).TotalMilliseconds;
                    _gcMs[_depth] += (_gcEnd - _gcStart).TotalMilliseconds;
                    _restartMs[_depth] += (at - _restartBegin).TotalMilliseconds;
                    _pauses[_depth].Add((at - _suspendBegin).TotalMilliseconds);
                    _when.Add(((_suspendBegin.ToUniversalTime() - DateTime.UnixEpoch).TotalMilliseconds, (at - _suspendBegin).TotalMilliseconds, _depth));
                    _firstCounted = _firstCounted == default ? at : _firstCounted;
                    _lastCounted = at;
                    _depth = -1;
                    break;
            }
        }
    }

    /// <summary>A blocking collection after the warm-up (background gen-2 work has other pauses and is not the question).</summary>
    private bool Counted(DateTime at) => _depth is >= 0 and <= 2 && !_background && at >= _start;

    private void Write()
    {
        var text = new StringBuilder();
        lock (_gate)
        {
            if (_count.Sum() == 0)
            {
                return;
            }

            var span = (_lastCounted - _firstCounted).TotalSeconds;
            text.Append(CultureInfo.InvariantCulture, $"blocking collections over {span:F0} s (first to last counted): gen 0 {_count[0]}, gen 1 {_count[1]}, gen 2 {_count[2]}\n");
            for (var depth = 0; depth < 3; depth++)
            {
                var count = _count[depth];
                if (count == 0)
                {
                    continue;
                }

                var sorted = _pauses[depth].Order().ToArray();
                text.Append(CultureInfo.InvariantCulture, $"gen-{depth} collections {count}: pause p50 {sorted[sorted.Length / 2]:F3} ms, p90 {sorted[sorted.Length * 9 / 10]:F3}, max {sorted[^1]:F3}\n");
                text.Append(CultureInfo.InvariantCulture, $"  mean per collection: suspending threads {_suspendMs[depth] / count:F3} ms, collecting {_gcMs[depth] / count:F3} ms, restarting {_restartMs[depth] / count:F3} ms; survivors promoted {_promoted[depth] / count / 1024:F0} KB\n");
                for (var kind = 0; kind < RootKinds.Length; kind++)
                {
                    if (_markBytes[depth][kind] > 0 || _markMs[depth][kind] >= 0.005 * count)
                    {
                        text.Append(CultureInfo.InvariantCulture, $"  marked from {RootKinds[kind]}: {_markBytes[depth][kind] / count / 1024:F0} KB, {_markMs[depth][kind] / count:F3} ms\n");
                    }
                }
            }

            foreach (var (atUnixMs, ms, gen) in _when)
            {
                text.Append(CultureInfo.InvariantCulture, $"pause at {atUnixMs:F3} (Unix ms) for {ms:F3} ms, gen {gen}\n");
            }
        }

        // Written beside and renamed over, so a reader never sees a half-written file.
        File.WriteAllText(_out + ".tmp", text.ToString());
        File.Move(_out + ".tmp", _out, overwrite: true);
    }
}
