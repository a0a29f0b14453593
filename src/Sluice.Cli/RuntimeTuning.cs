namespace Sluice.Cli;

/// <summary>
/// Runtime settings Sluice chooses for itself before anything else runs (each one left alone when the environment sets it).
/// </summary>
internal static class RuntimeTuning
{
    /// <summary>The runtime's variable for how many arrays of each size the shared array pool keeps per core.</summary>
    public const string MaxArraysPerPartition = "DOTNET_SYSTEM_BUFFERS_SHAREDARRAYPOOL_MAXARRAYSPERPARTITION";

    /// <summary>Arrays of each size the process keeps pooled across all cores.</summary>
    private const int PooledArraysPerSize = 2048;

    /// <summary>The runtime's own default per core.</summary>
    private const int RuntimeDefault = 32;

    /// <summary>Applies the settings to this process. Call first thing in <c>Main</c>: the pool reads it once, when first used.</summary>
    /// <remarks>
    /// Why: with thousands of streams in flight, buffers are rented and returned faster than 32 per core and size stay
    /// pooled — HttpClient's HTTP/2 stream buffers (16 KB blocks) above all. At 8,000 paced streams over HTTP/2 the
    /// returns the pool dropped were 95 % of all allocated bytes and a collection ran 7 times a second; with 1,024 per
    /// core (two cores) 28 collections in 43 s instead of 253–336, CPU per relayed chunk 70–73 → 60 µs (BENCHMARKS.md,
    /// sixteenth session). The pool only keeps arrays that were rented and given back, and trims the ones left unused.
    /// </remarks>
    public static void Apply() => Apply(Environment.GetEnvironmentVariable, Environment.SetEnvironmentVariable, Environment.ProcessorCount);

    /// <summary>The decision, with the environment and core count passed in (for tests).</summary>
    internal static void Apply(Func<string, string?> read, Action<string, string> write, int processorCount)
    {
        if (string.IsNullOrEmpty(read(MaxArraysPerPartition)))
        {
            write(MaxArraysPerPartition, PerCore(processorCount).ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Arrays per size and core: about <see cref="PooledArraysPerSize"/> in all, never fewer than the runtime's default.</summary>
    internal static int PerCore(int processorCount) => Math.Max(RuntimeDefault, PooledArraysPerSize / Math.Max(1, processorCount));
}
