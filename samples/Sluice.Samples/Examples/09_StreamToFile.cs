using System.Text;
using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>9. Streaming to a file: each chunk is written and flushed as it arrives, so a reader (or a crash) sees everything received.</summary>
public static class StreamToFile
{
    /// <summary>Where the answer goes when no <c>--file</c> is given: a new file in the temp directory, never the working directory.</summary>
    public static string DefaultPath() =>
        Path.Combine(Path.GetTempPath(), $"sluice-answer-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..6]}.txt");

    /// <summary>Streams an answer into <paramref name="path"/>; returns the number of chunks written.</summary>
    public static async Task<int> RunAsync(SampleContext context, string path, CancellationToken cancellationToken = default)
    {
        await using var session = await SampleSession.StartAsync(context, "report_to_file", cancellationToken: cancellationToken);
        var chunks = 0;
        await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 4096, useAsync: true))
        {
            await foreach (var update in session.Chat.GetStreamingResponseAsync("Write a report on river pollution", context.NewOptions(60), cancellationToken))
            {
                if (update.Text.Length == 0)
                {
                    continue;
                }

                await file.WriteAsync(Encoding.UTF8.GetBytes(update.Text), cancellationToken);
                await file.FlushAsync(cancellationToken);
                chunks++;
            }
        }

        await context.Output.WriteLineAsync($"Wrote {chunks} chunks to {path}.");
        await session.CompleteAsync(cancellationToken);
        return chunks;
    }
}
