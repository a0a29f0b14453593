using Microsoft.Extensions.AI;

namespace Sluice.Samples.Examples;

/// <summary>4. System prompt: set the assistant's role once, in front of the user's message.</summary>
public static class SystemPrompt
{
    /// <summary>The system prompt this example sends.</summary>
    public const string Prompt = "You are a concise geography tutor. Answer in two sentences.";

    /// <summary>Streams an answer under a system prompt; returns it.</summary>
    public static async Task<string> RunAsync(SampleContext context, CancellationToken cancellationToken = default)
    {
        using var client = context.CreateClient();
        List<ChatMessage> messages =
        [
            new(ChatRole.System, Prompt),
            new(ChatRole.User, "Why do rivers meander?"),
        ];

        var answer = new System.Text.StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync(messages, context.NewOptions(40), cancellationToken))
        {
            await context.Output.WriteAsync(update.Text);
            answer.Append(update.Text);
        }

        await context.Output.WriteLineAsync();
        return answer.ToString();
    }
}
