using System.Text;
using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>5. Multi-document analysis: stream one analysis per document, then a synthesis of them all.</summary>
public static class MultiDocumentAnalysis
{
    /// <summary>The documents analysed.</summary>
    public static readonly IReadOnlyList<(string Title, string Text)> Documents =
    [
        ("Quarterly report", "Revenue grew in the north region while costs in logistics rose sharply."),
        ("Customer survey", "Customers praise delivery speed but ask for better packaging and clearer invoices."),
        ("Ops incident log", "Two warehouse outages delayed shipments; both were caused by network switches."),
    ];

    /// <summary>Streams each analysis under its title, then the synthesis; returns the analyses and the synthesis.</summary>
    public static async Task<(IReadOnlyList<string> Analyses, string Synthesis)> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        // One job for the whole analysis: four calls, one credit when it completes (with a team key).
        await using var session = await SampleSession.StartAsync(context, "document_analysis", cancellationToken: cancellationToken);
        var client = session.Chat;
        var analyses = new List<string>();
        foreach (var (title, text) in Documents)
        {
            await context.Output.WriteLineAsync($"## {title}");
            analyses.Add(await StreamAsync(client, $"Analyse this document titled '{title}': {text}", context, cancellationToken));
        }

        await context.Output.WriteLineAsync("## Synthesis");
        var joined = new StringBuilder("Combine these analyses into one summary of risks and opportunities:");
        for (var i = 0; i < analyses.Count; i++)
        {
            joined.Append($"\n{i + 1}. {Documents[i].Title}: {analyses[i]}");
        }

        var synthesis = await StreamAsync(client, joined.ToString(), context, cancellationToken);
        await session.CompleteAsync(cancellationToken);
        return (analyses, synthesis);
    }

    private static async Task<string> StreamAsync(IChatClient client, string prompt, SampleContext context, CancellationToken cancellationToken)
    {
        var answer = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync(prompt, context.NewOptions(30), cancellationToken))
        {
            await context.Output.WriteAsync(update.Text);
            answer.Append(update.Text);
        }

        await context.Output.WriteLineAsync();
        return answer.ToString();
    }
}
