using System.Globalization;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Perfolizer.Horology;
using Sluice.Engine.Gguf;
using Sluice.EngineKernels;

// Micro-benchmarks of the engine's kernels (products of quantized and float weights, activation conversion) with the
// machine's memory bandwidth as the reference, in one run.
//   dotnet run -c Release --project bench/Sluice.EngineKernels -- --filter '*'
//   dotnet run -c Release --project bench/Sluice.EngineKernels -- --smoke      (each benchmark once, checked; no BDN)
//   dotnet run -c Release --project bench/Sluice.EngineKernels -- --interleaved [--rounds 5] [--types Q8_0,F16] [--shapes TinyLlamaUp] [--tokens 1,2,4]
//       (no BDN: products and the memory read round-robin, shares of the read bandwidth taken within a round — for
//       shared machines whose load moves more between cases than the cases differ)
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.Contains("--smoke"))
{
    return KernelSmoke.Run(Console.Out);
}

if (args.Contains("--interleaved"))
{
    string? Value(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    var rounds = int.Parse(Value("--rounds") ?? "5", CultureInfo.InvariantCulture);
    GgmlType[] types = Value("--types") is { } t ? [.. t.Split(',').Select(Enum.Parse<GgmlType>)] : [GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.F16];
    KernelShape[] shapes = Value("--shapes") is { } s ? [.. s.Split(',').Select(Enum.Parse<KernelShape>)] : [KernelShape.Qwen05Down, KernelShape.TinyLlamaUp];
    int[]? tokenCounts = Value("--tokens") is { } n ? [.. n.Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture))] : null;
    Interleaved.Run(Console.Out, rounds, types, shapes, tokenCounts);
    return 0;
}

// In process: 50-odd cases each spawning a process would spend more time starting than measuring. Short iterations:
// a case's median of 7 is enough to compare against the bandwidth rows measured minutes apart on a shared machine.
var job = Job.Default
    .WithToolchain(InProcessEmitToolchain.Instance)
    .WithLaunchCount(1)
    .WithWarmupCount(2)
    .WithIterationCount(7)
    .WithIterationTime(TimeInterval.FromMilliseconds(250));
var config = DefaultConfig.Instance
    .AddJob(job.AsDefault())
    .AddColumn(RateColumn.GigabytesPerSecond, RateColumn.GigaOperationsPerSecond)
    .WithOptions(ConfigOptions.DisableOptimizationsValidator);
var summaries = BenchmarkSwitcher.FromAssembly(typeof(KernelSmoke).Assembly).Run(args, config).ToList();
Digest.Print(summaries, Console.Out);
return 0;
