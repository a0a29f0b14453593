using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>1. Basic streaming: print each piece of the answer the moment it arrives.</summary>
public static class BasicStreaming
{
    /// <summary>Streams one answer to the output; returns it.</summary>
    public static async Task<string> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        using var client = context.CreateClient();
        var answer = new System.Text.StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync("Explain how rivers shape valleys", context.NewOptions(60), cancellationToken))
        {
            await context.Output.WriteAsync(update.Text);
            await context.Output.FlushAsync(cancellationToken); // no buffering: the reader sees each token now
            answer.Append(update.Text);
        }

        await context.Output.WriteLineAsync();
        return answer.ToString();
    }
}
