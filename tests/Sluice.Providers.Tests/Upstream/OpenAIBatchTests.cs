using System.Text;
using Microsoft.AspNetCore.Http;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>
/// The OpenAI adapter's batches (<see cref="ChatCallOptions.AcceptsChunkBatches"/>): all the chunks of one upstream read as
/// one <see cref="OpenAIChunkBatch"/>, carrying exactly what the per-chunk events carry.
/// </summary>
public sealed class OpenAIBatchTests
{
    private const string Head = "data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":";

    private static string Content(string text) => Head + "{\"content\":\"" + text + "\"},\"finish_reason\":null}]}\n\n";

    private static string Role => Head + "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";

    private static string Finish => Head + "{},\"finish_reason\":\"stop\"}]}\n\n";

    private static string Usage => "data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\n";

    public static TheoryData<string, ReplayChunking> Recordings()
    {
        var data = new TheoryData<string, ReplayChunking>();
        foreach (var file in Directory.GetFiles(Path.Combine(Fixtures.Directory, "openai"), "*.sse").Order(StringComparer.Ordinal))
        {
            foreach (var chunking in new[] { ReplayChunking.Whole, ReplayChunking.PerEvent, ReplayChunking.SmallSlices })
            {
                data.Add("openai/" + Path.GetFileName(file), chunking);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Recordings))]
    public async Task Batches_carry_the_same_chunks_bytes_and_decoded_events_as_single_chunk_events(string fixture, ReplayChunking chunking)
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", fixture, chunking);
        var single = await rig.CollectAsync();
        var batched = await CollectAsync(rig.Backend, batches: true);

        Assert.DoesNotContain(single, e => e is OpenAIChunkBatch);
        Assert.Contains(batched, e => e is OpenAIChunkBatch);
        var expected = Describe(single);
        var actual = Describe(Flatten(batched));
        Assert.Equal(expected, actual);
    }

    [Fact]
    public async Task Many_chunks_in_one_read_are_one_batch_after_the_role_and_first_token_which_go_on_together_at_once()
    {
        var body = Role + string.Concat(Enumerable.Range(0, 20).Select(i => Content("t" + i))) + Finish + Usage + "data: [DONE]\n\n";
        await using var rig = await UpstreamRig.StartAsync("openai", await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(body), chunking: ReplayChunking.Whole));

        var events = await CollectAsync(rig.Backend, batches: true);

        var batches = events.OfType<OpenAIChunkBatch>().ToList();
        Assert.True(batches.Count >= 2, $"{batches.Count} batches");

        // The role chunk waits for the first token only because its chunk was already here: one event (one send), and
        // the first token does not wait for the 19 chunks behind it.
        Assert.Equal(2, batches[0].Count);
        Assert.Contains("\"t0\"", Encoding.UTF8.GetString(batches[0].JsonAt(1)), StringComparison.Ordinal);
        Assert.Equal(1, batches[0].EstimatedTokens);
        Assert.Equal(22, batches.Sum(b => b.Count));

        // One read held everything else: far fewer events than chunks.
        Assert.True(batches.Count < 8, $"{batches.Count} batches for 22 chunks in one read");

        // The role chunk (first of the stream) and the finish chunk were decoded; the plain deltas were only counted.
        Assert.NotNull(batches[0].EventsAt(0));
        var identity = batches[0].IdentityAt(0);
        Assert.NotNull(identity);
        Assert.Equal("chatcmpl-b", identity.Id);
        var last = batches[^1];
        var finish = last.EventsAt(last.Count - 1);
        Assert.NotNull(finish);
        Assert.Contains(finish, e => e is FinishEvent { Reason: "stop" });
        Assert.Null(last.IdentityAt(last.Count - 1));
        Assert.Equal(20, batches.Sum(b => b.EstimatedTokens));

        // The upstream's usage chunk is not a frame to forward: it follows the batches as a UsageEvent.
        var usage = Assert.IsType<UsageEvent>(events[^1]);
        Assert.Equal(5, usage.Usage.CompletionTokens);
    }

    [Fact]
    public async Task A_role_chunk_that_arrives_alone_goes_on_without_waiting_for_the_first_token()
    {
        var roleSeen = new SemaphoreSlim(0);
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await ReplayUpstream.WriteFlushedAsync(context, Role);

            // The model is still thinking: nothing more comes until the role chunk has gone on.
            if (!await roleSeen.WaitAsync(TimeSpan.FromSeconds(10), context.RequestAborted))
            {
                return;
            }

            await ReplayUpstream.WriteFlushedAsync(context, Content("a") + Finish + "data: [DONE]\n\n");
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var counts = new List<int>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), ChatCallOptions.ChunkBatches, timeout.Token))
        {
            if (e is OpenAIChunkBatch batch)
            {
                counts.Add(batch.Count);
                batch.Dispose();
                roleSeen.Release();
            }
        }

        Assert.Equal(1, counts[0]);
        Assert.Equal(3, counts.Sum());
    }

    [Fact]
    public async Task A_chunk_split_across_reads_is_joined_and_a_read_ending_mid_frame_holds_nothing_back()
    {
        var sent = new SemaphoreSlim(0);
        var seen = new SemaphoreSlim(0);
        var chunk = Content("split-me");
        var cut = chunk.Length / 2;
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            await ReplayUpstream.WriteFlushedAsync(context, Role + Content("a"));

            // A read that ends mid-frame: the complete chunk before the cut must go on at once.
            await ReplayUpstream.WriteFlushedAsync(context, Content("b") + chunk[..cut]);
            if (!await seen.WaitAsync(TimeSpan.FromSeconds(10), context.RequestAborted))
            {
                return;
            }

            await ReplayUpstream.WriteFlushedAsync(context, chunk[cut..] + Finish + "data: [DONE]\n\n");
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var texts = new List<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), ChatCallOptions.ChunkBatches, timeout.Token))
        {
            if (e is not OpenAIChunkBatch batch)
            {
                continue;
            }

            for (var i = 0; i < batch.Count; i++)
            {
                texts.Add(Encoding.UTF8.GetString(batch.JsonAt(i)));
            }

            batch.Dispose();
            if (texts.Count == 3)
            {
                // "b" arrived without waiting for the rest of the split chunk.
                seen.Release();
            }
        }

        Assert.Equal(5, texts.Count);
        Assert.Contains("\"b\"", texts[2], StringComparison.Ordinal);
        Assert.Equal(chunk["data: ".Length..^2], texts[3]);
        Assert.Contains("\"stop\"", texts[4], StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_error_frame_after_chunks_in_the_same_read_comes_after_their_batch()
    {
        var body = Role + Content("a") + Content("b") + Content("c") + "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
        await using var rig = await UpstreamRig.StartAsync("openai", await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(body), chunking: ReplayChunking.Whole));

        var events = await CollectAsync(rig.Backend, batches: true);

        Assert.Equal(4, events.OfType<OpenAIChunkBatch>().Sum(b => b.Count));
        var error = Assert.IsType<ErrorEvent>(events[^1]);
        Assert.Contains("overloaded", error.Error.Message, StringComparison.Ordinal);
        Assert.IsType<OpenAIChunkBatch>(events[^2]);
    }

    [Fact]
    public async Task A_malformed_chunk_after_good_ones_in_the_same_read_fails_after_their_batch()
    {
        var body = Role + Content("a") + Content("b") + Content("c") + "data: {\"id\":\"chatcmpl-b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}\n\n";
        await using var rig = await UpstreamRig.StartAsync("openai", await ReplayUpstream.StartAsync(Encoding.UTF8.GetBytes(body), chunking: ReplayChunking.Whole));

        var events = new List<ChatStreamEvent>();
        var ex = await Assert.ThrowsAsync<ChatException>(async () =>
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), ChatCallOptions.ChunkBatches, timeout.Token))
            {
                events.Add(e);
            }
        });

        Assert.Equal(502, ex.StatusCode);
        Assert.Equal(4, events.OfType<OpenAIChunkBatch>().Sum(b => b.Count));
    }

    [Fact]
    public async Task Several_choices_are_batched_with_every_chunk_decoded()
    {
        await using var rig = await UpstreamRig.ReplayAsync("openai", "openai/three-choices.sse", ReplayChunking.Whole);
        var request = UpstreamKit.Request("""{"model":"test-model","messages":[{"role":"user","content":"Hello"}],"stream":true,"n":3}""");
        var single = await UpstreamKit.CollectAsync(rig.Backend, request);
        var batched = await UpstreamKit.CollectAsync(rig.Backend, request, ChatCallOptions.ChunkBatches);

        var batches = batched.OfType<OpenAIChunkBatch>().ToList();
        Assert.All(batches, b => Assert.All(Enumerable.Range(0, b.Count), i => Assert.NotNull(b.EventsAt(i))));
        Assert.Equal(0, batches.Sum(b => b.EstimatedTokens));
        Assert.Equal(Describe(single), Describe(Flatten(batched)));
    }

    [Fact]
    public async Task A_consumer_that_disposes_each_batch_gets_the_same_object_back_with_the_next_reads_chunks()
    {
        // One chunk per read, like a paced upstream: every read is a batch of its own.
        string[] frames = [Role, .. Enumerable.Range(0, 12).Select(i => Content("t" + i)), Finish, Usage, "data: [DONE]\n\n"];
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            context.Response.ContentType = "text/event-stream";
            foreach (var frame in frames)
            {
                await ReplayUpstream.WriteFlushedAsync(context, frame);
                await Task.Delay(20, context.RequestAborted);
            }
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        var objects = new List<OpenAIChunkBatch>();
        var texts = new List<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var e in rig.Backend.StreamAsync(UpstreamKit.Request(UpstreamKit.SimpleRequest), ChatCallOptions.ChunkBatches, timeout.Token))
        {
            if (e is not OpenAIChunkBatch batch)
            {
                continue;
            }

            // What a relay does: read it, write it, dispose it before asking for the next event.
            objects.Add(batch);
            for (var i = 0; i < batch.Count; i++)
            {
                texts.Add(Encoding.UTF8.GetString(batch.JsonAt(i)));
            }

            batch.Dispose();
        }

        // Every chunk arrived once, in order, although the batches shared one object.
        var expected = frames[..^2].Select(frame => frame["data: ".Length..^2]).ToList();
        Assert.Equal(expected, texts);
        Assert.True(objects.Count >= 10, $"{objects.Count} batches");
        Assert.True(objects.Distinct().Count() <= 2, $"{objects.Distinct().Count()} batch objects for {objects.Count} batches");
    }

    private static Task<List<ChatStreamEvent>> CollectAsync(IChatBackend backend, bool batches)
    {
        var request = UpstreamKit.Request(UpstreamKit.SimpleRequest);
        return UpstreamKit.CollectAsync(backend, request, batches ? ChatCallOptions.ChunkBatches : ChatCallOptions.Default);
    }

    /// <summary>Batches unpacked into the events a consumer handling one chunk at a time would get.</summary>
    private static List<ChatStreamEvent> Flatten(IEnumerable<ChatStreamEvent> events)
    {
        var flat = new List<ChatStreamEvent>();
        foreach (var e in events)
        {
            if (e is OpenAIChunkBatch batch)
            {
                for (var i = 0; i < batch.Count; i++)
                {
                    flat.Add(batch.ChunkAt(i));
                }
            }
            else
            {
                flat.Add(e);
            }
        }

        return flat;
    }

    /// <summary>Everything observable about a chunk stream: bytes, decode state, identity, decoded events, usage.</summary>
    private static List<string> Describe(IEnumerable<ChatStreamEvent> events) =>
    [
        .. events.Select(e => e switch
        {
            OpenAIChunkEvent chunk => string.Join(
                " | ",
                Encoding.UTF8.GetString(chunk.Json.Span),
                chunk.IsDecoded,
                chunk.Identity?.ToString() ?? "-",
                chunk.EstimatedTokens,
                string.Join(",", chunk.Events.Select(Name))),
            UsageEvent usage => $"usage {usage.Usage.PromptTokens}+{usage.Usage.CompletionTokens}",
            _ => Name(e),
        }),
    ];

    private static string Name(ChatStreamEvent e) => e switch
    {
        TextDeltaEvent text => $"text[{text.ChoiceIndex}]:{text.Text}",
        RefusalDeltaEvent refusal => $"refusal[{refusal.ChoiceIndex}]:{refusal.Text}",
        ToolCallDeltaEvent tool => $"tool[{tool.ChoiceIndex}.{tool.ToolIndex}]:{tool.Id}/{tool.Name}/{tool.ArgumentsFragment}",
        FinishEvent finish => $"finish[{finish.ChoiceIndex}]:{finish.Reason}",
        UsageEvent usage => $"usage:{usage.Usage.PromptTokens}+{usage.Usage.CompletionTokens}",
        _ => e.GetType().Name,
    };

}
