using System.Text.Json;

namespace Sluice.Providers.Upstream;

/// <summary>Anthropic stream event types Sluice acts on.</summary>
internal enum AnthropicEventType
{
    Other,
    MessageStart,
    ContentBlockStart,
    ContentBlockDelta,
    ContentBlockStop,
    MessageDelta,
    MessageStop,
    Error,
}

/// <summary>
/// The fields of one Anthropic stream event that Sluice needs, read in one <see cref="Utf8JsonReader"/> pass
/// (fields may come in any order, so everything is collected first and interpreted afterwards).
/// </summary>
internal readonly record struct AnthropicEvent
{
    public AnthropicEventType Type { get; init; }

    public int Index { get; init; }

    public string? BlockType { get; init; }

    public string? ToolId { get; init; }

    public string? ToolName { get; init; }

    public string? DeltaType { get; init; }

    public string? Text { get; init; }

    public string? PartialJson { get; init; }

    public string? StopReason { get; init; }

    public string? StopSequence { get; init; }

    public bool HasUsage { get; init; }

    /// <summary>Prompt tokens: <c>input_tokens</c> plus cache reads and writes (OpenAI's prompt_tokens includes them).</summary>
    public int InputTokens { get; init; }

    /// <summary>Whether the usage object carried any of the input counts (message_delta usually carries only output).</summary>
    public bool HasInputTokens { get; init; }

    public int CacheReadTokens { get; init; }

    public int CacheCreationTokens { get; init; }

    public int OutputTokens { get; init; }

    public string? ServiceTier { get; init; }

    /// <summary>The message id of <c>message_start</c>.</summary>
    public string? MessageId { get; init; }

    /// <summary>The raw JSON of <c>message_delta.delta.stop_details</c>.</summary>
    public string? StopDetailsJson { get; init; }

    public string? ErrorType { get; init; }

    public string? ErrorMessage { get; init; }

    public static AnthropicEvent Parse(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        Expect(ref reader, JsonTokenType.StartObject);
        var result = new AnthropicEvent();
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("type"u8))
            {
                Next(ref reader);
                result = result with { Type = TypeOf(ref reader) };
            }
            else if (reader.ValueTextEquals("index"u8))
            {
                Next(ref reader);
                result = result with { Index = reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var i) ? i : 0 };
            }
            else if (reader.ValueTextEquals("content_block"u8))
            {
                Next(ref reader);
                result = ReadObject(ref reader, result, static (ref Utf8JsonReader r, AnthropicEvent e) =>
                    r.ValueTextEquals("type"u8) ? e with { BlockType = StringValue(ref r) }
                    : r.ValueTextEquals("id"u8) ? e with { ToolId = StringValue(ref r) }
                    : r.ValueTextEquals("name"u8) ? e with { ToolName = StringValue(ref r) }
                    : r.ValueTextEquals("text"u8) ? e with { Text = StringValue(ref r) }
                    : Skip(ref r, e));
            }
            else if (reader.ValueTextEquals("delta"u8))
            {
                Next(ref reader);
                result = ReadObject(ref reader, result, static (ref Utf8JsonReader r, AnthropicEvent e) =>
                    r.ValueTextEquals("type"u8) ? e with { DeltaType = StringValue(ref r) }
                    : r.ValueTextEquals("text"u8) ? e with { Text = StringValue(ref r) }
                    : r.ValueTextEquals("partial_json"u8) ? e with { PartialJson = StringValue(ref r) }
                    : r.ValueTextEquals("stop_reason"u8) ? e with { StopReason = StringValue(ref r) }
                    : r.ValueTextEquals("stop_sequence"u8) ? e with { StopSequence = StringValue(ref r) }
                    : r.ValueTextEquals("stop_details"u8) ? e with { StopDetailsJson = RawObject(ref r) }
                    : Skip(ref r, e));
            }
            else if (reader.ValueTextEquals("message"u8))
            {
                Next(ref reader);
                result = ReadObject(ref reader, result, static (ref Utf8JsonReader r, AnthropicEvent e) =>
                    r.ValueTextEquals("usage"u8) ? ReadUsage(ref r, e)
                    : r.ValueTextEquals("id"u8) ? e with { MessageId = StringValue(ref r) }
                    : Skip(ref r, e));
            }
            else if (reader.ValueTextEquals("usage"u8))
            {
                result = ReadUsage(ref reader, result);
            }
            else if (reader.ValueTextEquals("error"u8))
            {
                Next(ref reader);
                result = ReadObject(ref reader, result, static (ref Utf8JsonReader r, AnthropicEvent e) =>
                    r.ValueTextEquals("type"u8) ? e with { ErrorType = StringValue(ref r) }
                    : r.ValueTextEquals("message"u8) ? e with { ErrorMessage = StringValue(ref r) }
                    : Skip(ref r, e));
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return result;
    }

    private delegate AnthropicEvent PropertyReader(ref Utf8JsonReader reader, AnthropicEvent current);

    /// <summary>Reads the usage object after its property name (the reader is on the name).</summary>
    private static AnthropicEvent ReadUsage(ref Utf8JsonReader reader, AnthropicEvent current)
    {
        Next(ref reader);
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return current;
        }

        var input = 0;
        var cacheRead = 0;
        var cacheCreation = 0;
        var output = 0;
        var hasInput = false;
        string? serviceTier = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            // 0: input, 1: cache read, 2: cache creation, 3: output, 4: service tier, -1: anything else.
            var field = reader.ValueTextEquals("input_tokens"u8) ? 0
                : reader.ValueTextEquals("cache_read_input_tokens"u8) ? 1
                : reader.ValueTextEquals("cache_creation_input_tokens"u8) ? 2
                : reader.ValueTextEquals("output_tokens"u8) ? 3
                : reader.ValueTextEquals("service_tier"u8) ? 4
                : -1;
            Next(ref reader);
            if (field == 4 && reader.TokenType == JsonTokenType.String)
            {
                serviceTier = reader.GetString();
            }
            else if (field >= 0 && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
            {
                hasInput |= field < 3;
                switch (field)
                {
                    case 0:
                        input = value;
                        break;
                    case 1:
                        cacheRead = value;
                        break;
                    case 2:
                        cacheCreation = value;
                        break;
                    default:
                        output = value;
                        break;
                }
            }
            else
            {
                reader.Skip();
            }
        }

        return current with
        {
            HasUsage = true,
            HasInputTokens = hasInput,

            // Cached prompt tokens are prompt tokens too (OpenAI's prompt_tokens includes them).
            InputTokens = input + cacheRead + cacheCreation,
            CacheReadTokens = cacheRead,
            CacheCreationTokens = cacheCreation,
            OutputTokens = output,
            ServiceTier = serviceTier ?? current.ServiceTier,
        };
    }

    /// <summary>The raw JSON text of the object value after a property name; null for other kinds (which are skipped).</summary>
    private static string? RawObject(ref Utf8JsonReader reader)
    {
        Next(ref reader);
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return null;
        }

        // The reader works on one complete event, so the object's bytes can be copied as they are.
        var copy = reader;
        using var document = JsonDocument.ParseValue(ref copy);
        reader.Skip();
        return document.RootElement.GetRawText();
    }

    /// <summary>Reads an object value (the reader is on its start), calling <paramref name="property"/> on each property name.</summary>
    private static AnthropicEvent ReadObject(ref Utf8JsonReader reader, AnthropicEvent current, PropertyReader property)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return current;
        }

        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            current = property(ref reader, current);
        }

        return current;
    }

    /// <summary>Reads the string value after a property name; null for other kinds (which are skipped).</summary>
    private static string? StringValue(ref Utf8JsonReader reader)
    {
        Next(ref reader);
        if (reader.TokenType == JsonTokenType.String)
        {
            return reader.GetString();
        }

        reader.Skip();
        return null;
    }

    private static AnthropicEvent Skip(ref Utf8JsonReader reader, AnthropicEvent current)
    {
        Next(ref reader);
        reader.Skip();
        return current;
    }

    private static AnthropicEventType TypeOf(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            reader.Skip();
            return AnthropicEventType.Other;
        }

        return reader.ValueTextEquals("content_block_delta"u8) ? AnthropicEventType.ContentBlockDelta
            : reader.ValueTextEquals("content_block_start"u8) ? AnthropicEventType.ContentBlockStart
            : reader.ValueTextEquals("content_block_stop"u8) ? AnthropicEventType.ContentBlockStop
            : reader.ValueTextEquals("message_start"u8) ? AnthropicEventType.MessageStart
            : reader.ValueTextEquals("message_delta"u8) ? AnthropicEventType.MessageDelta
            : reader.ValueTextEquals("message_stop"u8) ? AnthropicEventType.MessageStop
            : reader.ValueTextEquals("error"u8) ? AnthropicEventType.Error
            : AnthropicEventType.Other;
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type)
    {
        if (Next(ref reader) != type)
        {
            throw new JsonException($"Expected {type}.");
        }
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
        {
            throw new JsonException("The event JSON ends early.");
        }

        return reader.TokenType;
    }
}
