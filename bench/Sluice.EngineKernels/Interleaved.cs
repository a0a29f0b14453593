using System.Diagnostics;
using Sluice.Engine.Gguf;

namespace Sluice.EngineKernels;

/// <summary>
/// The products measured round-robin with the memory read they are compared to, outside BenchmarkDotNet: on a shared
/// machine whose load swings by 10× within minutes, BenchmarkDotNet's case-after-case order turns load changes into
/// differences between cases. Here every round times the stream read (1 and 2 threads) and the four products of one
/// weight matrix (decode and prompt, 1 and 2 threads) back to back, and the share of the read bandwidth is computed
/// within a round, then the median over rounds is reported.
/// </summary>
public static class Interleaved
{
    /// <summary>Runs <paramref name="rounds"/> rounds per (type, shape); writes a markdown table.</summary>
    /// <param name="memoryBytes">Bytes of the stream read: far past the last-level cache (256 MiB) except in the smoke run.</param>
    public static void Run(TextWriter output, int rounds, IReadOnlyList<GgmlType> types, IReadOnlyList<KernelShape> shapes, IReadOnlyList<int>? tokenCounts = null, long memoryBytes = 256L << 20)
    {
        ArgumentNullException.ThrowIfNull(output);
        output.WriteLine($"load average at start: {LoadAverage()}");
        var memory = new[] { 1, 2 }.Select(t => new MemoryBenchmarks { Bytes = memoryBytes, Threads = t }).ToArray();
        foreach (var m in memory)
        {
            m.Setup();
        }

        var rows = new List<string>();
        var reads = new List<double>[] { [], [] };
        try
        {
            foreach (var shape in shapes)
            {
                foreach (var type in types)
                {
                    var cases = (from tokens in tokenCounts ?? [1, 128]
                                 from threads in new[] { 1, 2 }
                                 select new MatMulBenchmarks { Type = type, Shape = shape, Tokens = tokens, Threads = threads }).ToArray();
                    var seconds = cases.Select(_ => new List<double>()).ToArray();
                    var shares = cases.Select(_ => new List<double>()).ToArray();
                    foreach (var c in cases)
                    {
                        c.Setup();
                    }

                    try
                    {
                        for (var round = 0; round < rounds; round++)
                        {
                            var read = memory.Select(m => m.Bytes / Time(() => m.StreamRead()) / 1e9).ToArray();
                            for (var i = 0; i < cases.Length; i++)
                            {
                                var s = Time(() => cases[i].MatMul());
                                seconds[i].Add(s);
                                shares[i].Add(KernelShapes.WeightBytes(type, shape) / s / 1e9 / read[cases[i].Threads - 1]);
                            }

                            reads[0].Add(read[0]);
                            reads[1].Add(read[1]);
                        }
                    }
                    finally
                    {
                        foreach (var c in cases)
                        {
                            c.Cleanup();
                        }
                    }

                    for (var i = 0; i < cases.Length; i++)
                    {
                        var c = cases[i];
                        var (columns, matrixRows) = KernelShapes.Size(shape);
                        var s = Median(seconds[i]);
                        var line = $"| {type} | {shape} {columns}→{matrixRows} | {c.Tokens} | {c.Threads} | {s * 1e3:F2} | {KernelShapes.WeightBytes(type, shape) / s / 1e9:F2} | " +
                            $"{100 * Median(shares[i]):F0} % | {2.0 * columns * matrixRows * c.Tokens / s / 1e9:F1} |";
                        rows.Add(line);
                        output.WriteLine(line);
                    }
                }
            }
        }
        finally
        {
            foreach (var m in memory)
            {
                m.Cleanup();
            }
        }

        output.WriteLine();
        output.WriteLine($"{rounds} interleaved rounds per weight type and shape; median over rounds. Load average at end: {LoadAverage()}.");
        output.WriteLine();
        output.WriteLine("| type | shape (in→out) | tokens | threads | median ms | weight GB/s | % of stream read (same round) | GOP/s |");
        output.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var line in rows)
        {
            output.WriteLine(line);
        }

        output.WriteLine();
        output.WriteLine($"stream read ({memoryBytes >> 20} MiB, sum of 512-bit loads), median of all rounds: 1 thread {Median(reads[0]):F2} GB/s ({reads[0].Min():F2}–{reads[0].Max():F2}), " +
            $"2 threads {Median(reads[1]):F2} GB/s ({reads[1].Min():F2}–{reads[1].Max():F2})");
    }

    /// <summary>Median seconds per call of <paramref name="call"/>, called at least 3 times and for at least 100 ms.</summary>
    private static double Time(Action call)
    {
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < 3 || total.ElapsedMilliseconds < 100)
        {
            var start = Stopwatch.GetTimestamp();
            call();
            times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }

        return Median(times);
    }

    private static double Median(List<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "n/a";
        }
    }
}
