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
            JsonObject? node;
            try
            {
                node = JsonNode.Parse(block.Json.Span) as JsonObject;
            }
            catch (JsonException)
            {
                continue;
            }

            if (node is null)
            {
                continue;
            }

            switch (block.Type)
            {
                case "content_block_start" when node["content_block"] is JsonObject started:
                    assembled[block.Index] = ((JsonObject)started.DeepClone(), null);
                    break;
                case "content_block_delta" when node["delta"] is JsonObject delta && assembled.TryGetValue(block.Index, out var open):
                    assembled[block.Index] = (open.Block, Apply(open.Block, delta, open.Input));
                    break;
                case "content_block_stop" when assembled.TryGetValue(block.Index, out var done) && done.Input is not null:
                    done.Block["input"] = ParseInput(done.Input.ToString());
                    assembled[block.Index] = (done.Block, null);
                    break;
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

    // Applies one delta; returns the block's pending tool input.
    private static System.Text.StringBuilder? Apply(JsonObject block, JsonObject delta, System.Text.StringBuilder? input)
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

            if (value is JsonValue text && text.TryGetValue<string>(out var more)
                && block[name] is JsonValue existing && existing.TryGetValue<string>(out var sofar))
            {
                block[name] = sofar + more;
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
