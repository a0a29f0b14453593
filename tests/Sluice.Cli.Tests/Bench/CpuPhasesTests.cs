using System.Text.Json;
using Sluice.Testing;

namespace Sluice.Cli.Tests.Bench;

/// <summary>
/// <c>bench/cpu-phases.py</c> gives each perf sample to the innermost stage its stack names (a system call counts to the
/// stage that made it), counts kernel leaves apart and scales shares to the measured CPU per stream.
/// </summary>
public sealed class CpuPhasesTests : IDisposable
{
    private static readonly string Script = Path.Combine(Fixtures.RepositoryRoot, "bench", "cpu-phases.py");
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("sluice-cpu-phases-");

    // `perf script -F comm,ip,sym,dso` shape: a header line per sample, then its frames leaf first.
    private const string Stacks = """
        .NET TP Worker 
        	ffffffff8206652b tcp_sendmsg ([kernel.kallsyms])
        	7f0000000001 instance void [Sluice.Gateway] Sluice.Gateway.Streaming.ResumableStream::Append(valuetype System.ReadOnlySpan`1<uint8>)[OptimizedTier1] (/tmp/perf-1.map)
        	7f0000000002 instance void [Sluice.Gateway] Sluice.Gateway.Relay.StreamRelay+<RunAsync>d__7::MoveNext()[OptimizedTier1] (/tmp/perf-1.map)

        .NET TP Worker 
        	7f0000000003 int32 [System.Private.CoreLib] System.SpanHelpers::IndexOf(uint8&,int32)[OptimizedTier1] (/tmp/perf-1.map)
        	7f0000000004 instance bool [Sluice.Providers] Sluice.Providers.Upstream.UpstreamEventReader::TryDispatchBuffered()[OptimizedTier1] (/tmp/perf-1.map)
        	7f0000000002 instance void [Sluice.Gateway] Sluice.Gateway.Relay.StreamRelay+<RunAsync>d__7::MoveNext()[OptimizedTier1] (/tmp/perf-1.map)

        .NET TP Worker 
        	7f0000000005 instance valuetype System.Span`1<uint8> [Microsoft.AspNetCore.Server.Kestrel.Core] Microsoft.AspNetCore.Server.Kestrel.Core.Internal.Http.Http1OutputProducer::GetSpan(int32)[OptimizedTier1] (/tmp/perf-1.map)
        	7f0000000006 instance void [Sluice.Gateway] Sluice.Gateway.Http.HttpStreamSink::WriteKeptBatch()[OptimizedTier1] (/tmp/perf-1.map)

        .NET Sockets 
        	ffffffff813aecd3 finish_task_switch.isra.0 ([kernel.kallsyms])
        	10aba4 epoll_wait (/usr/lib/x86_64-linux-gnu/libc.so.6)

        """;

    [Fact]
    public async Task Each_sample_goes_to_the_innermost_stage_on_its_stack_scaled_to_the_cpu_per_stream()
    {
        var file = Path.Combine(_root.FullName, "stacks.txt");
        await File.WriteAllTextAsync(file, Stacks);

        var run = await CliProcess.RunAsync([Script, file, "--us-per-stream", "100", "--json"], executable: "python3");
        Assert.True(run.ExitCode == 0, run.ToString());
        using var result = JsonDocument.Parse(run.Stdout);
        Assert.Equal(4, result.RootElement.GetProperty("samples").GetInt32());
        var stages = result.RootElement.GetProperty("stages").EnumerateArray()
            .ToDictionary(s => s.GetProperty("stage").GetString()!, s => (Us: s.GetProperty("us_per_stream").GetDouble(), Kernel: s.GetProperty("kernel_us_per_stream").GetDouble()));
        Assert.Equal(["kestrel", "relay.replay-append", "relay.sse-read", "unattributed"], stages.Keys.Order());
        Assert.Equal((25.0, 25.0), stages["relay.replay-append"]); // the send it made, in the kernel
        Assert.Equal((25.0, 0.0), stages["relay.sse-read"]); // a CoreLib leaf counts to the reader that called it
        Assert.Equal((25.0, 0.0), stages["kestrel"]); // Kestrel's frame is inner to the sink's
        Assert.Equal((25.0, 25.0), stages["unattributed"]);

        var drill = await CliProcess.RunAsync([Script, file, "--drill", "relay.sse-read"], executable: "python3");
        Assert.Contains("System.SpanHelpers::IndexOf", drill.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_or_empty_dump_is_refused_with_what_to_do()
    {
        var missing = await CliProcess.RunAsync([Script, Path.Combine(_root.FullName, "none.txt")], executable: "python3");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("perf script -i perf.data -F comm,ip,sym,dso", missing.Stderr, StringComparison.Ordinal);

        var empty = Path.Combine(_root.FullName, "empty.txt");
        await File.WriteAllTextAsync(empty, "");
        var none = await CliProcess.RunAsync([Script, empty], executable: "python3");
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("no samples", none.Stderr, StringComparison.Ordinal);
    }

    public void Dispose() => _root.Delete(recursive: true);
}
