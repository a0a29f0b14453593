using System.Globalization;

namespace Sluice.Gateway.Http;

/// <summary>The process's open-file limit and the number of connections Sluice accepts by default under it.</summary>
internal static class OpenFileLimit
{
    /// <summary>The soft limit on open file descriptors (.NET raises it to the hard limit at start), or null where unknown.</summary>
    public static long? Current { get; } = Read("/proc/self/limits");

    /// <summary>
    /// Connections accepted at once when <c>Limits:MaxConnections</c> is not set: the open-file limit less a tenth
    /// (at least 512) kept for upstream connections, the store and logs — so a flood of connections is turned away by
    /// Kestrel instead of leaving the process without descriptors. Null (no limit) where the limit is unknown.
    /// </summary>
    public static long? DefaultMaxConnections(long? openFiles) =>
        openFiles is not { } limit ? null : Math.Max(64, limit - Math.Max(512, limit / 10));

    /// <summary>Reads "Max open files" from a <c>/proc/PID/limits</c> file; null if absent, unlimited or unreadable.</summary>
    internal static long? Read(string path)
    {
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                if (!line.StartsWith("Max open files", StringComparison.Ordinal))
                {
                    continue;
                }

                var fields = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return fields.Length > 0 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var soft) ? soft : null;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return null;
    }
}
