using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Sluice.Engine.Gguf;

namespace Sluice.EngineKernels;

/// <summary>What one call of a benchmark reads and computes, from its parameters.</summary>
public static class Work
{
    /// <summary>Bytes one call reads: the weights for products, the buffer for memory passes, the f32 input for conversions.</summary>
    public static long Bytes(BenchmarkCase c)
    {
        var type = c.Descriptor.Type;
        if (type == typeof(MatMulBenchmarks))
        {
            return KernelShapes.WeightBytes((GgmlType)c.Parameters["Type"], (KernelShape)c.Parameters["Shape"]);
        }

        if (type == typeof(MemoryBenchmarks))
        {
            return (long)c.Parameters["Bytes"];
        }

        if (type == typeof(VecDotReferenceBenchmarks))
        {
            return GgmlTypes.RowBytes((GgmlType)c.Parameters["Type"], new VecDotReferenceBenchmarks().Columns);
        }

        if (type == typeof(ActivationBenchmarks))
        {
            return (long)(int)c.Parameters["Tokens"] * new ActivationBenchmarks().Columns * sizeof(float);
        }

        return 0;
    }

    /// <summary>Multiply-adds ×2 one call does (products only).</summary>
    public static double Operations(BenchmarkCase c)
    {
        if (c.Descriptor.Type != typeof(MatMulBenchmarks))
        {
            return 0;
        }

        var (columns, rows) = KernelShapes.Size((KernelShape)c.Parameters["Shape"]);
        return 2.0 * columns * rows * (int)c.Parameters["Tokens"];
    }

    /// <summary>Median seconds per call, or NaN when the case did not run.</summary>
    public static double Seconds(Summary summary, BenchmarkCase c) =>
        summary[c]?.ResultStatistics is { } s ? s.Median / 1e9 : double.NaN;
}

/// <summary>A number derived from a case's median time.</summary>
public sealed class RateColumn(string name, string legend, Func<Summary, BenchmarkCase, double> value) : IColumn
{
    /// <summary>GB/s of bytes read (weights for products): weight bytes ÷ median time.</summary>
    public static readonly RateColumn GigabytesPerSecond = new(
        "GB/s", "Bytes read per call (weights for products) ÷ median time, 10^9 bytes/s",
        (s, c) => Work.Bytes(c) / Work.Seconds(s, c) / 1e9);

    /// <summary>GOP/s of products: 2 × rows × columns × tokens ÷ median time.</summary>
    public static readonly RateColumn GigaOperationsPerSecond = new(
        "GOP/s", "2 × rows × columns × tokens ÷ median time (products only), 10^9/s",
        (s, c) => Work.Operations(c) / Work.Seconds(s, c) / 1e9);

    public string Id => "Sluice." + name;

    public string ColumnName => name;

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => legend;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var v = value(summary, benchmarkCase);
        return double.IsFinite(v) && v > 0 ? v.ToString("F2", CultureInfo.InvariantCulture) : "-";
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}
