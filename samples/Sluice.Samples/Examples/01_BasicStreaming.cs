using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>1. Basic streaming: print each piece of the answer the moment it arrives.</summary>
public static class BasicStreaming
{
    /// <summary>Streams one answer to the output; returns it.</summary>
    public static async Task<string> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        // With a team key: create a job → stream within it → complete it → credits remaining (SampleSession).
        await using var session = await SampleSession.StartAsync(context, "basic_streaming", cancellationToken: cancellationToken);
        var answer = new System.Text.StringBuilder();
        await foreach (var update in session.Chat.GetStreamingResponseAsync("Explain how rivers shape valleys", context.NewOptions(60), cancellationToken))
        {
            await context.Output.WriteAsync(update.Text);
            await context.Output.FlushAsync(cancellationToken); // no buffering: the reader sees each token now
            answer.Append(update.Text);
        }

        await context.Output.WriteLineAsync();
        await session.CompleteAsync(cancellationToken);
        return answer.ToString();
    }
}
