using System.Text;
using System.Text.Json;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.OpenAI;

/// <summary>
/// The <c>logprobs</c> object of a Chat Completions choice: <c>{"content": [{"token", "logprob", "bytes",
/// "top_logprobs": [...]}], "refusal": null}</c>, written and read in one place.
/// </summary>
public static class OpenAILogprobs
{
    /// <summary>Writes <c>"logprobs": {...}</c>, or <c>"logprobs": null</c> when there are none.</summary>
    public static void Write(Utf8JsonWriter json, IReadOnlyList<TokenLogprob>? logprobs)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (logprobs is not { Count: > 0 })
        {
            json.WriteNull(OpenAIJson.Logprobs);
            return;
        }

        json.WriteStartObject(OpenAIJson.Logprobs);
        json.WriteStartArray("content"u8);
        foreach (var token in logprobs)
        {
            json.WriteStartObject();
            WriteToken(json, token.Token, token.Logprob);
            json.WriteStartArray("top_logprobs"u8);
            foreach (var top in token.TopLogprobs)
            {
                json.WriteStartObject();
                WriteToken(json, top.Token, top.Logprob);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteNull("refusal"u8);
        json.WriteEndObject();
    }

    /// <summary>Writes one token as the Responses API's <c>logprobs</c> entries do (<c>token</c>, <c>logprob</c>, <c>bytes</c>, <c>top_logprobs</c>).</summary>
    public static void WriteArray(Utf8JsonWriter json, IReadOnlyList<TokenLogprob>? logprobs)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartArray();
        foreach (var token in logprobs ?? [])
        {
            json.WriteStartObject();
            WriteToken(json, token.Token, token.Logprob);
            json.WriteStartArray("top_logprobs"u8);
            foreach (var top in token.TopLogprobs)
            {
                json.WriteStartObject();
                WriteToken(json, top.Token, top.Logprob);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    /// <summary>Reads the <c>content</c> entries of a <c>logprobs</c> value at the reader (null, or an object).</summary>
    /// <returns>The tokens, or null when the value is null or has no content.</returns>
    public static List<TokenLogprob>? Read(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return null;
        }

        List<TokenLogprob>? result = null;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("content"u8))
            {
                Next(ref reader);
                if (reader.TokenType != JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                result = [];
                while (Next(ref reader) == JsonTokenType.StartObject)
                {
                    result.Add(ReadToken(ref reader));
                }
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return result is { Count: > 0 } ? result : null;
    }

    private static TokenLogprob ReadToken(ref Utf8JsonReader reader)
    {
        var token = string.Empty;
        var logprob = 0.0;
        var top = new List<TopLogprob>();
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("token"u8))
            {
                Next(ref reader);
                token = reader.TokenType == JsonTokenType.String ? reader.GetString()! : Skip(ref reader, string.Empty);
            }
            else if (reader.ValueTextEquals("logprob"u8))
            {
                Next(ref reader);
                logprob = reader.TokenType == JsonTokenType.Number ? reader.GetDouble() : Skip(ref reader, 0.0);
            }
            else if (reader.ValueTextEquals("top_logprobs"u8))
            {
                Next(ref reader);
                if (reader.TokenType != JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                while (Next(ref reader) == JsonTokenType.StartObject)
                {
                    var alternative = ReadToken(ref reader);
                    top.Add(new TopLogprob(alternative.Token, alternative.Logprob));
                }
            }
            else
            {
                Next(ref reader);
                reader.Skip();
            }
        }

        return new TokenLogprob(token, logprob, top);
    }

    private static void WriteToken(Utf8JsonWriter json, string token, double logprob)
    {
        json.WriteString("token"u8, token);
        json.WriteNumber("logprob"u8, logprob);
        json.WriteStartArray("bytes"u8);
        foreach (var b in Encoding.UTF8.GetBytes(token))
        {
            json.WriteNumberValue(b);
        }

        json.WriteEndArray();
    }

    private static T Skip<T>(ref Utf8JsonReader reader, T fallback)
    {
        reader.Skip();
        return fallback;
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
        {
            throw new JsonException("The logprobs JSON ends early.");
        }

        return reader.TokenType;
    }
}
