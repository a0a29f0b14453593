using System.Buffers;
using System.Text.Json;
using Sluice.Protocol.Responses;

namespace Sluice.Protocol.Tests;

/// <summary>The body of <c>GET /v1/responses/{id}/input_items</c>, built from a stored response and its conversation.</summary>
public sealed class ResponsesInputItemsTests
{
    private const string Id = "resp_0123456789abcdef";

    // Earlier turn (string content, as a client sends it), its answer carried over, a function call and its output,
    // then this response's input; the conversation ends with this response's two output items.
    private const string Conversation = """
        [
          {"role": "user", "content": "What is the weather?"},
          {"id": "msg_prev", "type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
          {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather", "arguments": "{}"},
          {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
          {"role": "assistant", "content": "Noted."},
          {"id": "msg_out", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}]},
          {"type": "function_call", "id": "fc_out", "call_id": "call_2", "name": "x", "arguments": "{}"}
        ]
        """;

    private const string Response = """
        {"id": "resp_0123456789abcdef", "object": "response", "output": [
          {"id": "msg_out", "type": "message", "role": "assistant", "content": []},
          {"type": "web_search_call", "id": "ws_1"},
          {"id": "fc_out", "type": "function_call", "call_id": "call_2", "name": "x", "arguments": "{}"}
        ]}
        """;

    [Fact]
    public void Lists_the_input_without_the_response_s_own_output_newest_first_each_item_with_an_id()
    {
        using var page = List(new InputItemsPage());
        var data = page.RootElement.GetProperty("data").EnumerateArray().ToArray();
        Assert.Equal("list", page.RootElement.GetProperty("object").GetString());
        Assert.Equal(5, data.Length);
        Assert.False(page.RootElement.GetProperty("has_more").GetBoolean());

        // Newest first: the assistant message sent as a string becomes an output_text part.
        Assert.Equal("message", data[0].GetProperty("type").GetString());
        Assert.Equal("output_text", data[0].GetProperty("content")[0].GetProperty("type").GetString());
        Assert.Equal("Noted.", data[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(0, data[0].GetProperty("content")[0].GetProperty("annotations").GetArrayLength());
        Assert.Equal("completed", data[0].GetProperty("status").GetString());
        Assert.Equal("function_call_output", data[1].GetProperty("type").GetString());
        Assert.Equal("sunny", data[1].GetProperty("output").GetString());
        Assert.Equal("fc_1", data[2].GetProperty("id").GetString());
        Assert.Equal("msg_prev", data[3].GetProperty("id").GetString());
        Assert.Equal("input_text", data[4].GetProperty("content")[0].GetProperty("type").GetString());
        Assert.Equal("user", data[4].GetProperty("role").GetString());

        // Ids: kept when the item had one, otherwise derived from the response and position — distinct, and stable.
        var ids = data.Select(d => d.GetProperty("id").GetString()!).ToArray();
        Assert.Equal(ids.Length, ids.Distinct().Count());
        Assert.StartsWith("msg_0123456789abcdef", ids[0], StringComparison.Ordinal);
        Assert.StartsWith("item_0123456789abcdef", ids[1], StringComparison.Ordinal);
        using var again = List(new InputItemsPage());
        Assert.Equal(ids, again.RootElement.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("id").GetString()!));
        Assert.Equal(ids[0], page.RootElement.GetProperty("first_id").GetString());
        Assert.Equal(ids[^1], page.RootElement.GetProperty("last_id").GetString());
    }

    [Fact]
    public void Pages_follow_after_in_either_order_until_has_more_is_false()
    {
        foreach (var ascending in new[] { false, true })
        {
            var seen = new List<string>();
            string? after = null;
            for (var pages = 0; ; pages++)
            {
                Assert.True(pages < 5);
                using var page = List(new InputItemsPage(2, ascending, after));
                seen.AddRange(page.RootElement.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("id").GetString()!));
                if (!page.RootElement.GetProperty("has_more").GetBoolean())
                {
                    break;
                }

                after = page.RootElement.GetProperty("last_id").GetString();
            }

            using var whole = List(new InputItemsPage(100, ascending));
            Assert.Equal(whole.RootElement.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("id").GetString()!), seen);
            Assert.Equal(5, seen.Count);
        }

        // After the last item: an empty page with null ids.
        using var all = List(new InputItemsPage(100));
        using var end = List(new InputItemsPage(10, After: all.RootElement.GetProperty("last_id").GetString()));
        Assert.Equal(0, end.RootElement.GetProperty("data").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, end.RootElement.GetProperty("first_id").ValueKind);
        Assert.False(end.RootElement.GetProperty("has_more").GetBoolean());
    }

    [Fact]
    public void An_unknown_after_is_a_400_naming_after()
    {
        var error = Assert.Throws<ChatException>(() => List(new InputItemsPage(After: "msg_elsewhere")));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("after", error.Error.Param);
    }

    private static JsonDocument List(InputItemsPage page)
    {
        var output = new ArrayBufferWriter<byte>();
        ResponsesInputItems.Write(output, Id, Response, Conversation, page);
        return JsonDocument.Parse(output.WrittenMemory);
    }
}
