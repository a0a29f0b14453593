using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>What <see cref="ProgressStatistics"/> measured.</summary>
/// <param name="Chunks">Updates that carried text.</param>
/// <param name="Characters">Characters received.</param>
/// <param name="TimeToFirstChunk">From sending to the first text.</param>
/// <param name="Elapsed">From sending to the end.</param>
public sealed record StreamStatistics(int Chunks, int Characters, TimeSpan TimeToFirstChunk, TimeSpan Elapsed)
{
    /// <summary>Characters per second over the whole stream.</summary>
    public double CharactersPerSecond => Elapsed > TimeSpan.Zero ? Characters / Elapsed.TotalSeconds : 0;
}

/// <summary>6. Progress statistics: chunks, characters and characters per second while the answer streams.</summary>
public static class ProgressStatistics
{
    /// <summary>Streams an answer, reporting progress every 10 chunks and totals at the end; returns the totals.</summary>
    public static async Task<StreamStatistics> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        await using var session = await SampleSession.StartAsync(context, "progress", cancellationToken: cancellationToken);
        var clock = Stopwatch.StartNew();
        TimeSpan? first = null;
        int chunks = 0, characters = 0;
        await foreach (var update in session.Chat.GetStreamingResponseAsync("Describe the water cycle in detail", context.NewOptions(80), cancellationToken))
        {
            if (update.Text.Length == 0)
            {
                continue; // the finish reason and usage arrive as updates without text
            }

            first ??= clock.Elapsed;
            chunks++;
            characters += update.Text.Length;
            if (chunks % 10 == 0)
            {
                await context.Output.WriteLineAsync(Line("progress", chunks, characters, clock.Elapsed));
            }
        }

        var stats = new StreamStatistics(chunks, characters, first ?? clock.Elapsed, clock.Elapsed);
        await context.Output.WriteLineAsync(Line("done", chunks, characters, clock.Elapsed) +
            string.Create(CultureInfo.InvariantCulture, $", first chunk after {stats.TimeToFirstChunk.TotalMilliseconds:F0} ms"));
        await session.CompleteAsync(cancellationToken);
        return stats;
    }

    private static string Line(string label, int chunks, int characters, TimeSpan elapsed) => string.Create(
        CultureInfo.InvariantCulture,
        $"[{label}] {chunks} chunks, {characters} chars, {(elapsed > TimeSpan.Zero ? characters / elapsed.TotalSeconds : 0):F0} chars/s");
}
