using BenchmarkDotNet.Running;

// Hot-path micro-benchmarks. Run: dotnet run -c Release --project bench/Sluice.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
