using System.Text;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Protocol.Tests;

public sealed class OpenAIChunkScannerTests
{
    [Theory]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]}""", false)]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}""", false)]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}""", true)]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{}, "finish_reason" : "length"}]}""", true)]
    [InlineData("""{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}""", true)]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage": {"prompt_tokens":1}}""", true)]
    [InlineData("""{"error":{"message":"boom","type":"server_error"}}""", true)]
    [InlineData("""{"id":"x","object":"chat.completion.chunk"}""", true)]
    [InlineData("""{"id":"x","choices":[{"index":0,"delta":{"content":"say \"finish_reason\":\"stop\" and \"usage\":{}"},"finish_reason":null}]}""", false)]
    public void Decides_which_chunks_need_a_full_decode(string json, bool expected) =>
        Assert.Equal(expected, OpenAIChunkScanner.NeedsDecode(Encoding.UTF8.GetBytes(json)));

    [Theory]
    [InlineData("""{"a":1}""", true)]
    [InlineData("""{"choices":[{"delta":{"content":"x"}}]}""", true)]
    [InlineData("""{"choices":[{"delta":{"content":"x""", false)]
    [InlineData("""{"a":1}{"b":2}""", false)]
    [InlineData("""[1,2]""", false)]
    [InlineData("", false)]
    public void Checks_well_formedness_without_decoding(string json, bool expected) =>
        Assert.Equal(expected, OpenAIChunkScanner.IsWellFormedObject(Encoding.UTF8.GetBytes(json)));

    [Theory]
    [InlineData("openai/text-a.sse")]
    [InlineData("openai/tool-calls-parallel.sse")]
    [InlineData("openai/refusal-logprobs.sse")]
    [InlineData("openai/three-choices.sse")]
    public void Lazy_decoding_of_recorded_chunks_equals_eager_decoding(string fixture)
    {
        var events = new List<SseEvent>();
        var parser = new SseParser();
        parser.Feed(Fixtures.Read(fixture), events);
        parser.Complete(events);
        var lazyAnswer = new ChatCompletionAccumulator();
        var eagerAnswer = new ChatCompletionAccumulator();
        foreach (var e in events.Where(e => !e.IsDone))
        {
            var eager = new List<ChatStreamEvent>();
            var info = OpenAIChunkDecoder.Decode(e.Data.Span, eager);
            if (info.Usage is { } usage)
            {
                eager.Add(new UsageEvent(usage));
            }

            var lazy = new OpenAIChunkEvent(e.Data, null);
            Assert.False(lazy.IsDecoded);
            Assert.Equal(eager.Count, lazy.Events.Count);
            Assert.True(lazy.IsDecoded);
            lazyAnswer.Add(lazy);
            eager.ForEach(eagerAnswer.Add);
        }

        Assert.Equal(
            eagerAnswer.Choices.Select(c => (c.Content, c.FinishReason, string.Join("|", c.ToolCalls))),
            lazyAnswer.Choices.Select(c => (c.Content, c.FinishReason, string.Join("|", c.ToolCalls))));
        Assert.Equal(eagerAnswer.Usage, lazyAnswer.Usage);
    }
}
