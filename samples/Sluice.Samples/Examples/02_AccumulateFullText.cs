using System.Text;
using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>2. Accumulating the full text: stream for speed, keep the whole answer for later use.</summary>
public static class AccumulateFullText
{
    /// <summary>Streams an answer, then prints it whole with its length and finish reason; returns it.</summary>
    public static async Task<ChatResponse> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        await using var session = await SampleSession.StartAsync(context, "accumulate", cancellationToken: cancellationToken);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in session.Chat.GetStreamingResponseAsync("Write a short note about lakes", context.NewOptions(50), cancellationToken))
        {
            updates.Add(update); // text, finish reason and usage all arrive as updates
        }

        // The same helper GetResponseAsync uses: text joined, usage and finish reason collected.
        var response = updates.ToChatResponse();
        var text = new StringBuilder(response.Text);
        await context.Output.WriteLineAsync($"Full answer ({text.Length} chars, finish: {response.FinishReason}, {response.Usage?.OutputTokenCount} tokens):");
        await context.Output.WriteLineAsync(text.ToString());
        await session.CompleteAsync(cancellationToken);
        return response;
    }
}
