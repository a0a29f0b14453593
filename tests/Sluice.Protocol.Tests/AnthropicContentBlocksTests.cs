using System.Buffers;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Anthropic;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.Tests;

/// <summary>Streamed Anthropic content blocks assembled into a message's content, as Anthropic's SDKs assemble them.</summary>
public sealed class AnthropicContentBlocksTests
{
    private static AnthropicBlockEvent Block(string type, int index, string json) => new(type, index, Encoding.UTF8.GetBytes(json), []);

    private static JsonElement Assemble(params AnthropicBlockEvent[] blocks)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartArray();
            AnthropicContentBlocks.WriteElements(json, blocks);
            json.WriteEndArray();
        }

        return JsonDocument.Parse(buffer.WrittenMemory).RootElement.Clone();
    }

    [Fact]
    public void Tool_input_fragments_citations_and_unknown_deltas_are_applied_in_index_order()
    {
        var content = Assemble(
            Block("content_block_start", 1, """{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}"""),
            Block("content_block_start", 0, """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"""),
            Block("content_block_delta", 0, """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris "}}"""),
            Block("content_block_delta", 0, """{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"x"}}}"""),
            Block("content_block_delta", 0, """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"is sunny."}}"""),
            Block("content_block_delta", 1, """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}"""),
            Block("content_block_delta", 1, """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}"""),
            Block("content_block_stop", 1, """{"type":"content_block_stop","index":1}"""),
            Block("content_block_start", 2, """{"type":"content_block_start","index":2,"content_block":{"type":"future_block","note":"a"}}"""),
            Block("content_block_delta", 2, """{"type":"content_block_delta","index":2,"delta":{"type":"future_delta","note":"b","extra":7}}"""));

        Assert.Equal(3, content.GetArrayLength());
        Assert.Equal("Paris is sunny.", content[0].GetProperty("text").GetString());
        Assert.Equal("x", content[0].GetProperty("citations")[0].GetProperty("cited_text").GetString());
        Assert.Equal("Paris", content[1].GetProperty("input").GetProperty("city").GetString());
        Assert.Equal("toolu_1", content[1].GetProperty("id").GetString());
        Assert.Equal("ab", content[2].GetProperty("note").GetString());
        Assert.Equal(7, content[2].GetProperty("extra").GetInt32());
    }

    [Fact]
    public void What_an_upstream_cannot_mean_is_skipped_not_thrown()
    {
        var content = Assemble(
            Block("content_block_start", 0, """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"","text":""}}"""),
            Block("content_block_start", 1, """{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"ok"}}"""),
            Block("content_block_delta", 1, """{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"!","text":"?"}}"""),
            Block("content_block_delta", 7, """{"type":"content_block_delta","index":7,"delta":{"type":"text_delta","text":"orphan"}}"""),
            Block("content_block_delta", 1, "not json"),
            Block("content_block_delta", 1, "[1, 2]"),
            Block("content_block_delta", 1, """{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":7}}"""),
            Block("content_block_delta", 1, """{"type":"content_block_delta","index":1,"delta":"text"}"""));

        Assert.Contains(content.EnumerateArray(), b => b.GetProperty("text").GetString()!.StartsWith("ok", StringComparison.Ordinal));
    }

    [Fact]
    public void A_tool_call_cut_off_before_its_stop_gets_an_object_input()
    {
        var content = Assemble(
            Block("content_block_start", 0, """{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"""),
            Block("content_block_delta", 0, """{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\": "}}"""));

        Assert.Equal(JsonValueKind.Object, content[0].GetProperty("input").ValueKind);
        Assert.Empty(content[0].GetProperty("input").EnumerateObject());
    }
}
