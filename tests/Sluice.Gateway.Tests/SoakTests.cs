using System.Net;
using Xunit.Abstractions;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Tests;

/// <summary>
/// "RAM climbing for days under streaming load": after a warm-up, more rounds of finished, failed and
/// abandoned streams must not grow the managed heap. Bounded: a few thousand short streams.
/// It runs alone (its own non-parallel collection): the heap is process-wide, and other test classes allocating
/// at the same moment made a leak-free run read as 4 MiB of growth.
/// </summary>
[Collection(SoakCollection.Name)]
public sealed class SoakTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Memory_stays_flat_over_rounds_of_finished_failed_and_abandoned_streams()
    {
        // Replay buffers are kept on purpose, within their budget: a small budget makes that retention bounded well
        // below the growth allowed here, and a zero grace lets abandoned streams stop (and be accounted) at once.
        await using var gateway = await TestGateway.StartAsync(o =>
        {
            o.Streaming.ReplayBudgetBytes = 512 * 1024;
            o.Streaming.ResumeGraceSeconds = 0;
        });
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, MaxConnectionsPerServer = 32 })
        {
            BaseAddress = gateway.BaseAddress,
        };

        await RoundAsync(client, 400);
        var afterWarmUp = await SettledHeapAsync();
        for (var round = 0; round < 4; round++)
        {
            await RoundAsync(client, 400);
        }

        var afterSoak = await SettledHeapAsync();
        var growth = afterSoak - afterWarmUp;
        output.WriteLine($"heap after warm-up {afterWarmUp / 1024} KiB, after 1,600 more streams {afterSoak / 1024} KiB");
        Assert.True(growth < 4 * 1024 * 1024, $"heap grew by {growth / 1024} KiB over 1,600 streams ({afterWarmUp / 1024} → {afterSoak / 1024} KiB)");
        // Abandoned streams are accounted once their generation has stopped, a moment after the client left.
        for (var wait = 0; wait < 100 && gateway.Usage.Records.Count < 2000; wait++)
        {
            await Task.Delay(50);
        }

        Assert.Equal(2000, gateway.Usage.Records.Count);
    }

    private static async Task RoundAsync(HttpClient client, int streams)
    {
        using var gate = new SemaphoreSlim(16);
        var tasks = new List<Task>(streams);
        for (var i = 0; i < streams; i++)
        {
            await gate.WaitAsync();
            var kind = i % 4;
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    await OneStreamAsync(client, kind);
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        await Task.WhenAll(tasks);
    }

    private static async Task OneStreamAsync(HttpClient client, int kind)
    {
        var body = kind switch
        {
            0 => """{"model":"sim-fast","prompt":"Soak test prompt about rivers","stream":true,"max_tokens":64,"stream_options":{"include_usage":true}}""",
            1 => """{"model":"sim-fast","prompt":"Soak failure","stream":true,"max_tokens":64,"metadata":{"sim_fail_after_tokens":"10"}}""",
            2 => """{"model":"sim-paced","prompt":"Soak abandon","stream":true,"max_tokens":400}""",
            _ => """{"model":"sim-fast","prompt":"Soak non-streamed","max_tokens":32}""",
        };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var response = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = TestGateway.Json(body) },
            HttpCompletionOption.ResponseHeadersRead,
            cts.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var stream = await response.Content.ReadAsStreamAsync(cts.Token);
        if (kind == 3)
        {
            await stream.CopyToAsync(Stream.Null, cts.Token);
            return;
        }

        var seen = 0;
        await foreach (var e in SseReader.ReadAsync(stream, cancellationToken: cts.Token))
        {
            if (kind == 2 && ++seen == 2)
            {
                return; // abandon: disposing the response closes the connection
            }
        }
    }

    /// <summary>The lowest of a few settled readings: background work finishing (timers, sockets closing) only ever adds.</summary>
    private static async Task<long> SettledHeapAsync()
    {
        var lowest = long.MaxValue;
        for (var sample = 0; sample < 3; sample++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            var info = GC.GetGCMemoryInfo(GCKind.FullBlocking);
            lowest = Math.Min(lowest, info.HeapSizeBytes - info.FragmentedBytes);
            await Task.Delay(50);
        }

        return lowest;
    }
}

/// <summary>Runs the soak test with no other test class in flight, so heap readings are its own.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SoakCollection
{
    /// <summary>The collection name.</summary>
    public const string Name = "soak (runs alone)";
}
