using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>8. Concurrent streams: several answers at once over one client (one connection pool).</summary>
public static class ConcurrentStreams
{
    /// <summary>The questions asked in parallel.</summary>
    public static readonly IReadOnlyList<string> Questions =
    [
        "What makes a river delta?",
        "How do glaciers carve lakes?",
        "Why is the sea salty?",
    ];

    /// <summary>Streams all answers at once; returns them in question order and the order chunks arrived in (by question index).</summary>
    public static async Task<(string[] Answers, IReadOnlyList<int> Arrivals)> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        using var client = context.CreateClient();
        var arrivals = new ConcurrentQueue<int>();
        var answers = await Task.WhenAll(Questions.Select(async (question, index) =>
        {
            var answer = new StringBuilder();
            await foreach (var update in client.GetStreamingResponseAsync(question, context.NewOptions(30), cancellationToken))
            {
                if (update.Text.Length > 0)
                {
                    arrivals.Enqueue(index);
                    answer.Append(update.Text);
                }
            }

            return answer.ToString();
        }));

        for (var i = 0; i < answers.Length; i++)
        {
            await context.Output.WriteLineAsync($"[{i + 1}] {Questions[i]}\n{answers[i]}");
        }

        return (answers, arrivals.ToList());
    }
}
