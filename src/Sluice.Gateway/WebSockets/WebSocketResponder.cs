using System.Collections.Concurrent;
using System.Text.Json;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Sessions;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;

namespace Sluice.Gateway.WebSockets;

/// <summary>
/// Answers one WebSocket request: its messages are the portal events (<see cref="PortalEvents"/>, written once for SSE
/// and WebSocket) with a leading <c>type</c> and <c>id</c>; refusals are an error message for that request only.
/// </summary>
internal sealed class WebSocketResponder(WebSocketConnection connection, string id, SessionStage? session, CancellationToken generation)
    : ICallResponder, IAnswerSink
{
    private readonly ChatCompletionAccumulator _tools = new();
    private bool _hasTools;
    private bool _started;

    public CancellationToken Generation => generation;

    public ChatException? CancellationReason => null;

    public bool AcceptsChunkBatches => false;

    public bool Started => _started;

    public long PendingBytes => 0;

    private PortalSession? SessionInfo => session is { } stage ? stage.PortalInfo : null;

    public void OnAdmitted(ChatCall call)
    {
    }

    public ValueTask RefuseAsync(ChatCall call, ChatException error) =>
        connection.SendFinalAsync(json => PortalEvents.WriteError(json, error.Error, "error", id));

    public IAnswerSink CreateSink(ChatCall call) => this;

    public void Open(UsageMeter meter)
    {
    }

    public async ValueTask<bool> WriteAsync(ChatStreamEvent streamEvent)
    {
        var tools = PortalEvents.ToolCallsOf(streamEvent);
        if (tools.Count > 0)
        {
            _hasTools = true;
            foreach (var tool in tools)
            {
                _tools.Add(tool);
            }

            _started = true;
            await connection.SendAsync(json => PortalEvents.WriteToolCallDeltas(json, tools, "chunk", id), generation);
            return true;
        }

        if (PortalEvents.TextOf(streamEvent) is not { } text)
        {
            return false;
        }

        _started = true;
        await connection.SendAsync(json => PortalEvents.WriteContent(json, text, "chunk", id), generation);
        return true;
    }

    public ValueTask FlushAsync() => ValueTask.CompletedTask;

    public void Idle()
    {
    }

    public ValueTask BusyAsync() => ValueTask.CompletedTask;

    public ValueTask CompleteAsync(ChatUsage usage, string? finishReason)
    {
        var calls = _hasTools ? _tools.Choices.FirstOrDefault()?.ToolCalls : null;
        var info = SessionInfo;
        return connection.SendFinalAsync(json => PortalEvents.WriteDone(json, usage, finishReason, "done", id, info, calls));
    }

    public ValueTask FailAsync(ChatException error)
    {
        var info = SessionInfo;
        return connection.SendFinalAsync(json => PortalEvents.WriteError(json, error.Error, "error", id, info));
    }

    public ValueTask AbandonAsync() =>
        connection.SendFinalAsync(json => PortalEvents.WriteError(json, SluiceErrors.Cancelled, "error", id));

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>Counts the WebSocket requests running per key over all sockets (bounded by <c>WebSocket:MaxConcurrentRequestsPerKey</c>).</summary>
internal sealed class WebSocketKeyLimiter
{
    private readonly ConcurrentDictionary<string, StrongBox> _running = new(StringComparer.Ordinal);

    /// <summary>Takes a slot for <paramref name="key"/>; false when it already holds <paramref name="limit"/>.</summary>
    public bool TryEnter(string key, int limit)
    {
        var box = _running.GetOrAdd(key, static _ => new StrongBox());
        if (Interlocked.Increment(ref box.Value) <= limit)
        {
            return true;
        }

        Interlocked.Decrement(ref box.Value);
        return false;
    }

    /// <summary>Gives a slot back.</summary>
    public void Exit(string key)
    {
        if (_running.TryGetValue(key, out var box))
        {
            Interlocked.Decrement(ref box.Value);
        }
    }

    /// <summary>Slots <paramref name="key"/> holds now.</summary>
    public int Count(string key) => _running.TryGetValue(key, out var box) ? Volatile.Read(ref box.Value) : 0;

    private sealed class StrongBox
    {
        public int Value;
    }
}
