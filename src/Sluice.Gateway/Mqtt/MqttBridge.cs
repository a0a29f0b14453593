using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Tenancy;
using Sluice.Mqtt;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Protocol.Portal;

namespace Sluice.Gateway.Mqtt;

/// <summary>
/// Serves chat requests that arrive over MQTT: reads <c>{prefix}/requests/#</c>, runs each request through the call
/// pipeline (the same model resolution, admission, limits and billing as HTTP), and streams the answer to the
/// request's reply topic.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Text is coalesced: one answer sends at most one message per <c>MinIntervalMs</c>, each at most
/// <c>MaxMessageBytes</c>, numbered by <c>seq</c>. Done and error messages use QoS 1; tool calls arrive whole in the
/// done message.</item>
/// <item>Every request that arrived ends with a done or an error message. When the broker connection drops in the
/// middle of an answer, generation stops and the error is published (QoS 1) as soon as the broker is back.</item>
/// <item>A message that is not a valid request gets an error reply when its id (or reply_to) can be read, and a
/// log line otherwise; the bridge carries on.</item>
/// <item>With keys on (a master key), a request needs an <c>api_key</c>: the master key or a virtual key, checked by
/// the same authenticator as HTTP.</item>
/// <item><c>{"id", "cancel": true}</c> (with the same key) stops that request: its answer ends with a <c>cancelled</c>
/// error and is recorded as abandoned, like an HTTP client that left.</item>
/// </list>
/// </remarks>
internal sealed partial class MqttBridge : BackgroundService
{
    /// <summary>How long final messages may still take once shutdown has begun.</summary>
    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(2);

    private readonly MqttBridgeOptions _options;
    private readonly CallPipeline _pipeline;
    private readonly KeyAuthenticator _authenticator;
    private readonly ILogger<MqttBridge> _logger;
    private readonly TimeProvider _time;
    private readonly MqttRequestReader _reader;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _grace = new();
    private readonly MqttQos _chunkQos;
    private readonly TimeSpan _interval;

    // Running requests by owner and id, so a client can cancel its own (and only its own) request.
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);

    public MqttBridge(GatewayOptions options, CallPipeline pipeline, KeyAuthenticator authenticator, ILogger<MqttBridge> logger, TimeProvider time)
    {
        _options = options.Mqtt;
        _options.Validate();
        _pipeline = pipeline;
        _authenticator = authenticator;
        _logger = logger;
        _time = time;
        _reader = new MqttRequestReader(_options, pipeline.Limits);
        _slots = new SemaphoreSlim(_options.MaxConcurrentRequests, _options.MaxConcurrentRequests);
        _chunkQos = (MqttQos)_options.ChunkQos;
        _interval = TimeSpan.FromMilliseconds(_options.MinIntervalMs);
        Client = new MqttClient(_options.ToClientOptions());
    }

    /// <summary>The bridge's MQTT connection.</summary>
    public MqttClient Client { get; }

    /// <inheritdoc />
    public override void Dispose()
    {
        _grace.Dispose();
        _slots.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        Client.Connected += OnConnected;
        Client.Disconnected += OnDisconnected;
        using var graceOnStop = stoppingToken.Register(() => _grace.CancelAfter(ShutdownGrace));

        // Registered before the first connection, so every connection (re)subscribes before it counts as up.
        var subscribed = Client.SubscribeAsync(_options.RequestFilter, (MqttQos)_options.RequestQos, stoppingToken);
        _ = ObserveSubscriptionAsync(subscribed);
        LogStarting(_logger, _options.Describe(), _options.RequestFilter);
        Client.Start();

        var active = new ConcurrentDictionary<long, Task>();
        var next = 0L;
        try
        {
            await foreach (var message in Client.Messages.ReadAllAsync(stoppingToken))
            {
                await _slots.WaitAsync(stoppingToken);
                var key = ++next;
                var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                active[key] = finished.Task;
                _ = Task.Run(async () =>
                {
                    try
                    {
                        await HandleAsync(message, stoppingToken);
                    }
                    finally
                    {
                        active.TryRemove(key, out _);
                        _slots.Release();
                        finished.TrySetResult();
                    }
                }, CancellationToken.None);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // Answers in progress publish their error (bounded by the grace period) before the connection closes.
            await Task.WhenAll(active.Values).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            Client.Connected -= OnConnected;
            Client.Disconnected -= OnDisconnected;
            await Client.DisposeAsync();
        }
    }

    private async Task HandleAsync(MqttMessage message, CancellationToken stopping)
    {
        var requestId = RequestIds.Next();
        if (message.Retain)
        {
            // A retained request would run again after every reconnection.
            LogRetainedIgnored(_logger, LogText.Clean(message.Topic)!);
            return;
        }

        try
        {
            MqttRequest request;
            Caller caller;
            try
            {
                request = _reader.Read(message.Payload);
                if (new MqttAnswerJson(request.Id, requestId).MinimumMessageBytes > _options.MaxMessageBytes)
                {
                    throw new MqttRequestRejectedException(
                        new ErrorInfo($"id is too long for answer messages of {_options.MaxMessageBytes} bytes. Use a shorter id or raise Mqtt:MaxMessageBytes.", ErrorTypes.InvalidRequest, "id", "invalid_value"),
                        request.Id,
                        request.ReplyTopic);
                }

                var (authenticated, denied) = await _authenticator.AuthenticateAsync(request.ApiKey, stopping);
                caller = authenticated ?? throw new MqttRequestRejectedException(InMqttTerms(denied!.Error), request.Id, request.ReplyTopic);
            }
            catch (MqttRequestRejectedException ex)
            {
                await RejectAsync(ex.Error, ex.Id, ex.ReplyTopic, requestId, message.Topic);
                return;
            }

            var runningKey = caller.OwnerId + "\n" + request.Id;
            if (request.Cancel)
            {
                await CancelAsync(runningKey, request, requestId, message.Topic);
                return;
            }

            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            if (!_running.TryAdd(runningKey, cancel))
            {
                await RejectAsync(
                    new ErrorInfo($"Request '{request.Id}' is still running. Use a new id for each request, or cancel this one first ({{\"id\": \"{request.Id}\", \"cancel\": true}}).", ErrorTypes.InvalidRequest, "id", "duplicate_id"),
                    request.Id, request.ReplyTopic, requestId, message.Topic);
                return;
            }

            try
            {
                LogRequest(_logger, requestId, LogText.Clean(request.Id)!, LogText.Clean(request.Chat.Model, 100)!, LogText.Clean(request.ReplyTopic)!);
                var call = _pipeline.Begin(requestId, caller, CallDialect.Mqtt, cancel.Token);
                call.Request = request.Chat;
                await _pipeline.RunAsync(call, new MqttResponder(this, request, stopping));
            }
            finally
            {
                _running.TryRemove(runningKey, out _);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
#pragma warning disable CA1031 // One request's failure must never stop the bridge; it is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogRequestFailed(_logger, ex, requestId, LogText.Clean(message.Topic)!);
        }
    }

    /// <summary>Cancels the caller's running request with this id; the request itself answers with its <c>cancelled</c> error.</summary>
    private async Task CancelAsync(string runningKey, MqttRequest request, string requestId, string topic)
    {
        if (_running.TryGetValue(runningKey, out var running))
        {
            try
            {
                await running.CancelAsync();
            }
            catch (ObjectDisposedException)
            {
                // It ended meanwhile.
            }

            return;
        }

        await RejectAsync(
            new ErrorInfo($"No request '{request.Id}' of yours is running, so there is nothing to cancel.", ErrorTypes.InvalidRequest, "id", "request_not_found"),
            request.Id, request.ReplyTopic, requestId, topic);
    }

    /// <summary>The key errors name the request's <c>api_key</c> field, not HTTP headers.</summary>
    private static ErrorInfo InMqttTerms(ErrorInfo error) => error.Code switch
    {
        "missing_api_key" => error with { Param = "api_key", Message = "api_key is required: this gateway has keys on. Send a virtual key (sk-sluice-…) in the request's api_key field." },
        "invalid_api_key" => error with { Param = "api_key", Message = "api_key is not a valid key (unknown, revoked or expired). Ask the operator for a new one." },
        _ => error,
    };

    private async Task RejectAsync(ErrorInfo error, string? id, string? replyTopic, string requestId, string topic)
    {
        if (replyTopic is null)
        {
            LogUnanswerable(_logger, LogText.Clean(topic)!, LogText.Clean(error.Message, 2_000)!);
            return;
        }

        LogRejected(_logger, requestId, LogText.Clean(id), error.Code ?? error.Type, LogText.Clean(error.Message, 2_000)!);
        var bytes = new MqttAnswerJson(id, requestId).Error(1, error, _options.MaxMessageBytes);
        if (bytes.Length > _options.MaxMessageBytes)
        {
            LogUnanswerable(_logger, LogText.Clean(topic)!, LogText.Clean(error.Message, 2_000) + $" (the error does not fit in Mqtt:MaxMessageBytes = {_options.MaxMessageBytes})");
            return;
        }

        await PublishFinalAsync(replyTopic, bytes, requestId);
    }

    /// <summary>
    /// Answers one MQTT request: chunks of coalesced text (at most one message per <c>MinIntervalMs</c>), then a done
    /// message — or the whole answer as one message when the request is not streamed.
    /// </summary>
    /// <remarks>
    /// Pacing must not slow the model: the relay only appends text; a sender of its own publishes what has gathered
    /// when its turn comes. A broker connection lost mid-answer stops the generation and fails the answer with
    /// <c>answer_interrupted</c> (its error goes out once the broker is back); shutdown fails it with
    /// <c>bridge_stopping</c>.
    /// </remarks>
    private sealed class MqttResponder(MqttBridge bridge, MqttRequest request, CancellationToken stopping) : ICallResponder, IAnswerSink
    {
        private static readonly ChatException BridgeStopping = new(503, new ErrorInfo(
            "The bridge is shutting down, so this answer could not be finished. Send the request again when it is back.",
            ErrorTypes.Server, null, "bridge_stopping"));

        private readonly StringBuilder _pending = new();
        private readonly Lock _lock = new();
        private readonly SemaphoreSlim _signal = new(0);
        private readonly ChatCompletionAccumulator _tools = new();
        private CancellationTokenSource? _generation;
        private MqttAnswerJson? _json;
        private Task _sender = Task.CompletedTask;
        private string _requestId = string.Empty;
        private volatile ChatException? _interrupted;
        private volatile bool _ending;
        private bool _hasTools;
        private long _seq;
        private long _lastSent;
        // The broker connection the answer's chunks go out on: chunks published at QoS 0 on a connection that was then
        // lost may be gone, so such an answer that outlives its connection fails even if the client reconnected in
        // between. QoS 1 chunks are retransmitted after a reconnect, so their answers go on.
        private int _connection;

        public CancellationToken Generation => _generation!.Token;

        public ChatException? CancellationReason => _interrupted ?? (stopping.IsCancellationRequested ? BridgeStopping : null);

        public bool AcceptsChunkBatches => false;

        public bool Started => Volatile.Read(ref _seq) > 0;

        public long PendingBytes => 0;

        public void OnAdmitted(ChatCall call)
        {
        }

        public ValueTask RefuseAsync(ChatCall call, ChatException error) =>
            new(bridge.RejectAsync(error.Error, request.Id, request.ReplyTopic, call.RequestId, request.ReplyTopic));

        public IAnswerSink CreateSink(ChatCall call)
        {
            _json = new MqttAnswerJson(request.Id, call.RequestId);
            _requestId = call.RequestId;
            _generation = CancellationTokenSource.CreateLinkedTokenSource(call.Aborted);
            return this;
        }

        public void Open(UsageMeter meter)
        {
            if (request.Stream)
            {
                _connection = bridge.Client.ConnectionCount;
                _sender = SendLoopAsync();
            }
        }

        public ValueTask<bool> WriteAsync(ChatStreamEvent streamEvent)
        {
            var tools = PortalEvents.ToolCallsOf(streamEvent);
            if (tools.Count > 0)
            {
                _hasTools = true;
                foreach (var tool in tools)
                {
                    _tools.Add(tool);
                }
            }

            // Answers carry one text; a refusal is the text the model gave instead of an answer.
            if (PortalEvents.TextOf(streamEvent) is { } text)
            {
                lock (_lock)
                {
                    _pending.Append(text);
                }

                _signal.Release();
            }

            return ValueTask.FromResult(false);
        }

        public ValueTask FlushAsync() => ValueTask.CompletedTask;

        public void Idle()
        {
        }

        public ValueTask BusyAsync() => ValueTask.CompletedTask;

        public async ValueTask CompleteAsync(ChatUsage usage, string? finishReason)
        {
            var calls = _hasTools ? _tools.Choices.FirstOrDefault()?.ToolCalls : null;
            if (request.Stream)
            {
                // The sender publishes what is left, then stops; then the done message, in its turn.
                _ending = true;
                _signal.Release();
                await _sender;
                if (_interrupted is null && LostChunksPossible)
                {
                    Interrupt();
                }

                if (_interrupted is { } interrupted)
                {
                    throw interrupted;
                }

                await WaitForTurnAsync(stopping);
                await bridge.PublishFinalAsync(request.ReplyTopic, _json!.Done(Interlocked.Increment(ref _seq), finishReason, usage, calls), _requestId);
                return;
            }

            var single = _json!.Single(_seq + 1, _pending.ToString(), finishReason, usage, calls);
            if (single.Length > bridge._options.MaxMessageBytes)
            {
                throw new ChatException(413, new ErrorInfo(
                    $"The answer is {single.Length} bytes as one message; the limit is {bridge._options.MaxMessageBytes}. Send \"stream\": true to receive it in chunks, lower max_tokens, or raise Mqtt:MaxMessageBytes.",
                    ErrorTypes.InvalidRequest, "stream", "response_too_large"));
            }

            _seq++;
            await bridge.PublishFinalAsync(request.ReplyTopic, single, _requestId);
        }

        public async ValueTask FailAsync(ChatException error)
        {
            if (CancellationReason is null)
            {
                // The backend failed: the text it produced before the failure goes out first.
                _ending = true;
                _signal.Release();
                await _sender.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            await StopSenderAsync();
            await bridge.PublishFinalAsync(request.ReplyTopic, _json!.Error(Interlocked.Increment(ref _seq), error.Error, bridge._options.MaxMessageBytes), _requestId);
        }

        public async ValueTask AbandonAsync()
        {
            // The client cancelled it ({"id", "cancel": true}): the answer ends with a "cancelled" error it can expect.
            await StopSenderAsync();
            await bridge.PublishFinalAsync(request.ReplyTopic, _json!.Error(Interlocked.Increment(ref _seq), SluiceErrors.Cancelled, bridge._options.MaxMessageBytes), _requestId);
        }

        public async ValueTask DisposeAsync()
        {
            await StopSenderAsync();
            _generation?.Dispose();
            _signal.Dispose();
        }

        private async Task StopSenderAsync()
        {
            if (_generation is { } generation)
            {
                await generation.CancelAsync();
            }

            await _sender.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        /// <summary>Publishes the gathered text, one message per turn; ends when the answer ends and all is sent.</summary>
        private async Task SendLoopAsync()
        {
            var token = _generation!.Token;
            try
            {
                while (true)
                {
                    await _signal.WaitAsync(token);
                    await WaitForTurnAsync(token);
                    byte[]? chunk = null;
                    lock (_lock)
                    {
                        if (_pending.Length > 0)
                        {
                            chunk = _json!.Chunk(_seq + 1, _pending, bridge._options.MaxMessageBytes, out var consumed);
                            _pending.Remove(0, consumed);
                        }
                    }

                    if (chunk is not null)
                    {
                        if (LostChunksPossible)
                        {
                            // Reconnected since the answer began: what went out on the lost connection may be lost.
                            throw new MqttConnectionException("the connection to the broker was replaced during this answer");
                        }

                        await bridge.Client.PublishAsync(request.ReplyTopic, chunk, bridge._chunkQos, cancellationToken: token);
                        Interlocked.Increment(ref _seq);
                        _lastSent = bridge._time.GetTimestamp();
                    }

                    lock (_lock)
                    {
                        if (_pending.Length > 0)
                        {
                            // What did not fit goes in the next turn.
                            _signal.Release();
                        }
                        else if (_ending)
                        {
                            return;
                        }
                    }
                }
            }
            catch (MqttConnectionException)
            {
                Interrupt();
                await _generation.CancelAsync();
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
            }
        }

        private bool LostChunksPossible =>
            bridge._chunkQos == MqttQos.AtMostOnce && bridge.Client.ConnectionCount != _connection;

        private void Interrupt()
        {
            LogInterrupted(bridge._logger, _requestId, LogText.Clean(request.Id)!, _seq);
            _interrupted = new ChatException(502, new ErrorInfo(
                $"The connection to the MQTT broker was lost after {_seq} message(s) of this answer, so it could not be finished. Send the request again.",
                ErrorTypes.Server, null, "answer_interrupted"));
        }

        /// <summary>Keeps one answer's messages at least the minimum interval apart.</summary>
        private async ValueTask WaitForTurnAsync(CancellationToken cancellationToken)
        {
            if (_lastSent == 0 || bridge._interval <= TimeSpan.Zero)
            {
                return;
            }

            // Timers may fire a little early; loop until the full interval has passed.
            while (bridge._time.GetElapsedTime(_lastSent) is var elapsed && elapsed < bridge._interval)
            {
                await Task.Delay(bridge._interval - elapsed + TimeSpan.FromMilliseconds(1), bridge._time, cancellationToken);
            }
        }
    }

    /// <summary>Publishes a done or error message with QoS 1, waiting through reconnections (up to shutdown plus a grace period).</summary>
    private async Task PublishFinalAsync(string topic, byte[] payload, string requestId)
    {
        try
        {
            await Client.PublishAsync(topic, payload, MqttQos.AtLeastOnce, cancellationToken: _grace.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or MqttException or ObjectDisposedException)
        {
            LogUndelivered(_logger, requestId, LogText.Clean(topic)!, LogText.Clean(ex.Message, 2_000)!);
        }
    }

    private async Task ObserveSubscriptionAsync(Task<MqttQos> subscribed)
    {
        try
        {
            await subscribed;
        }
        catch (MqttSubscribeRefusedException ex)
        {
            LogSubscriptionRefused(_logger, ex.Filter);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private void OnConnected(object? sender, MqttConnectedEventArgs e)
    {
        if (e.ConnectionCount == 1)
        {
            LogConnected(_logger, _options.Describe(), _options.RequestFilter);
        }
        else
        {
            LogReconnected(_logger, _options.Describe(), e.ConnectionCount - 1);
        }

        foreach (var filter in e.RefusedFilters)
        {
            LogSubscriptionRefused(_logger, filter);
        }
    }

    private void OnDisconnected(object? sender, MqttDisconnectedEventArgs e)
    {
        if (e.WasConnected)
        {
            LogConnectionLost(_logger, _options.Describe(), e.Reason.Message, e.RetryDelay.TotalMilliseconds);
        }
        else
        {
            LogConnectFailed(_logger, _options.Describe(), e.Reason.Message, e.RetryDelay.TotalMilliseconds);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "MQTT bridge starting: broker {Broker}, requests on {Filter}")]
    private static partial void LogStarting(ILogger logger, string broker, string filter);

    [LoggerMessage(Level = LogLevel.Information, Message = "MQTT bridge connected to {Broker}; listening on {Filter}")]
    private static partial void LogConnected(ILogger logger, string broker, string filter);

    [LoggerMessage(Level = LogLevel.Information, Message = "MQTT bridge reconnected to {Broker} (reconnection {Count}); subscriptions renewed")]
    private static partial void LogReconnected(ILogger logger, string broker, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MQTT connection to {Broker} lost: {Reason} Reconnecting in {DelayMs:F0} ms")]
    private static partial void LogConnectionLost(ILogger logger, string broker, string reason, double delayMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MQTT broker {Broker} not reachable: {Reason} Retrying in {DelayMs:F0} ms")]
    private static partial void LogConnectFailed(ILogger logger, string broker, string reason, double delayMs);

    [LoggerMessage(Level = LogLevel.Error, Message = "The MQTT broker refused the subscription to {Filter}; no requests will arrive. Check the broker's access rules for the bridge's client.")]
    private static partial void LogSubscriptionRefused(ILogger logger, string filter);

    [LoggerMessage(Level = LogLevel.Information, Message = "MQTT request {RequestId} (id {Id}) for {Model}, answering on {Topic}")]
    private static partial void LogRequest(ILogger logger, string requestId, string id, string model, string topic);

    [LoggerMessage(Level = LogLevel.Information, Message = "MQTT request {RequestId} (id {Id}) rejected ({Code}): {Reason}")]
    private static partial void LogRejected(ILogger logger, string requestId, string? id, string code, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignored an MQTT message on {Topic} that has no readable id or reply_to to answer to: {Reason}")]
    private static partial void LogUnanswerable(ILogger logger, string topic, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignored a retained MQTT message on {Topic}: publish requests without the retain flag, or they would run again after every reconnection.")]
    private static partial void LogRetainedIgnored(ILogger logger, string topic);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MQTT request {RequestId} (id {Id}) was interrupted by the broker connection after {Messages} message(s); an error message follows once the broker is back")]
    private static partial void LogInterrupted(ILogger logger, string requestId, string id, long messages);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not deliver the final message of MQTT request {RequestId} to {Topic}: {Reason}")]
    private static partial void LogUndelivered(ILogger logger, string requestId, string topic, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "MQTT request {RequestId} on {Topic} failed unexpectedly")]
    private static partial void LogRequestFailed(ILogger logger, Exception ex, string requestId, string topic);
}
