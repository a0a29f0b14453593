using System.Text.Json;

namespace Sluice.Cli.Bench;

/// <summary>What one OpenAI stream chunk carries, as far as the benchmark cares.</summary>
/// <param name="HasContent">A choice's delta has non-empty <c>content</c>, <c>refusal</c> or <c>tool_calls</c>.</param>
/// <param name="IsError">The chunk is an error frame (<c>{"error": …}</c>).</param>
/// <param name="CompletionTokens"><c>usage.completion_tokens</c>, or -1 when absent.</param>
internal readonly record struct ChunkInfo(bool HasContent, bool IsError, int CompletionTokens);

/// <summary>
/// Scans an OpenAI <c>chat.completion.chunk</c> with a forward-only reader: no DOM and no strings, because the
/// client must stay cheaper than the server it measures.
/// </summary>
internal static class ChunkScanner
{
    /// <exception cref="JsonException">The data is not a JSON object.</exception>
    public static ChunkInfo Scan(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("The chunk is not a JSON object.");
        }

        var content = false;
        var error = false;
        var tokens = -1;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("choices"u8))
            {
                reader.Read();
                content |= reader.TokenType == JsonTokenType.StartArray ? ScanChoices(ref reader) : SkipValue(ref reader);
            }
            else if (reader.ValueTextEquals("usage"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    tokens = ScanUsage(ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("error"u8))
            {
                reader.Read();
                error = reader.TokenType != JsonTokenType.Null;
                reader.Skip();
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return new ChunkInfo(content, error, tokens);
    }

    private static bool SkipValue(ref Utf8JsonReader reader)
    {
        reader.Skip();
        return false;
    }

    private static bool ScanChoices(ref Utf8JsonReader reader)
    {
        var content = false;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isDelta = reader.ValueTextEquals("delta"u8) || reader.ValueTextEquals("message"u8);
                reader.Read();
                if (isDelta && reader.TokenType == JsonTokenType.StartObject)
                {
                    content |= ScanDelta(ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }
        }

        return content;
    }

    private static bool ScanDelta(ref Utf8JsonReader reader)
    {
        var content = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isText = reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("refusal"u8);
            var isTools = !isText && reader.ValueTextEquals("tool_calls"u8);
            reader.Read();
            if (isText && reader.TokenType == JsonTokenType.String)
            {
                // The raw (escaped) value is empty exactly when the string is.
                content |= reader.ValueSpan.Length > 0 || reader.HasValueSequence;
            }
            else if (isTools && reader.TokenType == JsonTokenType.StartArray)
            {
                reader.Read();
                content |= reader.TokenType != JsonTokenType.EndArray;
                if (reader.TokenType != JsonTokenType.EndArray)
                {
                    reader.Skip();
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    {
                        reader.Skip();
                    }
                }
            }
            else
            {
                reader.Skip();
            }
        }

        return content;
    }

    private static int ScanUsage(ref Utf8JsonReader reader)
    {
        var tokens = -1;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isCompletion = reader.ValueTextEquals("completion_tokens"u8);
            reader.Read();
            if (isCompletion && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var value))
            {
                tokens = value;
            }
            else
            {
                reader.Skip();
            }
        }

        return tokens;
    }
}
