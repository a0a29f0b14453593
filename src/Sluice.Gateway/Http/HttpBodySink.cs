using System.Buffers;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Protocol.Events;

namespace Sluice.Gateway.Http;

/// <summary>Writes a non-streamed answer's body (the dialect's completion object) from the assembled answer.</summary>
/// <param name="output">Where the body goes.</param>
/// <param name="call">The call.</param>
/// <param name="answer">The answer, assembled from every event.</param>
/// <param name="usage">Its usage.</param>
internal delegate void CompletionWriter(IBufferWriter<byte> output, ChatCall call, ChatCompletionAccumulator answer, ChatUsage usage);

/// <summary>
/// A non-streamed HTTP answer: the events are assembled (<see cref="ChatCompletionAccumulator"/>) and written as one
/// JSON body at the end — or, on failure, the dialect's error response with its status (nothing was sent before).
/// </summary>
internal sealed class HttpBodySink(HttpContext context, ChatCall call, CompletionWriter writer, ErrorDialect errors) : IAnswerSink
{
    private readonly ChatCompletionAccumulator _answer = new();

    public CancellationToken Generation => context.RequestAborted;

    public ChatException? CancellationReason => null;

    public bool AcceptsChunkBatches => false;

    public bool Started => false;

    public long PendingBytes => 0;

    public void Open(UsageMeter meter)
    {
    }

    public ValueTask<bool> WriteAsync(ChatStreamEvent streamEvent)
    {
        _answer.Add(streamEvent);
        return ValueTask.FromResult(false);
    }

    public ValueTask FlushAsync() => ValueTask.CompletedTask;

    public void Idle()
    {
    }

    public ValueTask BusyAsync() => ValueTask.CompletedTask;

    public async ValueTask CompleteAsync(ChatUsage usage, string? finishReason)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        writer(response.BodyWriter, call, _answer, usage);
        await response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    public async ValueTask FailAsync(ChatException error) => await ErrorResponses.WriteAsync(context, error, errors);

    public ValueTask AbandonAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
