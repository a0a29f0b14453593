using Sluice.EngineKernels;

namespace Sluice.Engine.Tests.Kernels;

/// <summary>
/// The kernel micro-benchmarks (bench/Sluice.EngineKernels) stay runnable: each set-up, benchmarked call and clean-up
/// once on small inputs, with the measured products equal to the scalar definition. No timing here.
/// </summary>
public sealed class KernelBenchmarkSmokeTests
{
    [Fact]
    public void Every_kernel_benchmark_runs_once_and_computes_the_definition()
    {
        using var output = new StringWriter();
        var failures = KernelSmoke.Run(output);
        Assert.True(failures == 0, output.ToString());
        Assert.Contains("smoke: all benchmarks ran", output.ToString(), StringComparison.Ordinal);
    }
}
