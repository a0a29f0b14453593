using System.Text;
using Sluice.Cli.Client;

namespace Sluice.Cli.Commands.Chat;

/// <summary>What the user asked for besides the conversation itself.</summary>
internal sealed record ChatSessionOptions(
    string? Model,
    string? System,
    int? MaxTokens,
    double? Temperature,
    long? Seed,
    IReadOnlyDictionary<string, string>? Metadata,
    bool JsonStats);

/// <summary>The result of one request.</summary>
/// <param name="ExitCode">The process exit code this outcome maps to.</param>
/// <param name="Answer">The text received (partial when cancelled or failed).</param>
/// <param name="Outcome">Completed, cancelled or failed.</param>
internal sealed record TurnResult(int ExitCode, string Answer, ChatOutcome Outcome);

/// <summary>
/// Runs chat turns: streams each answer to stdout as it arrives (written and flushed per delta), then reports
/// stats — and errors, with what to do next — on stderr. Stdout carries answer text only.
/// </summary>
internal sealed class ChatSession(
    ChatStreamClient client,
    ChatSessionOptions options,
    TextWriter output,
    TextWriter error,
    InterruptHandler interrupts)
{
    public const string ErrorPrefix = "sluice chat: ";

    /// <summary>The conversation's opening messages (the system prompt, if any).</summary>
    public List<ChatTurn> NewConversation() =>
        options.System is { Length: > 0 } system ? [new ChatTurn("system", system)] : [];

    /// <summary>Sends <paramref name="messages"/> and streams the answer; Ctrl+C stops it.</summary>
    public async Task<TurnResult> RunTurnAsync(IReadOnlyList<ChatTurn> messages)
    {
        var request = new ChatStreamRequest
        {
            Model = options.Model,
            Messages = messages,
            MaxTokens = options.MaxTokens,
            Temperature = options.Temperature,
            Seed = options.Seed,
            Metadata = options.Metadata,
        };

        var stats = new ChatStats();
        var answer = new StringBuilder();
        var exitCode = ExitCodes.Success;
        var interrupt = interrupts.BeginStream();
        try
        {
            await foreach (var update in client.StreamAsync(request, interrupt.Token))
            {
                switch (update)
                {
                    case ContentUpdate content:
                        stats.DeltaArrived();
                        answer.Append(content.Text);

                        // No buffering: the reader sees each token the moment it arrives.
                        await output.WriteAsync(content.Text);
                        await output.FlushAsync(CancellationToken.None);
                        break;
                    case ModelUpdate model:
                        stats.Model = model.Model;
                        break;
                    case SessionUpdate session:
                        stats.SessionId = session.SessionId;
                        break;
                    case FinishUpdate finish:
                        stats.FinishReason = finish.Reason;
                        break;
                    case UsageUpdate usage:
                        stats.Usage = usage;
                        break;
                }
            }

            stats.Complete();
        }
        catch (OperationCanceledException) when (interrupt.IsCancellationRequested)
        {
            stats.Cancel();
            exitCode = ExitCodes.Cancelled;
        }
        catch (ChatClientException ex)
        {
            stats.Fail(ex);
            exitCode = ExitCodeFor(ex.Kind);
        }
        finally
        {
            interrupts.EndStream(interrupt);
        }

        if (answer.Length > 0 && answer[^1] != '\n')
        {
            await output.WriteLineAsync();
            await output.FlushAsync(CancellationToken.None);
        }

        await ReportAsync(stats);
        return new TurnResult(exitCode, answer.ToString(), stats.Outcome);
    }

    public static int ExitCodeFor(ChatFailureKind kind) => kind switch
    {
        ChatFailureKind.Connection => ExitCodes.ConnectionRefused,
        ChatFailureKind.Client => ExitCodes.ClientError,
        ChatFailureKind.Server => ExitCodes.ServerError,
        ChatFailureKind.MidStream => ExitCodes.MidStreamError,
        _ => ExitCodes.Timeout,
    };

    private async Task ReportAsync(ChatStats stats)
    {
        if (options.JsonStats)
        {
            // Exactly one JSON object per request, errors included, so scripts can parse stderr line by line.
            await error.WriteLineAsync(stats.ToJson());
            return;
        }

        if (stats.Outcome != ChatOutcome.Failed || stats.Deltas > 0)
        {
            await error.WriteLineAsync(stats.ToText());
        }

        if (stats.Error is { } failure)
        {
            await error.WriteLineAsync(ErrorPrefix + failure.Message);
        }
    }
}
