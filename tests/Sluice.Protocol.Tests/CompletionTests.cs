using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Completions;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;

namespace Sluice.Protocol.Tests;

/// <summary>Legacy <c>/v1/completions</c>: the request parser, the <c>text_completion</c> chunk decoder and the writers.</summary>
public sealed class CompletionTests
{
    private static Chat.ChatRequest Parse(string json) => CompletionRequestParser.Parse(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void A_text_prompt_becomes_one_user_message_with_completions_defaults()
    {
        var request = Parse("""{"model": "m", "prompt": "Once upon a time", "suffix": " The end.", "echo": true, "logprobs": 2, "stream": true, "stream_options": {"include_usage": true}, "stop": "\n", "logit_bias": {"50256": -100}}""");

        Assert.Equal("Once upon a time", Assert.Single(request.Messages).Content);
        Assert.Equal(CompletionRequestParser.DefaultMaxTokens, request.MaxTokens);
        Assert.True(request.Stream);
        Assert.True(request.IncludeUsage);
        Assert.True(request.Logprobs);
        Assert.Equal(2, request.TopLogprobs);
        Assert.Equal(["\n"], request.Stop);
        var completion = request.Completion!;
        Assert.Equal((" The end.", true, 2), (completion.Suffix, completion.Echo, completion.Logprobs));
        Assert.Equal(TokenCounter.Count("Once upon a time"), request.PromptTokenEstimate);
        Assert.False(completion.RawBody.IsEmpty);
    }

    [Fact]
    public void Prompt_arrays_and_token_ids_are_kept()
    {
        var texts = Parse("""{"model": "m", "prompt": ["a b", "c"], "max_tokens": 5}""").Completion!;
        Assert.Equal(["a b", "c"], texts.Prompts.Select(p => p.Text));
        var tokens = Parse("""{"model": "m", "prompt": [1, 2, 3]}""");
        Assert.Equal([1, 2, 3], tokens.Completion!.Prompts.Single().Tokens);
        Assert.Equal(3, tokens.PromptTokenEstimate);
        var several = Parse("""{"model": "m", "prompt": [[1, 2], [3]], "max_tokens": 0, "echo": true}""");
        Assert.Equal(2, several.Completion!.Prompts.Count);
        Assert.Equal(0, several.Completion.MaxTokens);
        Assert.Null(several.MaxTokens);
    }

    [Theory]
    [InlineData("""{"model": "m"}""", "prompt", "missing_required_parameter")]
    [InlineData("""{"model": "m", "prompt": []}""", "prompt", "empty_array")]
    [InlineData("""{"model": "m", "prompt": [1, "a"]}""", "prompt[1]", "invalid_type")]
    [InlineData("""{"model": "m", "prompt": ["a", 1]}""", "prompt[1]", "invalid_type")]
    [InlineData("""{"model": "m", "prompt": "a", "logprobs": 6}""", "logprobs", "invalid_value")]
    [InlineData("""{"model": "m", "prompt": "a", "max_tokens": -1}""", "max_tokens", "invalid_value")]
    [InlineData("""{"model": "m", "prompt": "a", "n": 3, "best_of": 2}""", "best_of", "invalid_value")]
    [InlineData("""{"model": "m", "prompt": "a", "temperature": 3}""", "temperature", "invalid_value")]
    [InlineData("""{"model": "m", "prompt": "a", "presence_penalty": 5}""", "presence_penalty", "invalid_value")]
    [InlineData("""{"model": "m", "prompt": "a", "stop": ["1", "2", "3", "4", "5"]}""", "stop", "invalid_value")]
    [InlineData("""{"model": "m", "messages": [{"role": "user", "content": "hi"}]}""", "messages", "unsupported_parameter")]
    public void Bad_input_names_the_parameter(string body, string param, string code)
    {
        var error = Assert.Throws<ChatException>(() => Parse(body));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(param, error.Error.Param);
        Assert.Equal(code, error.Error.Code);
    }

    [Fact]
    public void A_text_completion_chunk_decodes_to_text_with_logprobs_finish_and_usage()
    {
        var events = new List<ChatStreamEvent>();
        var info = CompletionChunkDecoder.Decode(Encoding.UTF8.GetBytes("""
            {"id":"cmpl-1","object":"text_completion","created":5,"model":"gpt-3.5-turbo-instruct","choices":[
              {"text":" there","index":1,"logprobs":{"tokens":[" there"],"token_logprobs":[-0.5],"top_logprobs":[{" there":-0.5," here":-1.2}],"text_offset":[5]},"finish_reason":null},
              {"text":"","index":0,"logprobs":null,"finish_reason":"length"}],
             "usage":{"prompt_tokens":4,"completion_tokens":16,"total_tokens":20}}
            """), events, captureIdentity: true);

        Assert.Equal(2, info.ChoiceCount);
        Assert.Equal(new ChatUsage(4, 16), info.Usage);
        Assert.Equal(("cmpl-1", 5L, "gpt-3.5-turbo-instruct"), (info.Identity!.Id, info.Identity.Created, info.Identity.Model));
        var text = Assert.IsType<TextDeltaEvent>(events[0]);
        Assert.Equal((" there", 1), (text.Text, text.ChoiceIndex));
        var logprob = Assert.Single(text.Logprobs!);
        Assert.Equal(-0.5, logprob.Logprob);
        Assert.Equal([(" there", -0.5), (" here", -1.2)], logprob.TopLogprobs.Select(t => (t.Token, t.Logprob)));
        Assert.Equal(("length", 0), (Assert.IsType<FinishEvent>(events[1]).Reason, events[1].ChoiceIndex));
    }

    [Fact]
    public void The_stream_writer_writes_text_completion_chunks_with_legacy_logprobs_and_a_usage_chunk()
    {
        var writer = new CompletionStreamWriter("cmpl-x", 7, "sim-fast") { WritesUsageNull = true };
        var output = new ArrayBufferWriter<byte>();
        writer.WriteEvent(output, 1, new TextDeltaEvent("Hi") { Logprobs = [new TokenLogprob("Hi", -0.1, [new TopLogprob("Hi", -0.1), new TopLogprob("Hey", -2.5)])] });
        writer.WriteEvent(output, 2, new TextDeltaEvent(" you") { Logprobs = [new TokenLogprob(" you", -0.3, [])] });
        writer.WriteEvent(output, 3, new FinishEvent("stop"));
        writer.WriteUsage(output, 4, new ChatUsage(3, 2));

        var frames = new List<SseEvent>();
        new SseParser().Feed(output.WrittenSpan.ToArray(), frames);
        var first = JsonDocument.Parse(frames[0].Data).RootElement;
        Assert.Equal("text_completion", first.GetProperty("object").GetString());
        Assert.Equal("cmpl-x", first.GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, first.GetProperty("usage").ValueKind);
        var choice = first.GetProperty("choices")[0];
        Assert.Equal("Hi", choice.GetProperty("text").GetString());
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("finish_reason").ValueKind);
        Assert.Equal("""{"tokens":["Hi"],"token_logprobs":[-0.1],"top_logprobs":[{"Hi":-0.1,"Hey":-2.5}],"text_offset":[0]}""", choice.GetProperty("logprobs").GetRawText());
        var second = JsonDocument.Parse(frames[1].Data).RootElement.GetProperty("choices")[0];
        Assert.Equal(2, second.GetProperty("logprobs").GetProperty("text_offset")[0].GetInt32());
        Assert.Equal("stop", JsonDocument.Parse(frames[2].Data).RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var usage = JsonDocument.Parse(frames[3].Data).RootElement;
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(5, usage.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }
}
