using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Responses;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Responses;

/// <summary>
/// One Responses API call as a pipeline stage: continues a stored response (<c>previous_response_id</c>, owner-scoped:
/// another team's id is a 404 like a missing one) in prepare, follows the answer (a <see cref="ResponsesStreamWriter"/>
/// fed the same events as the client's, so it builds the same response object) from commit on, and stores the response
/// with its whole conversation when it completes (<c>store</c>, default true).
/// </summary>
internal sealed partial class ResponsesStage(IResponseStore store, ChatRequestLimits limits, TimeProvider time, ILogger logger, StoredResponseRetention? retention = null)
    : CallStage
{
    private ResponseHeader? _header;
    private ResponsesStreamWriter? _tracker;
    private JsonElement _conversation;
    private bool _store = true;
    private string? _previous;
    private ErrorInfo? _error;

    /// <summary>The response's id, time, model and echoed settings (once committed).</summary>
    public ResponseHeader Header => _header ?? throw new InvalidOperationException("The response is not committed yet.");

    /// <summary>The response as built from the answer's events; ended once the stage is settled.</summary>
    public ResponsesStreamWriter Tracker => _tracker ?? throw new InvalidOperationException("The response is not committed yet.");

    public override async ValueTask PrepareAsync(ChatCall call, CancellationToken cancellationToken)
    {
        (_store, _previous) = ResponsesRequestParser.ReadStorage(call.Body);
        JsonElement? history = null;
        if (_previous is not null)
        {
            var stored = await store.GetResponseAsync(call.Caller.OwnerId, _previous, cancellationToken)
                ?? throw new ChatException(404, new ErrorInfo(
                    $"previous_response_id '{_previous}' was not found for this API key: it was never stored (store: false), was deleted, or belongs to another team. Send the whole conversation as input instead.",
                    ErrorTypes.InvalidRequest, "previous_response_id", "previous_response_not_found"));
            using var document = JsonDocument.Parse(stored.ConversationJson);
            history = document.RootElement.Clone();
            call.Request = ResponsesRequestParser.Parse(call.Body, limits, history);
        }

        _conversation = ResponsesRequestParser.CombinedInput(history, ResponsesRequestParser.RawInput(call.Body));
        call.AcceptsResponsesEvents = true;
    }

    public override ValueTask CommitAsync(ChatCall call, CancellationToken cancellationToken)
    {
        _header = new ResponseHeader("resp_" + call.RequestId, time.GetUtcNow().ToUnixTimeSeconds(), call.Model.Name, ResponsesEcho.Read(call.Body));
        _tracker = new ResponsesStreamWriter(_header);
        call.Backend = new Capture(call.Backend!, this);
        return ValueTask.CompletedTask;
    }

    /// <summary>Ends the response (as the client's stream ends it) and stores it when it completed and may be stored.</summary>
    public override async ValueTask SettleAsync(ChatCall call, UsageStatus status, ChatUsage usage)
    {
        if (_tracker is null)
        {
            return;
        }

        if (status == UsageStatus.Completed)
        {
            _tracker.WriteEnd(null, usage);
        }
        else if (status == UsageStatus.Failed)
        {
            _tracker.WriteError(null, _error ?? new ErrorInfo("The response failed.", ErrorTypes.Server));
        }

        if (!_store || status != UsageStatus.Completed || _tracker.Status is not ("completed" or "incomplete"))
        {
            return;
        }

        try
        {
            var conversation = new StringBuilder("[");
            foreach (var item in _conversation.EnumerateArray().Concat(_tracker.OutputAsInput().EnumerateArray()))
            {
                conversation.Append(conversation.Length > 1 ? "," : string.Empty).Append(item.GetRawText());
            }

            conversation.Append(']');
            await store.SaveResponseAsync(
                new StoredResponse(
                    _tracker.ResponseId,
                    call.Caller.OwnerId,
                    call.Caller.Key?.Id,
                    call.Model.Name,
                    _previous,
                    Encoding.UTF8.GetString(_tracker.FinalResponse.Span),
                    conversation.ToString(),
                    time.GetUtcNow()),
                CancellationToken.None);

            // The team keeps its newest Responses:MaxStoredPerTeam (checked every so many stores).
            if (retention is not null && retention.CountStore(call.Caller.OwnerId))
            {
                await store.TrimResponsesAsync(call.Caller.OwnerId, retention.Keep, CancellationToken.None);
            }
        }
#pragma warning disable CA1031 // The client still gets its answer; a response that could not be stored is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogStoreFailed(logger, ex, _tracker.ResponseId);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Storing response {ResponseId} failed; it cannot be retrieved or continued")]
    private static partial void LogStoreFailed(ILogger logger, Exception ex, string responseId);

    /// <summary>Feeds every event of the answer to the stage's tracker before the relay writes it.</summary>
    private sealed class Capture(IChatBackend inner, ResponsesStage stage) : DelegatingChatBackend(inner)
    {
        public override async IAsyncEnumerable<ChatStreamEvent> StreamAsync(
            ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            await using var events = InnerBackend.StreamAsync(request, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
            while (true)
            {
                try
                {
                    if (!await events.MoveNextAsync())
                    {
                        yield break;
                    }
                }
                catch (ChatException ex)
                {
                    stage._error = ex.Error;
                    throw;
                }

                if (events.Current is ErrorEvent error)
                {
                    stage._error = error.Error;
                }
                else
                {
                    stage.Tracker.WriteEvent(null, events.Current);
                }

                yield return events.Current;
            }
        }
    }
}
