using System.Runtime.CompilerServices;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Calls;

/// <summary>
/// The stage of a legacy completion (<c>POST /v1/completions</c>): with <c>echo</c>, a backend that answered the prompt as
/// a chat turn gets the prompt put back before each choice's text. An OpenAI-compatible upstream echoes by itself (its
/// chunks pass through as they are), so nothing is added to those.
/// </summary>
internal sealed class CompletionStage : CallStage
{
    public override ValueTask CommitAsync(ChatCall call, CancellationToken cancellationToken)
    {
        if (call.Request.Completion is { Echo: true } completion && completion.Prompts[0].Text is { } prompt)
        {
            call.Backend = new Echo(call.Backend!, prompt);
        }

        return ValueTask.CompletedTask;
    }

    private sealed class Echo(IChatBackend inner, string prompt) : DelegatingChatBackend(inner)
    {
        public override async IAsyncEnumerable<ChatStreamEvent> StreamAsync(
            ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            var echoed = new HashSet<int>();
            var passedThrough = false;
            await foreach (var streamEvent in InnerBackend.StreamAsync(request, options, cancellationToken))
            {
                passedThrough |= streamEvent is OpenAIChunkEvent or OpenAIChunkBatch;
                var answers = streamEvent is TextDeltaEvent or RefusalDeltaEvent or ToolCallDeltaEvent or FinishEvent;
                if (!passedThrough && answers && echoed.Add(streamEvent.ChoiceIndex))
                {
                    yield return new TextDeltaEvent(prompt, streamEvent.ChoiceIndex);
                }

                yield return streamEvent;
            }
        }
    }
}
