using System.Text.Json;
using Sluice.Protocol.Events;

namespace Sluice.Protocol.Completions;

/// <summary>
/// The legacy <c>logprobs</c> object of a completion choice — parallel arrays <c>tokens</c>, <c>token_logprobs</c>,
/// <c>top_logprobs</c> (one object of token → logprob per position) and <c>text_offset</c> — read into and written from
/// Sluice's <see cref="TokenLogprob"/>s.
/// </summary>
public static class CompletionLogprobs
{
    /// <summary>The tokens of a legacy logprobs object; a null logprob (the echoed prompt's first token) is NaN.</summary>
    public static IReadOnlyList<TokenLogprob> Read(JsonElement logprobs)
    {
        if (!logprobs.TryGetProperty("tokens", out var tokens) || tokens.ValueKind != JsonValueKind.Array)
        {
            return [];
        }

        logprobs.TryGetProperty("token_logprobs", out var values);
        logprobs.TryGetProperty("top_logprobs", out var tops);
        var result = new List<TokenLogprob>(tokens.GetArrayLength());
        var i = 0;
        foreach (var token in tokens.EnumerateArray())
        {
            var value = values.ValueKind == JsonValueKind.Array && i < values.GetArrayLength() && values[i].ValueKind == JsonValueKind.Number
                ? values[i].GetDouble()
                : double.NaN;
            var alternatives = new List<TopLogprob>();
            if (tops.ValueKind == JsonValueKind.Array && i < tops.GetArrayLength() && tops[i].ValueKind == JsonValueKind.Object)
            {
                foreach (var top in tops[i].EnumerateObject())
                {
                    if (top.Value.ValueKind == JsonValueKind.Number)
                    {
                        alternatives.Add(new TopLogprob(top.Name, top.Value.GetDouble()));
                    }
                }
            }

            result.Add(new TokenLogprob(token.GetString() ?? string.Empty, value, alternatives));
            i++;
        }

        return result;
    }

    /// <summary>
    /// Writes <c>"logprobs": {...}</c> for <paramref name="tokens"/>, whose text starts at <paramref name="textOffset"/> of
    /// the choice's text; <c>"logprobs": null</c> when there are none.
    /// </summary>
    public static void Write(Utf8JsonWriter json, IReadOnlyList<TokenLogprob>? tokens, int textOffset)
    {
        ArgumentNullException.ThrowIfNull(json);
        if (tokens is not { Count: > 0 })
        {
            json.WriteNull("logprobs"u8);
            return;
        }

        json.WriteStartObject("logprobs"u8);
        json.WriteStartArray("tokens"u8);
        foreach (var token in tokens)
        {
            json.WriteStringValue(token.Token);
        }

        json.WriteEndArray();
        json.WriteStartArray("token_logprobs"u8);
        foreach (var token in tokens)
        {
            if (double.IsNaN(token.Logprob))
            {
                json.WriteNullValue();
            }
            else
            {
                json.WriteNumberValue(token.Logprob);
            }
        }

        json.WriteEndArray();
        json.WriteStartArray("top_logprobs"u8);
        foreach (var token in tokens)
        {
            json.WriteStartObject();
            foreach (var top in token.TopLogprobs)
            {
                json.WriteNumber(top.Token, top.Logprob);
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteStartArray("text_offset"u8);
        var offset = textOffset;
        foreach (var token in tokens)
        {
            json.WriteNumberValue(offset);
            offset += token.Token.Length;
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }
}
