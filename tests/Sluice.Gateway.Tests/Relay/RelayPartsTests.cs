using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Sluice.Gateway.Relay;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Providers.Timing;

namespace Sluice.Gateway.Tests.Relay;

/// <summary>The relay's named parts on their own: flush policy, outcome, keep-alive on a fake clock.</summary>
public sealed class RelayPartsTests
{
    [Fact]
    public void The_first_frame_and_the_first_token_are_flushed_at_once_then_only_when_too_much_is_pending()
    {
        var policy = new FlushPolicy(100);
        Assert.True(policy.AfterWrite(wroteFrame: true, hasFirstToken: false, pendingBytes: 5));
        Assert.True(policy.AfterWrite(wroteFrame: true, hasFirstToken: true, pendingBytes: 5));
        Assert.False(policy.AfterWrite(wroteFrame: true, hasFirstToken: true, pendingBytes: 99));
        Assert.True(policy.AfterWrite(wroteFrame: true, hasFirstToken: true, pendingBytes: 100));
        Assert.False(FlushPolicy.BeforeWait(started: false, pendingBytes: 10));
        Assert.False(FlushPolicy.BeforeWait(started: true, pendingBytes: 0));
        Assert.True(FlushPolicy.BeforeWait(started: true, pendingBytes: 1));
    }

    [Fact]
    public void Cancellation_is_abandonment_unless_the_sink_gives_a_reason_and_other_failures_keep_their_error()
    {
        Assert.Equal(StreamEnd.Abandoned, StreamOutcome.Classify(new OperationCanceledException(), cancelled: true, "r").End);
        Assert.Equal(StreamEnd.Abandoned, StreamOutcome.Classify(new IOException(), cancelled: true, "r").End);
        var reason = new ChatException(503, new ErrorInfo("stopping", ErrorTypes.Server));
        Assert.Same(reason, StreamOutcome.Classify(new OperationCanceledException(), cancelled: true, "r", reason).Error);

        // A cancellation exception while nothing was cancelled is a backend bug, not a client leaving.
        var (end, error) = StreamOutcome.Classify(new OperationCanceledException(), cancelled: false, "r");
        Assert.Equal((StreamEnd.Failed, "backend_error"), (end, error!.Error.Code));
        var chat = new ChatException(504, new ErrorInfo("slow", ErrorTypes.Timeout, null, "upstream_timeout"));
        Assert.Same(chat, StreamOutcome.Classify(chat, cancelled: false, "r").Error);
    }

    [Fact]
    public async Task Keep_alive_pings_after_the_interval_of_silence_only_while_the_relay_waits()
    {
        var time = new FakeTimeProvider();
        var pipe = new Pipe();
        var target = new PipePing(pipe.Writer);
        var keepAlive = new KeepAlive(target, TimeSpan.FromSeconds(15), new DeadlineSweep(time, TimeSpan.FromMilliseconds(20)));

        // The relay holds the gate: no ping, however long the silence.
        time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(0, target.Started);

        keepAlive.Release();
        time.Advance(TimeSpan.FromSeconds(14));
        Assert.Equal(0, target.Started);
        time.Advance(TimeSpan.FromSeconds(1));
        await keepAlive.AcquireAsync();
        Assert.Equal(1, target.Started);
        Assert.Equal(": ping\n\n", await ReadAvailableAsync(pipe.Reader));

        // Stopped: no ping ever again.
        await keepAlive.StopAsync();
        time.Advance(TimeSpan.FromMinutes(5));
        pipe.Writer.Complete();
        Assert.Equal(string.Empty, await ReadAvailableAsync(pipe.Reader));
    }

    private sealed class PipePing(PipeWriter writer) : IPingTarget
    {
        public int Started { get; private set; }

        public void StartResponse() => Started++;

        public void WritePing() => writer.Write(": ping\n\n"u8);

        public async ValueTask FlushForPingAsync() => await writer.FlushAsync();
    }

    private static async Task<string> ReadAvailableAsync(PipeReader reader)
    {
        var result = await reader.ReadAsync();
        var text = Encoding.UTF8.GetString(result.Buffer);
        reader.AdvanceTo(result.Buffer.End);
        return text;
    }
}
