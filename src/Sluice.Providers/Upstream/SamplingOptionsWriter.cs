using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Providers.Upstream;

/// <summary>Each provider's names for the sampling settings (Gemini's <c>generationConfig</c>, Ollama's <c>options</c>).</summary>
internal sealed record SamplingNames(
    string Object,
    string Temperature,
    string TopP,
    string TopK,
    string MaxTokens,
    string Stop,
    string Seed)
{
    public static SamplingNames Gemini { get; } = new("generationConfig", "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "seed");

    public static SamplingNames Ollama { get; } = new("options", "temperature", "top_p", "top_k", "num_predict", "stop", "seed");
}

/// <summary>Writes the request's sampling settings as one object under the provider's names; nothing when none is set.</summary>
internal static class SamplingOptionsWriter
{
    /// <param name="json">The request body being written.</param>
    /// <param name="request">The request.</param>
    /// <param name="names">The provider's names.</param>
    /// <param name="extra">More settings for the same object (Gemini's structured-output fields), or null.</param>
    public static void Write(Utf8JsonWriter json, ChatRequest request, SamplingNames names, Action<Utf8JsonWriter>? extra = null)
    {
        if (request.Temperature is null && request.TopP is null && request.TopK is null && request.MaxTokens is null && request.Stop is null && request.Seed is null
            && extra is null)
        {
            return;
        }

        json.WriteStartObject(names.Object);
        extra?.Invoke(json);
        if (request.Temperature is { } temperature)
        {
            json.WriteNumber(names.Temperature, temperature);
        }

        if (request.TopP is { } topP)
        {
            json.WriteNumber(names.TopP, topP);
        }

        if (request.TopK is { } topK)
        {
            json.WriteNumber(names.TopK, topK);
        }

        if (request.MaxTokens is { } max)
        {
            json.WriteNumber(names.MaxTokens, max);
        }

        if (request.Stop is { Count: > 0 } stop)
        {
            json.WriteStartArray(names.Stop);
            foreach (var sequence in stop)
            {
                json.WriteStringValue(sequence);
            }

            json.WriteEndArray();
        }

        if (request.Seed is { } seed)
        {
            json.WriteNumber(names.Seed, seed);
        }

        json.WriteEndObject();
    }
}
