using Sluice.Gateway.Calls;
using Sluice.Protocol;

namespace Sluice.Gateway.Relay;

/// <summary>How a relayed answer ended, decided from what stopped it.</summary>
internal enum StreamEnd
{
    /// <summary>The backend finished and the closing frames went out.</summary>
    Completed,

    /// <summary>The client left or the generation was cancelled (<c>DELETE</c>, the resume grace ran out, shutdown).</summary>
    Abandoned,

    /// <summary>The backend (or the gateway) failed.</summary>
    Failed,
}

/// <summary>Classifies the exception that ended a relay into an outcome and the error to send.</summary>
internal static class StreamOutcome
{
    /// <summary>
    /// What an exception means: cancellation (Kestrel's connection-aborted exception is one) and broken connections while the generation or the client is cancelled
    /// are an abandoned answer; a <see cref="ChatException"/> is the backend's failure as it is; anything else is an
    /// unexpected backend failure (502 <c>backend_error</c>, with the details only in the log).
    /// </summary>
    /// <param name="exception">What ended the relay.</param>
    /// <param name="cancelled">Whether the generation (or the client's connection) was cancelled.</param>
    /// <param name="requestId">The request id, named in unexpected failures.</param>
    /// <param name="cancellationReason">The sink's reason for a cancellation that is not the client leaving, if any.</param>
    public static (StreamEnd End, ChatException? Error) Classify(Exception exception, bool cancelled, string requestId, ChatException? cancellationReason = null)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (cancelled && exception is OperationCanceledException or IOException)
        {
            return cancellationReason is null ? (StreamEnd.Abandoned, null) : (StreamEnd.Failed, cancellationReason);
        }

        return exception is ChatException chat
            ? (StreamEnd.Failed, chat)
            : (StreamEnd.Failed, SluiceErrors.BackendFailed(exception, requestId));
    }

    /// <summary>The usage error code of a failure.</summary>
    public static string CodeOf(ChatException error, bool unexpected) =>
        unexpected ? "internal_error" : error.Error.Code ?? error.Error.Type;
}
