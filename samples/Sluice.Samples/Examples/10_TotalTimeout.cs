using System.Text;
using Microsoft.Extensions.AI;
using Sluice.Client;

namespace Sluice.Samples.Examples;

/// <summary>10. A total-timeout stream: give the whole answer a deadline and keep what arrived before it.</summary>
public static class TotalTimeout
{
    /// <summary>Streams a long answer under a 10-second deadline; returns the text received and whether the deadline hit.</summary>
    public static async Task<(string Text, bool TimedOut)> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        using var client = context.CreateClient(o => o.TotalTimeout = TimeSpan.FromSeconds(10));
        var text = new StringBuilder();
        try
        {
            await foreach (var update in client.GetStreamingResponseAsync("Write a very long essay about the history of canals", context.NewOptions(2_000), cancellationToken))
            {
                await context.Output.WriteAsync(update.Text);
                text.Append(update.Text);
            }

            await context.Output.WriteLineAsync();
            return (text.ToString(), false);
        }
        catch (SluiceTimeoutException ex) when (ex.Kind == SluiceTimeoutKind.Total)
        {
            await context.Output.WriteLineAsync();
            await context.Output.WriteLineAsync($"[deadline reached after {text.Length} chars; the answer above is partial]");
            return (text.ToString(), true);
        }
    }
}
