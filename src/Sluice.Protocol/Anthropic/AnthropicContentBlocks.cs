using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.Anthropic;

/// <summary>
/// Assembles an Anthropic upstream's streamed content blocks (<see cref="AnthropicBlockEvent"/>s) into the
/// <c>content</c> array of a non-streamed message, as Anthropic's own SDKs do: each block as it started, with its
/// deltas applied — <c>text_delta</c>, <c>thinking_delta</c> and <c>signature_delta</c> appended to their fields,
/// <c>input_json_delta</c> fragments joined and parsed into <c>input</c>, <c>citations_delta</c> added to
/// <c>citations</c>, and any other delta's fields merged (strings appended, the rest set) — so block types Sluice does
/// not know come back whole too.
/// </summary>
public static class AnthropicContentBlocks
{
    /// <summary>Writes the assembled blocks, in <c>index</c> order, as the elements of an open array.</summary>
    public static void WriteElements(Utf8JsonWriter json, IReadOnlyList<AnthropicBlockEvent> blocks)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(blocks);
        var assembled = new SortedDictionary<int, (JsonObject Block, System.Text.StringBuilder? Input)>();
        foreach (var block in blocks)
        {
            try
            {
                Apply(assembled, block);
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException or FormatException)
            {
                // An event the upstream should not have sent (not JSON, duplicate names, a number where text belongs):
                // the client already got it as it was when streamed; the assembled message leaves it out, never fails.
            }
        }

        foreach (var (_, (block, input)) in assembled)
        {
            if (input is not null)
            {
                // Cut off before its stop (max_tokens): what arrived, if it parses.
                block["input"] = ParseInput(input.ToString());
            }

            block.WriteTo(json);
        }
    }

    private static void Apply(SortedDictionary<int, (JsonObject Block, System.Text.StringBuilder? Input)> assembled, AnthropicBlockEvent block)
    {
        if (JsonNode.Parse(block.Json.Span) is not JsonObject node)
        {
            return;
        }

        switch (block.Type)
        {
            case "content_block_start" when node["content_block"] is JsonObject started:
                assembled[block.Index] = ((JsonObject)started.DeepClone(), null);
                break;
            case "content_block_delta" when node["delta"] is JsonObject delta && assembled.TryGetValue(block.Index, out var open):
                assembled[block.Index] = (open.Block, ApplyDelta(open.Block, delta, open.Input));
                break;
            case "content_block_stop" when assembled.TryGetValue(block.Index, out var done) && done.Input is not null:
                done.Block["input"] = ParseInput(done.Input.ToString());
                assembled[block.Index] = (done.Block, null);
                break;
        }
    }

    // Applies one delta; returns the block's pending tool input.
    private static System.Text.StringBuilder? ApplyDelta(JsonObject block, JsonObject delta, System.Text.StringBuilder? input)
    {
        var type = delta["type"]?.GetValue<string>();
        switch (type)
        {
            case "input_json_delta":
                return (input ?? new()).Append(delta["partial_json"]?.GetValue<string>());
            case "citations_delta":
                if (delta["citation"] is { } citation)
                {
                    if (block["citations"] is not JsonArray citations)
                    {
                        block["citations"] = citations = [];
                    }

                    citations.Add(citation.DeepClone());
                }

                return input;
        }

        foreach (var (name, value) in delta)
        {
            if (name == "type")
            {
                continue;
            }

            if (block[name] is JsonValue existing && existing.TryGetValue<string>(out var sofar))
            {
                // Text so far is appended to, never replaced by something that is not text.
                if (value is JsonValue text && text.TryGetValue<string>(out var more))
                {
                    block[name] = sofar + more;
                }
            }
            else
            {
                block[name] = value?.DeepClone();
            }
        }

        return input;
    }

    private static JsonNode ParseInput(string text)
    {
        try
        {
            return JsonNode.Parse(text.Length == 0 ? "{}" : text) as JsonObject ?? new JsonObject();
        }
        catch (JsonException)
        {
            return new JsonObject();
        }
    }
}
