using System.Text;
using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>9. Streaming to a file: each chunk is written and flushed as it arrives, so a reader (or a crash) sees everything received.</summary>
public static class StreamToFile
{
    /// <summary>Streams an answer into <paramref name="path"/>; returns the number of chunks written.</summary>
    public static async Task<int> RunAsync(SampleContext context, string path, CancellationToken cancellationToken = default)
    {
        using var client = context.CreateClient();
        var chunks = 0;
        await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 4096, useAsync: true))
        {
            await foreach (var update in client.GetStreamingResponseAsync("Write a report on river pollution", context.NewOptions(60), cancellationToken))
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
        return chunks;
    }
}
