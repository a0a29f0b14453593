using Sluice.Client;

namespace Sluice.Samples.Examples;

/// <summary>3. Interactive chat with history: each reply joins the conversation automatically.</summary>
public static class InteractiveChat
{
    /// <summary>Reads lines until <c>/exit</c> or end of input; returns the session (its history).</summary>
    public static async Task<ChatSession> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        using var client = context.CreateClient();
        var session = new ChatSession(client, options: context.NewOptions(40)) { MaxContextTokens = 4_096 };
        while (true)
        {
            await context.Output.WriteAsync("> ");
            var line = await context.Input.ReadLineAsync(cancellationToken);
            if (line is null || line.Trim() == "/exit")
            {
                return session;
            }

            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            await foreach (var update in session.StreamAsync(line, cancellationToken: cancellationToken))
            {
                await context.Output.WriteAsync(update.Text);
            }

            await context.Output.WriteLineAsync();
        }
    }
}
