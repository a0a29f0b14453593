using Sluice.Gateway.Accounting;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using Sluice.Providers;

namespace Sluice.Gateway.Tests.Relay;

/// <summary>The relay's steps, one behaviour per test, with a fed backend, a recording sink and a fake clock.</summary>
public sealed class StreamRelayTests
{
    [Fact]
    public async Task A_finished_answer_is_written_settled_before_its_end_and_reported_once_as_completed()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        var stage = new RecordingStage(sink);
        backend.Feed(new TextDeltaEvent("Rivers "));
        backend.Feed(new TextDeltaEvent("flow."));
        backend.Feed(new FinishEvent(FinishReasons.Stop));
        backend.Feed(new UsageEvent(new ChatUsage(7, 2)));
        backend.End();

        await kit.RunAsync(backend, sink, stage);

        Assert.Equal(["open", "text:Rivers ", "flush", "text:flow.", "finish:stop", "settle:Completed", "complete:7+2:stop", "dispose"], sink.Calls.Where(c => c is not ("idle" or "busy")));
        Assert.Equal(1, stage.Settled);
        var record = Assert.Single(kit.Usage.Records);
        Assert.Equal(UsageStatus.Completed, record.Status);
        Assert.False(record.Estimated);
        Assert.Equal((7, 2), (record.PromptTokens, record.CompletionTokens));
        Assert.True(backend.Disposed);
    }

    [Fact]
    public async Task When_the_backend_has_nothing_ready_what_is_written_is_sent_and_keep_alive_may_run_until_it_answers()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        var run = kit.RunAsync(backend, sink);

        backend.Feed(new TextDeltaEvent("a"));
        await WaitUntilAsync(() => sink.Calls.Count(c => c == "idle") == 2);
        Assert.Equal(["open", "idle", "busy", "text:a", "flush", "idle"], sink.Calls);

        backend.Feed(new TextDeltaEvent("b"));
        await WaitUntilAsync(() => sink.Calls.Count(c => c == "idle") == 3);

        // "b" was not the first token: it waits until the backend pauses, then goes out before the next wait.
        Assert.Equal(["busy", "text:b", "flush", "idle"], sink.Calls[^4..]);
        backend.End();
        await run;
    }

    [Fact]
    public async Task Too_much_pending_is_flushed_without_waiting_for_a_pause()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        for (var i = 0; i < 6; i++)
        {
            backend.Feed(new TextDeltaEvent("x"));
        }

        backend.End();
        await kit.RunAsync(backend, sink, maxPendingBytes: 25);

        // Each write adds 10 pending bytes: flushed at the first token, then every time 25 are reached.
        Assert.Equal(["text:x", "flush", "text:x", "text:x", "text:x", "flush", "text:x", "text:x"],
            sink.Calls.Where(c => c.StartsWith("text", StringComparison.Ordinal) || c == "flush"));
    }

    [Fact]
    public async Task An_error_event_after_the_first_token_fails_the_answer_with_a_502_frame_and_settles_it_as_failed()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        var stage = new RecordingStage(sink);
        backend.Feed(new TextDeltaEvent("Half"));
        backend.Feed(new ErrorEvent(new ErrorInfo("upstream broke", ErrorTypes.Upstream, null, "upstream_error")));
        backend.End();

        await kit.RunAsync(backend, sink, stage);

        Assert.Equal(["settle:Failed", "fail:502:upstream_error", "dispose"], sink.Calls[^3..]);
        var record = Assert.Single(kit.Usage.Records);
        Assert.Equal(UsageStatus.Failed, record.Status);
        Assert.Equal("upstream_error", record.ErrorCode);
        Assert.Equal(1, stage.Settled);
    }

    [Fact]
    public async Task A_refusal_before_the_first_event_reaches_the_sink_with_its_own_status()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        backend.Fail(new ChatException(429, new ErrorInfo("slow down", ErrorTypes.RateLimit, null, "rate_limit_exceeded")));

        await kit.RunAsync(backend, sink);

        Assert.Equal(429, sink.Failure!.StatusCode);
        Assert.False(sink.Started);
        Assert.Equal("rate_limit_exceeded", Assert.Single(kit.Usage.Records).ErrorCode);
    }

    [Fact]
    public async Task An_unexpected_exception_is_a_502_backend_error_naming_the_request_and_not_its_details()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        backend.Feed(new TextDeltaEvent("a"));
        backend.Fail(new InvalidOperationException("secret internals"));

        await kit.RunAsync(backend, sink);

        Assert.Equal(502, sink.Failure!.StatusCode);
        Assert.Equal("backend_error", sink.Failure.Error.Code);
        Assert.Contains("req-1", sink.Failure.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", sink.Failure.Error.Message, StringComparison.Ordinal);
        Assert.Equal("internal_error", Assert.Single(kit.Usage.Records).ErrorCode);
    }

    [Fact]
    public async Task A_cancelled_generation_is_abandoned_settled_and_the_backend_stream_disposed()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        var stage = new RecordingStage(sink);
        var run = kit.RunAsync(backend, sink, stage);
        backend.Feed(new TextDeltaEvent("a"));
        await WaitUntilAsync(() => sink.Calls.Contains("text:a"));

        sink.Cancel();
        await run;

        Assert.Equal(["settle:Abandoned", "abandon", "dispose"], sink.Calls[^3..]);
        Assert.Equal(UsageStatus.Abandoned, Assert.Single(kit.Usage.Records).Status);
        Assert.True(backend.Disposed);
    }

    [Fact]
    public async Task A_cancellation_the_sink_explains_fails_the_answer_with_that_error()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink { Reason = new ChatException(503, new ErrorInfo("shutting down", ErrorTypes.Server, null, "gateway_stopping")) };
        var run = kit.RunAsync(backend, sink);
        backend.Feed(new TextDeltaEvent("a"));
        await WaitUntilAsync(() => sink.Calls.Contains("text:a"));

        sink.Cancel();
        await run;

        Assert.Equal("fail:503:gateway_stopping", sink.Calls[^2]);
        var record = Assert.Single(kit.Usage.Records);
        Assert.Equal((UsageStatus.Failed, "gateway_stopping"), (record.Status, record.ErrorCode));
    }

    [Fact]
    public async Task Usage_events_are_metered_not_written_and_batches_are_disposed_after_writing()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink(batches: true);
        var batch = new OpenAIChunkBatch();
        batch.Add("""{"choices":[{"index":0,"delta":{"content":"hi"}}]}"""u8, null);
        backend.Feed(batch);
        backend.Feed(new UsageEvent(new ChatUsage(3, 1)));
        backend.End();

        await kit.RunAsync(backend, sink);

        Assert.True(backend.Options!.AcceptsChunkBatches);
        Assert.Contains("batch:1", sink.Calls);
        Assert.DoesNotContain(sink.Calls, c => c.Contains("Usage", StringComparison.Ordinal));
        Assert.Equal(0, batch.Count);
        Assert.Equal(1, Assert.Single(kit.Usage.Records).CompletionTokens);
    }

    [Fact]
    public async Task Time_to_first_token_and_duration_come_from_the_injected_clock()
    {
        var kit = new RelayKit();
        var backend = new FedBackend();
        var sink = new RecordingSink();
        var run = kit.RunAsync(backend, sink);

        kit.Time.Advance(TimeSpan.FromMilliseconds(250));
        backend.Feed(new TextDeltaEvent("first"));
        await WaitUntilAsync(() => sink.Calls.Contains("text:first"));
        kit.Time.Advance(TimeSpan.FromSeconds(2));
        backend.End();
        await run;

        var record = Assert.Single(kit.Usage.Records);
        Assert.Equal(TimeSpan.FromMilliseconds(250), record.TimeToFirstToken);
        Assert.Equal(TimeSpan.FromMilliseconds(2250), record.Duration);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!condition())
        {
            await Task.Delay(5, timeout.Token);
        }
    }
}
