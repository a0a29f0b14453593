using System.Globalization;
using System.Text;
using Microsoft.Diagnostics.Tracing;
using Microsoft.Diagnostics.Tracing.Etlx;

// Usage: Sluice.AllocStacks <trace.nettrace> [type substring] [object size] [frames]
// Each AllocationSampled event (randomized sampling, one per ~100 KB on average) is weighted by the bytes it stands for
// and charged to its allocating stack; prints the heaviest stacks for the chosen type (all types when omitted).
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Sluice.AllocStacks <trace.nettrace> [type substring] [object size] [frames]");
    return 2;
}

var typeFilter = args.Length > 1 ? args[1] : "";
var sizeFilter = args.Length > 2 && long.TryParse(args[2], out var s) ? s : 0;
var depth = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 14;
var etlx = TraceLog.CreateFromEventPipeDataFile(args[0]);
using var log = new TraceLog(etlx);
var stacks = new Dictionary<string, double>();
var names = new Dictionary<string, int>();
double total = 0, matched = 0;
foreach (var e in log.Events)
{
    var eventName = e.ProviderName + "/" + e.EventName + "/" + (int)e.ID;
    names[eventName] = names.GetValueOrDefault(eventName) + 1;
    if ((int)e.ID != 303 || e.ProviderName != "Microsoft-Windows-DotNETRuntime")
    {
        continue;
    }

    var type = e.PayloadByName("TypeName") as string ?? "?";
    var size = Convert.ToDouble(e.PayloadByName("ObjectSize"), CultureInfo.InvariantCulture);
    var weight = size / (1 - Math.Exp(-size / 102_400));
    total += weight;
    if (!type.Contains(typeFilter, StringComparison.Ordinal) || (sizeFilter > 0 && (long)size != sizeFilter))
    {
        continue;
    }

    matched += weight;
    var text = new StringBuilder();
    text.Append(type).Append(" of ").Append(size.ToString("N0", CultureInfo.InvariantCulture)).Append(" B\n");
    var frames = 0;
    for (var frame = e.CallStack(); frame is not null && frames < depth; frame = frame.Caller)
    {
        var name = frame.CodeAddress.FullMethodName;
        if (string.IsNullOrEmpty(name))
        {
            name = frame.CodeAddress.ModuleName + "!?";
        }

        text.Append("    ").Append(name).Append('\n');
        frames++;
    }

    var key = text.ToString();
    stacks[key] = stacks.GetValueOrDefault(key) + weight;
}

Console.WriteLine($"estimated bytes {total:N0}; matching '{typeFilter}'{(sizeFilter > 0 ? $" of {sizeFilter} B" : "")}: {matched:N0} ({100 * matched / Math.Max(1, total):F1} %)");
foreach (var (stack, bytes) in stacks.OrderByDescending(p => p.Value).Take(int.TryParse(Environment.GetEnvironmentVariable("TOP"), out var top) ? top : 12))
{
    Console.WriteLine($"{100 * bytes / Math.Max(1, total),6:F2} %  {bytes,14:N0}  {stack}");
}

if (total == 0)
{
    Console.WriteLine("no AllocationSampled events; the trace holds:");
    foreach (var (name, count) in names.OrderByDescending(p => p.Value).Take(20))
    {
        Console.WriteLine($"  {count,8}  {name}");
    }
}

return 0;
