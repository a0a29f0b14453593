using System.Diagnostics.Tracing;
using System.Globalization;
using System.Text;

/// <summary>
/// Where a gen-0 collection's pause goes, from the runtime's own GC events (keyword GC, informational): suspending the
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
    private readonly List<double> _pauses = [];
    private readonly double[] _markBytes = new double[RootKinds.Length];
    private readonly double[] _markMs = new double[RootKinds.Length];
    private readonly Timer _timer;
    private DateTime _suspendBegin, _suspendEnd, _gcStart, _gcEnd, _restartBegin, _lastMark;
    private int _depth = -1;
    private int _count;
    private double _suspendMs, _gcMs, _restartMs, _promoted;

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
                    break;
                case "GCMarkWithType" when Counted(at):
                    var kind = Math.Min(RootKinds.Length - 1, Convert.ToInt32(e.Payload![e.PayloadNames!.IndexOf("Type")], CultureInfo.InvariantCulture));
                    _markBytes[kind] += Convert.ToDouble(e.Payload[e.PayloadNames.IndexOf("Bytes")], CultureInfo.InvariantCulture);
                    _markMs[kind] += (at - _lastMark).TotalMilliseconds;
                    _lastMark = at;
                    break;
                case "GCHeapStats_V2" when Counted(at):
                    _promoted += Convert.ToDouble(e.Payload![e.PayloadNames!.IndexOf("TotalPromotedSize0")], CultureInfo.InvariantCulture);
                    break;
                case "GCEnd_V1": _gcEnd = at; break;
                case "GCRestartEEBegin_V1": _restartBegin = at; break;
                case "GCRestartEEEnd_V1" when Counted(at) && _suspendBegin <= _gcStart:
                    _count++;
                    _suspendMs += (_suspendEnd - _suspendBegin).TotalMilliseconds;
                    _gcMs += (_gcEnd - _gcStart).TotalMilliseconds;
                    _restartMs += (at - _restartBegin).TotalMilliseconds;
                    _pauses.Add((at - _suspendBegin).TotalMilliseconds);
                    _depth = -1;
                    break;
            }
        }
    }

    /// <summary>A gen-0 collection after the warm-up (background gen-2 work has other pauses and is not the question).</summary>
    private bool Counted(DateTime at) => _depth == 0 && at >= _start;

    private void Write()
    {
        var text = new StringBuilder();
        lock (_gate)
        {
            if (_count == 0)
            {
                return;
            }

            var sorted = _pauses.Order().ToArray();
            text.Append(CultureInfo.InvariantCulture, $"gen-0 collections {_count}: pause p50 {sorted[sorted.Length / 2]:F3} ms, p90 {sorted[sorted.Length * 9 / 10]:F3}, max {sorted[^1]:F3}\n");
            text.Append(CultureInfo.InvariantCulture, $"  mean per collection: suspending threads {_suspendMs / _count:F3} ms, collecting {_gcMs / _count:F3} ms, restarting {_restartMs / _count:F3} ms; survivors promoted {_promoted / _count / 1024:F0} KB\n");
            for (var kind = 0; kind < RootKinds.Length; kind++)
            {
                if (_markBytes[kind] > 0 || _markMs[kind] >= 0.005 * _count)
                {
                    text.Append(CultureInfo.InvariantCulture, $"  marked from {RootKinds[kind]}: {_markBytes[kind] / _count / 1024:F0} KB, {_markMs[kind] / _count:F3} ms\n");
                }
            }
        }

        // Written beside and renamed over, so a reader never sees a half-written file.
        File.WriteAllText(_out + ".tmp", text.ToString());
        File.Move(_out + ".tmp", _out, overwrite: true);
    }
}
