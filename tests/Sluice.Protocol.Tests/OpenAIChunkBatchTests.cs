using System.Buffers;
using System.Text;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Protocol.Tests;

/// <summary><see cref="OpenAIChunkBatch"/>, its writer, and <see cref="OpenAIDeltaShape"/>.</summary>
public sealed class OpenAIChunkBatchTests
{
    private const string Prefix = "{\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"";
    private const string Suffix = "\"},\"logprobs\":null,\"finish_reason\":null}]}";

    private static byte[] Delta(string body) => Encoding.UTF8.GetBytes(Prefix + body + Suffix);

    [Fact]
    public void Holds_chunks_side_by_side_with_their_decoded_events_and_counts_the_undecoded_ones()
    {
        using var batch = new OpenAIChunkBatch();
        ChatStreamEvent[] meaning = [new FinishEvent("stop")];
        var identity = new OpenAIChunkIdentity("id", 1, "m", null);
        batch.Add("{\"x\":1}"u8, null);
        batch.Add("{\"a\":1}"u8, meaning, identity);
        batch.Add("{\"y\":2}"u8, null, estimatedTokens: 3);

        Assert.Equal(3, batch.Count);
        Assert.Equal(21, batch.ByteCount);
        Assert.Equal(4, batch.EstimatedTokens);
        Assert.True(batch.HasUndecoded);
        Assert.Equal("{\"y\":2}", Encoding.UTF8.GetString(batch.JsonAt(2)));
        Assert.Null(batch.EventsAt(0));
        Assert.Null(batch.IdentityAt(0));
        Assert.Same(meaning, batch.EventsAt(1));
        Assert.Same(identity, batch.IdentityAt(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.EventsAt(3));

        // A decoded chunk taken out on its own: its bytes copied out of the shared buffer, its meaning as decoded.
        var chunk = batch.ChunkAt(1);
        Assert.Equal("{\"a\":1}", Encoding.UTF8.GetString(chunk.Json.Span));
        Assert.True(chunk.IsDecoded);
        Assert.Same(meaning, chunk.Events);
        Assert.Same(identity, chunk.Identity);
    }

    [Fact]
    public void Grows_past_its_first_buffer_and_chunks_taken_out_outlive_it()
    {
        var batch = new OpenAIChunkBatch();
        var chunks = Enumerable.Range(0, 300).Select(i => Delta("token " + i)).ToList();
        foreach (var chunk in chunks)
        {
            batch.Add(chunk, null);
        }

        Assert.True(batch.ByteCount > 16 * 1024);
        Assert.Equal(300, batch.Count);
        Assert.Equal(300, batch.EstimatedTokens);
        for (var i = 0; i < chunks.Count; i++)
        {
            Assert.Equal(chunks[i], batch.JsonAt(i).ToArray());
        }

        var kept = batch.ChunkAt(299);
        batch.Dispose();

        Assert.Equal(0, batch.Count);
        Assert.Equal(chunks[299], kept.Json.ToArray());
        Assert.Equal(" token 299"[1..], ((TextDeltaEvent)kept.Events.Single()).Text);
        Assert.Throws<ObjectDisposedException>(() => batch.Add("{}"u8, null));
    }

    [Fact]
    public void Only_a_disposed_batch_reopens_and_then_it_is_empty_and_usable_again()
    {
        var batch = new OpenAIChunkBatch();
        batch.Add(Delta("first"), null, estimatedTokens: 2);
        batch.Add("{\"a\":1}"u8, [new FinishEvent("stop")]);

        // In use: reopening changes nothing.
        Assert.False(batch.TryReopen());
        Assert.Equal(2, batch.Count);
        Assert.Equal(2, batch.EstimatedTokens);

        batch.Dispose();
        batch.Dispose();
        Assert.True(batch.TryReopen());
        Assert.False(batch.TryReopen());

        Assert.Equal(0, batch.Count);
        Assert.Equal(0, batch.ByteCount);
        Assert.Equal(0, batch.EstimatedTokens);
        Assert.False(batch.HasUndecoded);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.EventsAt(0));

        var chunks = Enumerable.Range(0, 200).Select(i => Delta("again " + i)).ToList();
        foreach (var chunk in chunks)
        {
            batch.Add(chunk, null);
        }

        Assert.Equal(200, batch.Count);
        Assert.Equal(200, batch.EstimatedTokens);
        Assert.True(batch.HasUndecoded);
        Assert.Equal(chunks[199], batch.JsonAt(199).ToArray());
        Assert.Null(batch.EventsAt(1));
        batch.Dispose();
    }

    [Theory]
    [InlineData("openai/text-a.sse")]
    [InlineData("openai/tool-calls-parallel.sse")]
    [InlineData("openai/refusal-logprobs.sse")]
    public void Writing_a_batch_gives_the_same_bytes_as_writing_its_chunks_one_by_one(string fixture)
    {
        var events = new List<SseEvent>();
        var parser = new SseParser();
        parser.Feed(Fixtures.Read(fixture), events);
        parser.Complete(events);
        var payloads = events.Where(e => !e.IsDone).Select(e => e.Data.ToArray()).ToList();
        var identity = new OpenAIChunkIdentity("chatcmpl-up", 42, "up-model", "fp");

        var single = new ArrayBufferWriter<byte>();
        var singleWriter = new OpenAIChunkWriter("chatcmpl-own", 1, "own");
        using var batch = new OpenAIChunkBatch();
        var id = 1L;
        foreach (var payload in payloads)
        {
            var chunk = id == 1 ? new OpenAIChunkEvent(payload, [], identity) : new OpenAIChunkEvent(payload, null);
            Assert.True(singleWriter.WriteEvent(single, id++, chunk));
            batch.Add(payload, chunk.IsDecoded ? chunk.Events : null, chunk.Identity);
        }

        singleWriter.WriteUsage(single, id, new ChatUsage(1, 2));

        var batched = new ArrayBufferWriter<byte>();
        var batchWriter = new OpenAIChunkWriter("chatcmpl-own", 1, "own");
        Assert.Equal(payloads.Count, batchWriter.WriteBatch(batched, 1, batch));
        batchWriter.WriteUsage(batched, id, new ChatUsage(1, 2));

        Assert.Equal(Encoding.UTF8.GetString(single.WrittenSpan), Encoding.UTF8.GetString(batched.WrittenSpan));

        // The usage chunk the gateway adds carries the upstream identity adopted from the batch.
        var text = Encoding.UTF8.GetString(batched.WrittenSpan);
        Assert.StartsWith("data: {\"id\":\"chatcmpl-up\"", text[text.LastIndexOf("data: ", StringComparison.Ordinal)..], StringComparison.Ordinal);
    }

    [Fact]
    public void Single_line_frames_are_written_exactly_as_before()
    {
        var fast = new ArrayBufferWriter<byte>();
        SseWriter.WriteEvent(fast, 12345678901, "{\"a\":\"b\"}"u8);
        SseWriter.WriteEvent(fast, -1, "x"u8);
        SseWriter.WriteEvent(fast, 0, ""u8);
        SseWriter.WriteEvent(fast, 7, "two\nlines"u8);

        Assert.Equal("id: 12345678901\ndata: {\"a\":\"b\"}\n\ndata: x\n\nid: 0\ndata: \n\nid: 7\ndata: two\ndata: lines\n\n", Encoding.UTF8.GetString(fast.WrittenSpan));
    }

    [Theory]
    [InlineData(" world", true)]
    [InlineData("", true)]
    [InlineData("caf\u00e9 \u6f22\u5b57 \U0001F600", true)]
    [InlineData("esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00", true)]
    [InlineData("\\\"finish_reason\\\":\\\"stop\\\"", true)]
    [InlineData("unescaped \" quote", false)]
    [InlineData("x\"},\"finish_reason\":\"stop\",\"y\":{\"z\":\"", false)]
    [InlineData("bad escape \\x", false)]
    [InlineData("short unicode \\u12", false)]
    [InlineData("bad hex \\u12G4", false)]
    [InlineData("trailing backslash \\", false)]
    [InlineData("control \u0001 char", false)]
    [InlineData("raw\nnewline", false)]
    public void A_learned_shape_accepts_exactly_the_chunks_a_full_check_accepts_as_plain(string body, bool expected)
    {
        using var shape = new OpenAIDeltaShape();
        var learned = Delta("first");
        Assert.False(OpenAIChunkScanner.NeedsDecode(learned));
        Assert.True(shape.Learn(learned));

        var json = Delta(body);
        Assert.Equal(expected, shape.Matches(json));
        Assert.Equal(expected, OpenAIChunkScanner.IsWellFormedObject(json) && !OpenAIChunkScanner.NeedsDecode(json));
    }

    [Fact]
    public void Invalid_utf8_in_the_text_does_not_match()
    {
        using var shape = new OpenAIDeltaShape();
        shape.Learn(Delta("first"));
        byte[] json = [.. Encoding.UTF8.GetBytes(Prefix), 0xC3, 0x28, .. Encoding.UTF8.GetBytes(Suffix)];

        Assert.False(shape.Matches(json));
    }

    [Theory]
    [InlineData("""{"id":"chatcmpl-s","object":"chat.completion.chunk","created":2,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}]}""")]
    [InlineData("""{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":"stop"}]}""")]
    [InlineData("""{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}]}, """)]
    [InlineData("""{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"}""")]
    [InlineData("""{"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":1}}""")]
    public void Chunks_that_differ_outside_the_text_do_not_match(string json)
    {
        using var shape = new OpenAIDeltaShape();
        shape.Learn(Delta("first"));

        Assert.False(shape.Matches(Encoding.UTF8.GetBytes(json)));
    }

    [Fact]
    public void Learns_only_chunks_with_a_content_string_and_gives_up_on_shapes_that_never_repeat()
    {
        using var shape = new OpenAIDeltaShape();
        Assert.False(shape.Learn("""{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[]},"finish_reason":null}]}"""u8));
        Assert.False(shape.IsKnown);
        Assert.False(shape.Matches(Delta("x")));

        // Every chunk has its own padding (like a random per-chunk field): after a few shapes no chunk matched, stop learning.
        for (var i = 0; i < 8; i++)
        {
            Assert.True(shape.Learn(Encoding.UTF8.GetBytes(Prefix + "t" + Suffix[..^2] + ",\"pad\":\"" + new string('p', i) + "\"}]}")));
        }

        Assert.False(shape.Learn(Delta("next")));
        Assert.False(shape.IsKnown);

        // A shape that keeps matching keeps being used.
        using var steady = new OpenAIDeltaShape();
        Assert.True(steady.Learn(Delta("a")));
        for (var i = 0; i < 20; i++)
        {
            Assert.True(steady.Matches(Delta("token " + i)));
        }
    }

    /// <summary>
    /// The learned bytes live in a pooled buffer: a longer shape learned later replaces a shorter one whole (no bytes of
    /// the old one left behind, a shorter one reuses the buffer), and a disposed shape matches nothing.
    /// </summary>
    [Fact]
    public void A_relearned_shape_replaces_the_old_one_and_a_disposed_shape_matches_nothing()
    {
        var shape = new OpenAIDeltaShape();
        Assert.True(shape.Learn(Delta("a")));
        var longer = Encoding.UTF8.GetBytes(Prefix.Replace("chatcmpl-", "chatcmpl-a-much-longer-stream-identifier-that-outgrows-the-first-buffer-", StringComparison.Ordinal) + "b" + Suffix);
        var longerWith = (string text) => Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(longer).Replace("\"content\":\"b\"", $"\"content\":\"{text}\"", StringComparison.Ordinal));
        Assert.True(shape.Learn(longer));
        Assert.True(shape.Matches(longerWith("next words")));
        Assert.False(shape.Matches(Delta("next words")));
        Assert.True(shape.Learn(Delta("short again")));
        Assert.True(shape.Matches(Delta("other")));
        Assert.False(shape.Matches(longerWith("other")));

        shape.Dispose();
        Assert.False(shape.IsKnown);
        Assert.False(shape.Matches(Delta("other")));
        shape.Dispose();
    }

    [Fact]
    public void Random_texts_match_exactly_when_the_full_check_passes()
    {
        var random = new Random(1234);
        const string Alphabet = "ab \"\\/unrt0F\u0001é漢";
        using var shape = new OpenAIDeltaShape();
        shape.Learn(Delta("seed"));
        for (var n = 0; n < 2000; n++)
        {
            var length = random.Next(0, 12);
            var body = new string([.. Enumerable.Range(0, length).Select(_ => Alphabet[random.Next(Alphabet.Length)])]);
            var json = Delta(body);
            var full = OpenAIChunkScanner.IsWellFormedObject(json) && !OpenAIChunkScanner.NeedsDecode(json);
            Assert.True(full == shape.Matches(json), $"text <{body}>: full check {full}");
        }
    }
}
