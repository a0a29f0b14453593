using BenchmarkDotNet.Reports;
using Sluice.Engine.Gguf;

namespace Sluice.EngineKernels;

/// <summary>
/// Every benchmark once on small inputs, outside BenchmarkDotNet: proves the set-ups, the benchmarked calls and the
/// clean-ups run, and that the products measured equal the scalar definition bit for bit. The test suite runs this
/// (Sluice.Engine.Tests); the measurements themselves never run under <c>dotnet test</c>.
/// </summary>
public static class KernelSmoke
{
    /// <summary>Runs everything once; returns the number of failures (0 = fine).</summary>
    public static int Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var failures = 0;
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.F16 })
        {
            foreach (var tokens in new[] { 1, 9 })
            {
                foreach (var threads in new[] { 1, 2 })
                {
                    var b = new MatMulBenchmarks { Type = type, Shape = KernelShape.Smoke, Tokens = tokens, Threads = threads };
                    b.Setup();
                    try
                    {
                        b.MatMul();
                        b.MatMul();
                        var mismatches = Enumerable.Range(0, tokens).Sum(b.CountMismatches);
                        output.WriteLine($"MatMul {type} {tokens} token(s) {threads} thread(s): {mismatches} output(s) differ from the definition");
                        failures += mismatches == 0 ? 0 : 1;
                    }
                    finally
                    {
                        b.Cleanup();
                    }
                }
            }
        }

        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.F16 })
        {
            var r = new VecDotReferenceBenchmarks { Type = type, Columns = 512 };
            r.Setup();
            var value = r.Reference();
            r.Cleanup();
            output.WriteLine($"VecDot.Reference {type}: {value}");
            failures += float.IsFinite(value) ? 0 : 1;

            foreach (var tokens in new[] { 1, 9 })
            {
                var a = new ActivationBenchmarks { WeightType = type, Tokens = tokens, Columns = 512 };
                a.Setup();
                var rows = a.Load();
                output.WriteLine($"Activations {type} {tokens} token(s): {rows} row(s)");
                failures += rows == tokens ? 0 : 1;
            }
        }

        foreach (var threads in new[] { 1, 2 })
        {
            var m = new MemoryBenchmarks { Bytes = 1 << 20, Threads = threads };
            m.Setup();
            try
            {
                var sum = m.StreamRead();
                var copied = m.Copy();
                output.WriteLine($"Memory {threads} thread(s): read sum {sum}, copied {copied} bytes");

                // The source is filled with 1s: every byte adds 0x0101… patterns; a wrong split would lose some.
                failures += copied == 1 << 20 && sum == unchecked((1 << 20) / 8 * 0x0101010101010101L) ? 0 : 1;
            }
            finally
            {
                m.Cleanup();
            }
        }

        using (var interleaved = new StringWriter())
        {
            Interleaved.Run(interleaved, 1, [GgmlType.Q8_0, GgmlType.F16], [KernelShape.Smoke], memoryBytes: 1 << 20);
            var table = interleaved.ToString();
            output.WriteLine($"Interleaved: {table.Split('\n').Count(l => l.StartsWith("| Q8_0", StringComparison.Ordinal) || l.StartsWith("| F16", StringComparison.Ordinal))} table row(s)");
            failures += table.Contains("| F16 | Smoke 512→64 | 128 | 2 |", StringComparison.Ordinal) ? 0 : 1;
        }

        output.WriteLine(failures == 0 ? "smoke: all benchmarks ran" : $"smoke: {failures} failure(s)");
        return failures;
    }
}

/// <summary>After a run: decode products as a share of the measured read bandwidth at the same thread count.</summary>
public static class Digest
{
    public static void Print(IReadOnlyList<Summary> summaries, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(summaries);
        ArgumentNullException.ThrowIfNull(output);
        var cases = summaries.SelectMany(s => s.BenchmarksCases.Select(c => (Summary: s, Case: c))).ToList();
        var read = cases
            .Where(x => x.Case.Descriptor.Type == typeof(MemoryBenchmarks) && x.Case.Descriptor.WorkloadMethod.Name == nameof(MemoryBenchmarks.StreamRead))
            .ToDictionary(x => (int)x.Case.Parameters["Threads"], x => Work.Bytes(x.Case) / Work.Seconds(x.Summary, x.Case) / 1e9);
        var products = cases.Where(x => x.Case.Descriptor.Type == typeof(MatMulBenchmarks)).ToList();
        if (products.Count == 0)
        {
            return;
        }

        output.WriteLine();
        output.WriteLine("| type | shape | tokens | threads | median ms | weight GB/s | % of stream read | GOP/s |");
        output.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach (var (summary, c) in products)
        {
            var seconds = Work.Seconds(summary, c);
            var gbs = Work.Bytes(c) / seconds / 1e9;
            var threads = (int)c.Parameters["Threads"];
            var share = read.TryGetValue(threads, out var r) && double.IsFinite(r) ? $"{100 * gbs / r:F0} %" : "—";
            output.WriteLine($"| {c.Parameters["Type"]} | {c.Parameters["Shape"]} | {c.Parameters["Tokens"]} | {threads} | {seconds * 1e3:F2} | {gbs:F1} | {share} | {Work.Operations(c) / seconds / 1e9:F1} |");
        }

        foreach (var (threads, gbs) in read.OrderBy(x => x.Key))
        {
            output.WriteLine($"stream read, {threads} thread(s): {gbs:F1} GB/s");
        }
    }
}
