using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Protocol;
using Sluice.Protocol.Portal;

namespace Sluice.Gateway.WebSockets;

/// <summary>
/// One chat WebSocket: its requests (bounded in number), its outbox (bounded in messages) and the one loop that sends —
/// WebSocket sends must never overlap, so request tasks only queue messages.
/// </summary>
internal sealed class WebSocketConnection : IAsyncDisposable
{
    /// <summary>How long a final message (done, error) may wait for room before it is dropped: the client is not reading.</summary>
    private static readonly TimeSpan FinalMessageWait = TimeSpan.FromSeconds(1);

    private readonly WebSocket _socket;
    private readonly WebSocketChatOptions _options;
    private readonly CancellationTokenSource _closing;
    private readonly Channel<byte[]> _outbox;
    private readonly ConcurrentDictionary<string, (CancellationTokenSource Cancel, Task Task)> _running = new(StringComparer.Ordinal);
    private readonly Task _writer;

    public WebSocketConnection(WebSocket socket, WebSocketChatOptions options, CancellationToken aborted)
    {
        _socket = socket;
        _options = options;
        _closing = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        _outbox = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(Math.Max(1, options.OutboxMessages))
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _writer = WriteLoopAsync();
    }

    /// <summary>Requests running now.</summary>
    public int Running => _running.Count;

    /// <summary>
    /// Receives the next whole text message (null: the client closed); a message over the limit closes the socket, as
    /// does one that would pass the caller's share of request bytes held at once (<paramref name="held"/>).
    /// </summary>
    public async Task<ReadOnlyMemory<byte>?> ReceiveAsync(ArrayBufferWriter<byte> buffer, long limit, RequestBodyBudget.Lease? held = null)
    {
        buffer.ResetWrittenCount();
        ValueWebSocketReceiveResult result;
        do
        {
            result = await _socket.ReceiveAsync(buffer.GetMemory(4096), _closing.Token);
            buffer.Advance(result.Count);
            if (buffer.WrittenCount > limit)
            {
                await _socket.CloseAsync(WebSocketCloseStatus.MessageTooBig, "message too big", _closing.Token);
                return null;
            }

            if (held is not null && buffer.WrittenCount > RequestBodyBudget.FreeBytes)
            {
                try
                {
                    held.GrowTo(buffer.WrittenCount);
                }
                catch (ChatException)
                {
                    await _socket.CloseAsync(WebSocketCloseStatus.PolicyViolation, "too many request bytes held at once (Limits:MaxBodyBytesPerClient)", _closing.Token);
                    return null;
                }
            }
        }
        while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

        // The message is handed on as its own copy: the socket's share is back to nothing.
        held?.GrowTo(0);

        // A clean close: requests in flight are cancelled, then the server closes its side.
        return result.MessageType == WebSocketMessageType.Close ? null : buffer.WrittenMemory.ToArray();
    }

    /// <summary>Starts request <paramref name="id"/> on its own task; <paramref name="finished"/> runs when it ends.</summary>
    /// <exception cref="ChatException">The id is still running, or the socket runs as many requests as it may.</exception>
    public void Run(string id, Func<CancellationToken, Task> run, Action finished)
    {
        // Only the read loop starts requests, so checking then adding does not race.
        if (_running.ContainsKey(id))
        {
            throw new ChatException(400, new ErrorInfo($"Request '{id}' is still running. Use a new id for each request, or cancel this one first.", ErrorTypes.InvalidRequest, "id", "duplicate_id"));
        }

        if (_running.Count >= _options.MaxConcurrentRequestsPerSocket)
        {
            throw new ChatException(429, new ErrorInfo(
                $"This socket already runs {_options.MaxConcurrentRequestsPerSocket} requests at once (WebSocket:MaxConcurrentRequestsPerSocket). Wait for one to finish, or cancel one.",
                ErrorTypes.RateLimit, "id", "too_many_requests"));
        }

        var cancel = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
        var registered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _running[id] = (cancel, RunAsync(registered.Task, run, cancel, id, finished));
        registered.SetResult();
    }

    /// <summary>Cancels request <paramref name="id"/>, if it runs.</summary>
    public void Cancel(string id)
    {
        if (_running.TryGetValue(id, out var request))
        {
            CancelQuietly(request.Cancel);
        }
    }

    /// <summary>
    /// Queues an answer message, waiting while the outbox is full (this pauses the generation); a client that does not
    /// read for <c>SlowClientTimeoutSeconds</c> gets the request cancelled with <c>client_too_slow</c>.
    /// </summary>
    public async ValueTask SendAsync(Action<Utf8JsonWriter> write, CancellationToken cancellationToken)
    {
        var message = Serialize(write);
        if (_outbox.Writer.TryWrite(message))
        {
            return;
        }

        // The wait itself is cancelled at the deadline: a write left pending would hold its message and deliver it later,
        // after the request's error.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(_options.SlowClientTimeoutSeconds));
        try
        {
            await _outbox.Writer.WriteAsync(message, deadline.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ChatException(408, new ErrorInfo(
                $"The client did not read this socket's messages for {_options.SlowClientTimeoutSeconds} s (WebSocket:SlowClientTimeoutSeconds), so the request was cancelled. Read messages as they arrive.",
                ErrorTypes.Timeout, null, "client_too_slow"));
        }
        catch (ChannelClosedException)
        {
            throw new OperationCanceledException("The socket is closing.", cancellationToken);
        }
    }

    /// <summary>Queues a final message (done, error), waiting briefly for room; a client that does not read loses it.</summary>
    public async ValueTask SendFinalAsync(Action<Utf8JsonWriter> write)
    {
        var message = Serialize(write);
        if (_outbox.Writer.TryWrite(message))
        {
            return;
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
        deadline.CancelAfter(FinalMessageWait);
        try
        {
            await _outbox.Writer.WriteAsync(message, deadline.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            // Nobody is reading: the message has nowhere to go (and is not kept for later).
        }
    }

    public async ValueTask DisposeAsync()
    {
        // The client closed or vanished: whatever is still generating stops (and says so, if it can).
        var running = _running.Values.ToArray();
        foreach (var (cancel, _) in running)
        {
            CancelQuietly(cancel);
        }

        await Task.WhenAll(running.Select(r => r.Task)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _outbox.Writer.TryComplete();

        // What is queued goes out, unless the client stopped reading.
        await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
            {
                // Gone meanwhile.
            }
        }

        await _closing.CancelAsync();
        _closing.Dispose();
    }

    private static void CancelQuietly(CancellationTokenSource cancel)
    {
        try
        {
            cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // It ended meanwhile.
        }
    }

    private static byte[] Serialize(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, PortalEvents.WriterOptions))
        {
            write(json);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private async Task RunAsync(Task started, Func<CancellationToken, Task> run, CancellationTokenSource cancel, string id, Action finished)
    {
        try
        {
            // Registered before it runs, so a cancel for this id always finds it.
            await started;
            await Task.Yield();
            await run(cancel.Token);
        }
        finally
        {
            _running.TryRemove(id, out _);
            cancel.Dispose();
            finished();
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await foreach (var message in _outbox.Reader.ReadAllAsync(_closing.Token))
            {
                if (_socket.State is not (WebSocketState.Open or WebSocketState.CloseReceived))
                {
                    continue;
                }

                await _socket.SendAsync(message, WebSocketMessageType.Text, endOfMessage: true, _closing.Token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
        {
            // The socket is gone: requests notice through their cancellation.
            await _closing.CancelAsync();
        }
    }
}
