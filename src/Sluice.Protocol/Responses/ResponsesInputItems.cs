using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Responses;

/// <summary>Which page of a response's input items to list (<c>GET /v1/responses/{id}/input_items</c>).</summary>
/// <param name="Limit">Items per page, 1–100.</param>
/// <param name="Ascending">Oldest first (<c>order=asc</c>); OpenAI's default is newest first.</param>
/// <param name="After">The id of the item the page starts after, in that order; null for the first page.</param>
public sealed record InputItemsPage(int Limit = 20, bool Ascending = false, string? After = null)
{
    /// <summary>The most items one page holds.</summary>
    public const int MaxLimit = 100;
}

/// <summary>
/// The body of <c>GET /v1/responses/{id}/input_items</c>: the items the response was generated from — the conversation
/// carried by <c>previous_response_id</c> and the request's own <c>input</c>, without the response's own output — as
/// OpenAI lists them: each with an <c>id</c>, messages with <c>type</c>, <c>status</c> and content parts, in a cursor
/// page (<c>first_id</c>, <c>last_id</c>, <c>has_more</c>).
/// </summary>
public static class ResponsesInputItems
{
    /// <summary>
    /// Writes the page. <paramref name="conversationJson"/> is the stored conversation (input items, then the response's
    /// output as input items); <paramref name="responseJson"/> the stored response, whose output tells where its input ends.
    /// </summary>
    /// <exception cref="ChatException">400 when <see cref="InputItemsPage.After"/> names no item of this response.</exception>
    public static void Write(IBufferWriter<byte> output, string responseId, string responseJson, string conversationJson, InputItemsPage page)
    {
        ArgumentNullException.ThrowIfNull(page);
        using var conversation = JsonDocument.Parse(conversationJson);
        var items = conversation.RootElement.ValueKind == JsonValueKind.Array ? conversation.RootElement.EnumerateArray().ToArray() : [];
        var inputCount = Math.Max(0, items.Length - OutputItemCount(responseJson));

        // Items without an id of their own (what clients send) get one derived from the response and the position:
        // the same on every read, so it works as a cursor.
        var ids = new string[inputCount];
        var stem = responseId.StartsWith("resp_", StringComparison.Ordinal) ? responseId[5..] : responseId;
        for (var i = 0; i < inputCount; i++)
        {
            ids[i] = items[i].ValueKind == JsonValueKind.Object && items[i].TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String && id.GetString() is { Length: > 0 } own
                ? own
                : $"{(IsMessage(items[i]) ? "msg" : "item")}_{stem}{i.ToString("x4", CultureInfo.InvariantCulture)}";
        }

        var order = Enumerable.Range(0, inputCount);
        if (!page.Ascending)
        {
            order = order.Reverse();
        }

        var ordered = order.ToArray();
        var start = 0;
        if (page.After is { } after)
        {
            start = Array.FindIndex(ordered, i => ids[i] == after) + 1;
            if (start == 0)
            {
                throw ChatException.BadRequest(
                    $"after '{after}' is not an item of response '{responseId}'. Pass the last_id of the previous page, or leave after out for the first page.",
                    "after");
            }
        }

        var count = Math.Clamp(ordered.Length - start, 0, page.Limit);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString("object"u8, "list"u8);
        json.WriteStartArray("data"u8);
        for (var k = start; k < start + count; k++)
        {
            WriteItem(json, items[ordered[k]], ids[ordered[k]]);
        }

        json.WriteEndArray();
        WriteId(json, "first_id"u8, count > 0 ? ids[ordered[start]] : null);
        WriteId(json, "last_id"u8, count > 0 ? ids[ordered[start + count - 1]] : null);
        json.WriteBoolean("has_more"u8, start + count < ordered.Length);
        json.WriteEndObject();
    }

    private static int OutputItemCount(string responseJson)
    {
        using var response = JsonDocument.Parse(responseJson);
        return response.RootElement.TryGetProperty("output", out var output) && output.ValueKind == JsonValueKind.Array
            ? output.EnumerateArray().Count(ResponsesStreamWriter.CarriesOver)
            : 0;
    }

    private static bool IsMessage(JsonElement item) =>
        item.ValueKind == JsonValueKind.Object
        && (!item.TryGetProperty("type", out var type) || (type.ValueKind == JsonValueKind.String && type.ValueEquals("message"u8)));

    private static void WriteId(Utf8JsonWriter json, ReadOnlySpan<byte> name, string? id)
    {
        if (id is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, id);
        }
    }

    /// <summary>One item as OpenAI lists it: messages get their type, status and content parts; other items pass as sent.</summary>
    private static void WriteItem(Utf8JsonWriter json, JsonElement item, string id)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            item.WriteTo(json);
            return;
        }

        var message = IsMessage(item);
        json.WriteStartObject();
        json.WriteString("id"u8, id);
        if (message)
        {
            json.WriteString("type"u8, "message"u8);
        }

        var role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
        foreach (var property in item.EnumerateObject())
        {
            if (property.NameEquals("id"u8) || (message && property.NameEquals("type"u8)))
            {
                continue;
            }

            if (message && property.NameEquals("content"u8) && property.Value.ValueKind == JsonValueKind.String)
            {
                // Content sent as a string is listed as one text part, as OpenAI does.
                json.WriteStartArray("content"u8);
                json.WriteStartObject();
                var assistant = role == "assistant";
                json.WriteString("type"u8, assistant ? "output_text"u8 : "input_text"u8);
                json.WriteString("text"u8, property.Value.GetString());
                if (assistant)
                {
                    json.WriteStartArray("annotations"u8);
                    json.WriteEndArray();
                }

                json.WriteEndObject();
                json.WriteEndArray();
                continue;
            }

            property.WriteTo(json);
        }

        if (message && !item.TryGetProperty("status", out _))
        {
            json.WriteString("status"u8, "completed"u8);
        }

        json.WriteEndObject();
    }
}
