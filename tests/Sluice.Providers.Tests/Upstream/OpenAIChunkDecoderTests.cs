using System.Text;
using System.Text.Json;
using Sluice.Protocol.Events;
using Sluice.Protocol.OpenAI;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>Chunk shapes the recordings do not contain but OpenAI-compatible servers send.</summary>
public sealed class OpenAIChunkDecoderTests
{
    [Fact]
    public void Index_after_delta_still_assigns_the_events_to_that_choice()
    {
        var events = new List<ChatStreamEvent>();
        var info = OpenAIChunkDecoder.Decode(Utf8("""{"choices":[{"delta":{"content":"a","tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":""}}]},"finish_reason":"stop","index":2}]}"""), events);

        Assert.Equal(1, info.ChoiceCount);
        Assert.All(events, e => Assert.Equal(2, e.ChoiceIndex));
        Assert.Equal("a", Assert.IsType<TextDeltaEvent>(events[0]).Text);
        Assert.Equal("f", Assert.IsType<ToolCallDeltaEvent>(events[1]).Name);
        Assert.Equal("stop", Assert.IsType<FinishEvent>(events[2]).Reason);
    }

    [Fact]
    public void Arguments_sent_as_an_object_are_kept_as_json_text()
    {
        var events = new List<ChatStreamEvent>();
        OpenAIChunkDecoder.Decode(Utf8("""{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"x","function":{"name":"g","arguments":{"a": [1, 2]}}}]}}]}"""), events);

        var call = Assert.IsType<ToolCallDeltaEvent>(Assert.Single(events));
        Assert.Equal(1, call.ToolIndex);
        Assert.Equal("""{"a": [1, 2]}""", call.ArgumentsFragment);
    }

    [Fact]
    public void Usage_null_on_every_chunk_is_ignored_and_identity_is_captured_on_request()
    {
        var events = new List<ChatStreamEvent>();
        var info = OpenAIChunkDecoder.Decode(
            Utf8("""{"id":"chatcmpl-1","created":17,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"""),
            events,
            captureIdentity: true);

        Assert.Null(info.Usage);
        Assert.Equal(new OpenAIChunkIdentity("chatcmpl-1", 17, "m", "fp"), info.Identity);
    }

    [Fact]
    public void Error_frame_is_reported_with_its_fields()
    {
        var events = new List<ChatStreamEvent>();
        var info = OpenAIChunkDecoder.Decode(Utf8("""{"error":{"message":"boom","type":"server_error","code":500,"param":null}}"""), events);

        Assert.Empty(events);
        Assert.Equal("boom", info.Error!.Message);
        Assert.Equal("server_error", info.Error.Type);
        Assert.Equal("500", info.Error.Code);
    }

    [Theory]
    [InlineData("""{"choices":[{"index":0,"delta":{"content":"x"}""")]
    [InlineData("""[1,2]""")]
    [InlineData("""not json""")]
    public void Malformed_chunks_throw_json_exceptions(string json)
    {
        Assert.ThrowsAny<JsonException>(() => OpenAIChunkDecoder.Decode(Utf8(json), []));
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}
