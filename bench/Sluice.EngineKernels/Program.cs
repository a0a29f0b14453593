using System.Globalization;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Perfolizer.Horology;
using Sluice.EngineKernels;

// Micro-benchmarks of the engine's kernels (products of quantized and float weights, activation conversion) with the
// machine's memory bandwidth as the reference, in one run.
//   dotnet run -c Release --project bench/Sluice.EngineKernels -- --filter '*'
//   dotnet run -c Release --project bench/Sluice.EngineKernels -- --smoke      (each benchmark once, checked; no BDN)
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.Contains("--smoke"))
{
    return KernelSmoke.Run(Console.Out);
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
