using System.Diagnostics;
using System.Text;

namespace Sluice.Mqtt.Tests;

/// <summary>
/// The broker goes away and comes back. Each test runs its own mosquitto so it can stop and restart it on the same
/// port. The broker persists sessions, and the test's client keeps a persistent session (clean session off, QoS 1),
/// the way a device that must not miss its final message would: messages published while it is reconnecting wait
/// for it instead of depending on who reconnects first.
/// </summary>
public sealed class BrokerRestartTests
{
    [Fact]
    public async Task After_a_broker_restart_mid_answer_the_answer_ends_with_an_error_and_the_next_request_is_served()
    {
        await using var broker = await MosquittoProcess.StartAsync(persistence: true);
        await using var harness = await BridgeHarness.StartAsync(
            o => o.MinIntervalMs = 50,
            broker.Address,
            persistentClient: true);

        // 1,000 tokens at 50 tokens/s: about 20 s of answer, plenty of time to pull the broker out from under it even
        // on a loaded machine (with 4 s, a slow broker stop once let the answer finish first).
        await harness.PublishAsync("""{"id": "long", "model": "sim-paced", "prompt": "Tell me a long story", "max_tokens": 1000}""");
        var first = await harness.ReadMessageAsync("long");
        Assert.Equal(1, first.Seq);
        Assert.NotNull(first.Content);

        await broker.StopAsync();
        await broker.StartAgainAsync();

        // The bridge comes back and publishes the interrupted answer's error (QoS 1) to the test client's session.
        var received = new List<Received> { first };
        Received final;
        while (true)
        {
            var message = await harness.ReadMessageAsync("long");
            received.Add(message);
            if (message.IsFinal)
            {
                final = message;
                break;
            }
        }

        var error = final.Error ?? throw new Xunit.Sdk.XunitException("The interrupted answer ended with done: " + Encoding.UTF8.GetString(final.Payload));
        Assert.Equal("answer_interrupted", error.GetProperty("code").GetString());
        Assert.Contains("Send the request again", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        // Chunks published while the broker was going down may be lost (QoS 0), but the numbering shows it:
        // seq only increases, and the error's seq is one past the last chunk the bridge sent.
        var seqs = received.Select(m => m.Seq).ToList();
        Assert.Equal(seqs.Order(), seqs);
        Assert.Equal(seqs.Count, seqs.Distinct().Count());
        Assert.True(final.Seq < 1000, $"the answer was not finished: error at seq {final.Seq}");

        // The bridge reconnected and renewed its subscription; the next request is answered in full.
        await WaitUntilAsync(() => harness.Bridge.Client.ConnectionCount >= 2);
        await harness.Client.WaitConnectedAsync().WaitAsync(BridgeHarness.Wait);
        await harness.PublishAsync("""{"id": "next", "model": "sim-fast", "prompt": "Are you back?", "max_tokens": 20}""");
        var next = await harness.ReadAnswerAsync("next");
        Assert.True(next.Final.IsDone, Encoding.UTF8.GetString(next.Final.Payload));
        Assert.Contains(harness.Logs.Lines, l => l.Contains("reconnected", StringComparison.Ordinal));

        var failed = Assert.Single(await harness.Usage.WaitForAsync(2), r => r.ErrorCode == "answer_interrupted");
        Assert.Equal(Sluice.Gateway.Accounting.UsageStatus.Failed, failed.Status);
    }

    [Fact]
    public async Task While_the_broker_is_down_the_bridge_keeps_retrying_and_serves_once_it_is_back()
    {
        await using var broker = await MosquittoProcess.StartAsync(persistence: false);
        await using var harness = await BridgeHarness.StartAsync(broker: broker.Address);

        await broker.StopAsync();
        await harness.Logs.WaitForAsync("connection to mqtt://127.0.0.1:" + broker.Port + " lost");

        // Down for a while: several reconnection attempts fail and are logged, none of them is fatal.
        await harness.Logs.WaitForAsync("not reachable");
        await broker.StartAgainAsync();

        await WaitUntilAsync(() => harness.Bridge.Client.ConnectionCount >= 2 && harness.Client.IsConnected);
        await harness.Client.WaitConnectedAsync().WaitAsync(BridgeHarness.Wait);
        await harness.PublishAsync("""{"id": "back", "model": "sim-fast", "prompt": "Hello again", "max_tokens": 15}""");
        Assert.True((await harness.ReadAnswerAsync("back")).Final.IsDone);
    }

    [Fact]
    public async Task A_qos0_answer_whose_connection_was_replaced_between_two_chunks_still_ends_with_an_error()
    {
        // Chunks 3 s apart: the bridge is back on a new connection before the answer's next chunk. What went out at
        // QoS 0 on the lost connection may be lost, so the answer must not go on to "done" as if nothing happened
        // (it did when only a failed publish counted as an interruption — a race a fast broker restart could win).
        await using var broker = await MosquittoProcess.StartAsync(persistence: true);
        await using var harness = await BridgeHarness.StartAsync(o => o.MinIntervalMs = 3_000, broker.Address, persistentClient: true);

        await harness.PublishAsync("""{"id": "gap", "model": "sim-paced", "prompt": "Tell me a long story", "max_tokens": 1000}""");
        var received = new List<Received> { await harness.ReadMessageAsync("gap") };
        await broker.StopAsync();
        await broker.StartAgainAsync();
        await WaitUntilAsync(() => harness.Bridge.Client.ConnectionCount >= 2);

        while (!received[^1].IsFinal)
        {
            received.Add(await harness.ReadMessageAsync("gap"));
        }

        var error = received[^1].Error ?? throw new Xunit.Sdk.XunitException("The answer ended with done: " + Encoding.UTF8.GetString(received[^1].Payload));
        Assert.Equal("answer_interrupted", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task With_qos1_chunks_an_answer_survives_a_broker_restart_complete_and_in_order()
    {
        await using var broker = await MosquittoProcess.StartAsync(persistence: true);
        await using var harness = await BridgeHarness.StartAsync(
            o =>
            {
                o.MinIntervalMs = 50;
                o.ChunkQos = 1;
            },
            broker.Address,
            persistentClient: true);
        const string Request = "\"model\": \"sim-paced\", \"prompt\": \"Tell me a long story\", \"seed\": 11, \"max_tokens\": 150";
        var (expected, _, _) = await harness.HttpAnswerAsync("{" + Request + "}");

        await harness.PublishAsync("{\"id\": \"kept\", " + Request + "}");
        var received = new List<Received> { await harness.ReadMessageAsync("kept") };
        await broker.StopAsync();
        await broker.StartAgainAsync();

        while (!received[^1].IsFinal)
        {
            received.Add(await harness.ReadMessageAsync("kept"));
        }

        // QoS 1 chunks wait for the broker and are sent again if unacknowledged, so a chunk may arrive twice
        // (at least once); seq lets the receiver drop the copies. Nothing is missing.
        Assert.True(received[^1].IsDone, Encoding.UTF8.GetString(received[^1].Payload));
        var unique = received.GroupBy(m => m.Seq).Select(g => g.First()).OrderBy(m => m.Seq).ToList();
        Assert.Equal(Enumerable.Range(1, unique.Count).Select(i => (long)i), unique.Select(m => m.Seq));
        Assert.Equal(expected, string.Concat(unique.SkipLast(1).Select(m => m.Content)));
        Assert.True(harness.Bridge.Client.ConnectionCount >= 2);
    }

    [Fact]
    public async Task Shutting_down_mid_answer_sends_an_error_instead_of_silence()
    {
        // 300 tokens at 50/s take 6 s: far past a half-second grace.
        await using var harness = await BridgeHarness.StartAsync(gateway: o => o.Streaming.ShutdownGraceSeconds = 0.5);
        await harness.PublishAsync("""{"id": "bye", "model": "sim-paced", "prompt": "A long one", "max_tokens": 300}""");
        await harness.ReadMessageAsync("bye");

        await harness.Gateway.App.StopAsync();
        Received final;
        do
        {
            final = await harness.ReadMessageAsync("bye");
        }
        while (!final.IsFinal);

        Assert.True(final.Error is not null, Encoding.UTF8.GetString(final.Payload));
        Assert.Equal("gateway_shutting_down", final.Error!.Value.GetProperty("code").GetString());
        Assert.Contains(harness.Usage.Records, r => r.ErrorCode == "gateway_shutting_down");
    }

    [Fact]
    public async Task Stopping_within_the_grace_lets_the_running_answer_finish()
    {
        await using var harness = await BridgeHarness.StartAsync(gateway: o => o.Streaming.ShutdownGraceSeconds = 10);
        await harness.PublishAsync("""{"id": "calm", "model": "sim-paced", "prompt": "A short one", "max_tokens": 40}""");
        await harness.ReadMessageAsync("calm");

        await harness.Gateway.App.StopAsync();
        Received final;
        do
        {
            final = await harness.ReadMessageAsync("calm");
        }
        while (!final.IsFinal);

        Assert.True(final.IsDone, Encoding.UTF8.GetString(final.Payload));
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(BridgeHarness.Wait.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException("Condition not met in time.");
            }

            await Task.Delay(20);
        }
    }
}
