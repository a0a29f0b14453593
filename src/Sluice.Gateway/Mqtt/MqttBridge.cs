using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Endpoints;
using Sluice.Gateway.Hosting;
using Sluice.Mqtt;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Mqtt;

/// <summary>
/// Serves chat requests that arrive over MQTT: reads <c>{prefix}/requests/#</c>, runs each request on the model
/// catalog's backends, and streams the answer to the request's reply topic.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Text is coalesced: one answer sends at most one message per <c>MinIntervalMs</c>, each at most
/// <c>MaxMessageBytes</c>, numbered by <c>seq</c>. Done and error messages use QoS 1.</item>
/// <item>Every request that arrived ends with a done or an error message. When the broker connection drops in the
/// middle of an answer, generation stops and the error is published (QoS 1) as soon as the broker is back.</item>
/// <item>A message that is not a valid request gets an error reply when its id (or reply_to) can be read, and a
/// log line otherwise; the bridge carries on.</item>
/// </list>
/// </remarks>
internal sealed partial class MqttBridge : BackgroundService
{
    /// <summary>How long final messages may still take once shutdown has begun.</summary>
    private static readonly TimeSpan ShutdownGrace = TimeSpan.FromSeconds(2);

    private readonly MqttBridgeOptions _options;
    private readonly ModelCatalog _catalog;
    private readonly UsageReporter _usage;
    private readonly IMqttRequestAuthenticator _authenticator;
    private readonly ILogger<MqttBridge> _logger;
    private readonly TimeProvider _time;
    private readonly MqttRequestReader _reader;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _grace = new();
    private readonly MqttQos _chunkQos;
    private readonly TimeSpan _interval;

    public MqttBridge(
        GatewayOptions options,
        ModelCatalog catalog,
        UsageReporter usage,
        IMqttRequestAuthenticator authenticator,
        ILogger<MqttBridge> logger,
        TimeProvider time)
    {
        _options = options.Mqtt;
        _options.Validate();
        _catalog = catalog;
        _usage = usage;
        _authenticator = authenticator;
        _logger = logger;
        _time = time;
        _reader = new MqttRequestReader(_options, new ChatRequestLimits { MaxPromptChars = options.Limits.MaxPromptChars });
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
        var start = Stopwatch.GetTimestamp();
        var requestId = RequestIds.Next();
        if (message.Retain)
        {
            // A retained request would run again after every reconnection.
            LogRetainedIgnored(_logger, message.Topic);
            return;
        }

        try
        {
            MqttRequest request;
            ModelEntry model;
            MqttAuthResult auth;
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

                model = ResolveModel(request);
                auth = await _authenticator.AuthenticateAsync(new MqttAuthRequest(request.Id, request.ApiKey, request.Chat.Model, message.Topic), stopping);
                if (auth.Error is { } denied)
                {
                    throw new MqttRequestRejectedException(denied, request.Id, request.ReplyTopic);
                }
            }
            catch (MqttRequestRejectedException ex)
            {
                await RejectAsync(ex, requestId, message.Topic);
                return;
            }

            LogRequest(_logger, requestId, request.Id, request.Chat.Model, request.ReplyTopic);
            await AnswerAsync(request, model, auth.Billing, requestId, start, stopping);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
#pragma warning disable CA1031 // One request's failure must never stop the bridge; it is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogRequestFailed(_logger, ex, requestId, message.Topic);
        }
    }

    private ModelEntry ResolveModel(MqttRequest request)
    {
        if (_catalog.TryGet(request.Chat.Model, out var entry))
        {
            return entry;
        }

        var names = string.Join(", ", _catalog.Models.Take(12).Select(m => m.Name));
        throw new MqttRequestRejectedException(
            new ErrorInfo($"The model '{request.Chat.Model}' does not exist. This gateway serves: {names}.", ErrorTypes.InvalidRequest, "model", "model_not_found"),
            request.Id,
            request.ReplyTopic);
    }

    private async Task RejectAsync(MqttRequestRejectedException rejected, string requestId, string topic)
    {
        if (rejected.ReplyTopic is null)
        {
            LogUnanswerable(_logger, topic, rejected.Error.Message);
            return;
        }

        LogRejected(_logger, requestId, rejected.Id, rejected.Error.Code ?? rejected.Error.Type, rejected.Error.Message);
        var bytes = new MqttAnswerJson(rejected.Id, requestId).Error(1, rejected.Error, _options.MaxMessageBytes);
        if (bytes.Length > _options.MaxMessageBytes)
        {
            LogUnanswerable(_logger, topic, rejected.Error.Message + $" (the error does not fit in Mqtt:MaxMessageBytes = {_options.MaxMessageBytes})");
            return;
        }

        await PublishFinalAsync(rejected.ReplyTopic, bytes, requestId);
    }

    /// <summary>Runs one request and publishes its answer; always ends with a done or an error message.</summary>
    private async Task AnswerAsync(MqttRequest request, ModelEntry model, IUsageSink? billing, string requestId, long start, CancellationToken stopping)
    {
        var meter = new StreamRelay.StreamMeter(start, request.Chat);
        var json = new MqttAnswerJson(request.Id, requestId);
        var deltas = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var generation = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        var producer = Task.Run(() => ProduceAsync(model.Backend, request.Chat, meter, deltas.Writer, generation.Token), CancellationToken.None);
        var sender = new Pacer(_time, _interval);
        long seq = 0;
        ErrorInfo? failure = null;
        try
        {
            if (request.Stream)
            {
                var pending = new StringBuilder();
                while (true)
                {
                    // Throws the backend's failure once all the text before it has been sent.
                    if (pending.Length == 0 && !await deltas.Reader.WaitToReadAsync(stopping))
                    {
                        break;
                    }

                    await sender.WaitForTurnAsync(stopping);
                    while (deltas.Reader.TryRead(out var delta))
                    {
                        pending.Append(delta);
                    }

                    var chunk = json.Chunk(seq + 1, pending, _options.MaxMessageBytes, out var consumed);
                    pending.Remove(0, consumed);
                    await Client.PublishAsync(request.ReplyTopic, chunk, _chunkQos, cancellationToken: stopping);
                    seq++;
                    sender.Sent();
                }

                await producer;
                await sender.WaitForTurnAsync(stopping);
                await PublishFinalAsync(request.ReplyTopic, json.Done(++seq, meter.FinishReason, meter.Usage), requestId);
            }
            else
            {
                var text = new StringBuilder();
                await foreach (var delta in deltas.Reader.ReadAllAsync(stopping))
                {
                    text.Append(delta);
                }

                await producer;
                var single = json.Single(++seq, text.ToString(), meter.FinishReason, meter.Usage);
                if (single.Length > _options.MaxMessageBytes)
                {
                    throw new ChatException(413, new ErrorInfo(
                        $"The answer is {single.Length} bytes as one message; the limit is {_options.MaxMessageBytes}. Send \"stream\": true to receive it in chunks, lower max_tokens, or raise Mqtt:MaxMessageBytes.",
                        ErrorTypes.InvalidRequest, "stream", "response_too_large"));
                }

                await PublishFinalAsync(request.ReplyTopic, single, requestId);
            }

            meter.Status = UsageStatus.Completed;
        }
        catch (ChatException ex)
        {
            failure = ex.Error;
            meter.Fail(ex.Error.Code ?? ex.Error.Type);
        }
        catch (MqttConnectionException)
        {
            failure = new ErrorInfo(
                $"The connection to the MQTT broker was lost after {seq} message(s) of this answer, so it could not be finished. Send the request again.",
                ErrorTypes.Server, null, "answer_interrupted");
            meter.Fail("answer_interrupted");
            LogInterrupted(_logger, requestId, request.Id, seq);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            failure = new ErrorInfo(
                "The bridge is shutting down, so this answer could not be finished. Send the request again when it is back.",
                ErrorTypes.Server, null, "bridge_stopping");
            meter.Fail("bridge_stopping");
        }
#pragma warning disable CA1031 // Any failure must reach the client as an error message, never as silence.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogBackendFailed(_logger, ex, requestId, request.Chat.Model);
            failure = new ErrorInfo(
                $"The model backend failed unexpectedly ({ex.GetType().Name}). Retry the request; if it keeps failing, report request id {requestId}.",
                ErrorTypes.Server, null, "backend_error");
            meter.Fail("internal_error");
        }
        finally
        {
            await generation.CancelAsync();
            await producer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        if (failure is not null)
        {
            await PublishFinalAsync(request.ReplyTopic, json.Error(++seq, failure, _options.MaxMessageBytes), requestId);
        }

        var record = meter.ToRecord(requestId, request.Chat, request.Stream);
        _usage.Report(record);
        if (billing is not null)
        {
            try
            {
                billing.Record(record);
            }
#pragma warning disable CA1031 // Accounting must not break the bridge; the failure is logged.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogBillingFailed(_logger, ex, requestId);
            }
        }
    }

    /// <summary>Reads the backend's stream into <paramref name="deltas"/>; the channel completes with the failure, if any.</summary>
    private static async Task ProduceAsync(IChatBackend backend, ChatRequest request, StreamRelay.StreamMeter meter, ChannelWriter<string> deltas, CancellationToken cancellationToken)
    {
        Exception? failure = null;
        try
        {
            await foreach (var streamEvent in backend.StreamAsync(request, cancellationToken).WithCancellation(cancellationToken))
            {
                if (streamEvent is OpenAIChunkEvent passthrough)
                {
                    foreach (var inner in passthrough.Events)
                    {
                        Take(inner);
                    }
                }
                else
                {
                    Take(streamEvent);
                }
            }
        }
#pragma warning disable CA1031 // Handed to the sender through the channel, which reports it.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            failure = ex;
        }
        finally
        {
            deltas.TryComplete(failure);
        }

        void Take(ChatStreamEvent streamEvent)
        {
            meter.Observe(streamEvent);
            switch (streamEvent)
            {
                case TextDeltaEvent { Text.Length: > 0 } text:
                    deltas.TryWrite(text.Text);
                    break;
                case RefusalDeltaEvent { Text.Length: > 0 } refusal:
                    // Answers carry one text; a refusal is the text the model gave instead of an answer.
                    deltas.TryWrite(refusal.Text);
                    break;
                case ErrorEvent error:
                    throw new ChatException(502, error.Error);
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
            LogUndelivered(_logger, requestId, topic, ex.Message);
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

    [LoggerMessage(Level = LogLevel.Error, Message = "Backend for {Model} failed on MQTT request {RequestId}")]
    private static partial void LogBackendFailed(ILogger logger, Exception ex, string requestId, string model);

    [LoggerMessage(Level = LogLevel.Error, Message = "MQTT request {RequestId} on {Topic} failed unexpectedly")]
    private static partial void LogRequestFailed(ILogger logger, Exception ex, string requestId, string topic);

    [LoggerMessage(Level = LogLevel.Error, Message = "Billing sink failed for MQTT request {RequestId}")]
    private static partial void LogBillingFailed(ILogger logger, Exception ex, string requestId);

    /// <summary>Keeps one answer's messages at least the minimum interval apart.</summary>
    private sealed class Pacer(TimeProvider time, TimeSpan interval)
    {
        private long _last;

        public void Sent() => _last = time.GetTimestamp();

        public async ValueTask WaitForTurnAsync(CancellationToken cancellationToken)
        {
            if (_last == 0 || interval <= TimeSpan.Zero)
            {
                return;
            }

            // Timers may fire a little early; loop until the full interval has passed.
            while (time.GetElapsedTime(_last) is var elapsed && elapsed < interval)
            {
                await Task.Delay(interval - elapsed + TimeSpan.FromMilliseconds(1), time, cancellationToken);
            }
        }
    }
}
