using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Observability;
using Sluice.Gateway.Relay;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Tests.Relay;

/// <summary>A relay with a fake clock, a recording usage sink and a call, for unit tests of the relay's steps.</summary>
internal sealed class RelayKit
{
    public RelayKit()
    {
        var meters = new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var telemetry = new CallTelemetry(new GatewayMetrics(meters), new GatewayOptions(), NullLoggerFactory.Instance, Time);
        Relay = new StreamRelay(new UsageReporter([Usage], NullLogger<UsageReporter>.Instance), telemetry, Time, NullLogger<StreamRelay>.Instance, new Sluice.Gateway.Cluster.GatewayDrain(new GatewayOptions(), NullLogger<Sluice.Gateway.Cluster.GatewayDrain>.Instance));
        Call = new ChatCall("req-1", Time.GetTimestamp(), Caller.Open, CallDialect.OpenAI, CancellationToken.None)
        {
            Request = new ChatRequest { Model = "m", Messages = [new ChatMessage(ChatRoles.User, "Tell me about rivers")], Stream = true },
        };
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 5, 0, 0, 0, TimeSpan.Zero));

    public RecordingUsageSink Usage { get; } = new();

    public StreamRelay Relay { get; }

    public ChatCall Call { get; }

    public Task RunAsync(IChatBackend backend, RecordingSink sink, CallStage? stage = null, long maxPendingBytes = 1024) =>
        Relay.RunAsync(Call, backend, sink, stage, maxPendingBytes);
}

/// <summary>A backend whose events are fed by the test, one at a time, so the relay sees them "not ready" too.</summary>
internal sealed class FedBackend : IChatBackend
{
    private readonly Channel<Func<ChatStreamEvent>> _events = Channel.CreateUnbounded<Func<ChatStreamEvent>>();

    public ChatCallOptions? Options { get; private set; }

    public bool Disposed { get; private set; }

    public void Feed(ChatStreamEvent streamEvent) => _events.Writer.TryWrite(() => streamEvent);

    public void Fail(Exception exception) => _events.Writer.TryWrite(() => throw exception);

    public void End() => _events.Writer.TryComplete();

    public async IAsyncEnumerable<ChatStreamEvent> StreamAsync(ChatRequest request, ChatCallOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Options = options;
        try
        {
            await foreach (var next in _events.Reader.ReadAllAsync(cancellationToken))
            {
                yield return next();
            }
        }
        finally
        {
            Disposed = true;
        }
    }
}

/// <summary>Records every call the relay makes, in order.</summary>
internal sealed class RecordingSink(bool batches = false) : IAnswerSink
{
    private readonly CancellationTokenSource _generation = new();

    public List<string> Calls { get; } = [];

    public long Pending { get; set; }

    public ChatException? Reason { get; set; }

    public ChatException? Failure { get; private set; }

    public CancellationToken Generation => _generation.Token;

    public ChatException? CancellationReason => Reason;

    public bool AcceptsChunkBatches => batches;

    public bool Started { get; private set; }

    public long PendingBytes => Pending;

    public void Cancel() => _generation.Cancel();

    public void Open(UsageMeter meter) => Calls.Add("open");

    public ValueTask<bool> WriteAsync(ChatStreamEvent streamEvent)
    {
        Started = true;
        Calls.Add(streamEvent switch
        {
            TextDeltaEvent text => "text:" + text.Text,
            FinishEvent finish => "finish:" + finish.Reason,
            OpenAIChunkBatch batch => "batch:" + batch.Count,
            _ => streamEvent.GetType().Name,
        });
        Pending += 10;
        return ValueTask.FromResult(streamEvent is not FinishEvent);
    }

    public ValueTask FlushAsync()
    {
        Calls.Add("flush");
        Pending = 0;
        return ValueTask.CompletedTask;
    }

    public void Idle() => Calls.Add("idle");

    public ValueTask BusyAsync()
    {
        Calls.Add("busy");
        return ValueTask.CompletedTask;
    }

    public ValueTask CompleteAsync(ChatUsage usage, string? finishReason)
    {
        Calls.Add($"complete:{usage.PromptTokens}+{usage.CompletionTokens}:{finishReason}");
        return ValueTask.CompletedTask;
    }

    public ValueTask FailAsync(ChatException error)
    {
        Failure = error;
        Calls.Add($"fail:{error.StatusCode}:{error.Error.Code}");
        return ValueTask.CompletedTask;
    }

    public ValueTask AbandonAsync()
    {
        Calls.Add("abandon");
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        Calls.Add("dispose");
        _generation.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A stage that records when it is settled (into the sink's call list, so the order is visible).</summary>
internal sealed class RecordingStage(RecordingSink sink) : CallStage
{
    public int Settled { get; private set; }

    public override ValueTask SettleAsync(ChatCall call, UsageStatus status, ChatUsage usage)
    {
        Settled++;
        sink.Calls.Add("settle:" + status);
        return ValueTask.CompletedTask;
    }
}
