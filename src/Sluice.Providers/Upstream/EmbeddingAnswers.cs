using System.Buffers;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Embeddings;

namespace Sluice.Providers.Upstream;

/// <summary>Reads upstream embeddings answers (OpenAI's list, Ollama's <c>/api/embed</c>, Gemini's batch) into vectors.</summary>
internal static class EmbeddingAnswers
{
    /// <summary>OpenAI: <c>data[].embedding</c> (float arrays or base64, placed by <c>index</c>) and <c>usage.prompt_tokens</c>.</summary>
    public static (float[][] Vectors, int? PromptTokens) ReadOpenAI(byte[] answer, int expected, UpstreamTransport transport)
    {
        using var document = Parse(answer, transport);
        var root = document.RootElement;
        if (!root.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
        {
            throw transport.Malformed("its embeddings answer has no data array");
        }

        var vectors = new float[]?[expected];
        var position = 0;
        foreach (var item in data.EnumerateArray())
        {
            var index = item.TryGetProperty("index", out var i) && i.TryGetInt32(out var value) ? value : position;
            position++;
            if (index < 0 || index >= expected || !item.TryGetProperty("embedding", out var embedding))
            {
                throw transport.Malformed($"its embeddings answer has an entry without a usable index or embedding (index {index} of {expected})");
            }

            vectors[index] = embedding.ValueKind == JsonValueKind.String
                ? EmbeddingWriter.DecodeBase64(embedding.GetString()!)
                : Floats(embedding, transport);
        }

        int? tokens = root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object
            && usage.TryGetProperty("prompt_tokens", out var prompt) && prompt.TryGetInt32(out var count) ? count : null;
        return (Complete(vectors, transport), tokens);
    }

    /// <summary>Ollama <c>/api/embed</c>: <c>embeddings</c> and <c>prompt_eval_count</c>.</summary>
    public static (float[][] Vectors, int? PromptTokens) ReadOllama(byte[] answer, int expected, UpstreamTransport transport)
    {
        using var document = Parse(answer, transport);
        var root = document.RootElement;
        if (!root.TryGetProperty("embeddings", out var embeddings) || embeddings.ValueKind != JsonValueKind.Array || embeddings.GetArrayLength() != expected)
        {
            throw transport.Malformed($"its /api/embed answer does not have {expected} embeddings");
        }

        var vectors = embeddings.EnumerateArray().Select(e => Floats(e, transport)).ToArray();
        int? tokens = root.TryGetProperty("prompt_eval_count", out var count) && count.TryGetInt32(out var value) ? value : null;
        return (vectors, tokens);
    }

    /// <summary>Gemini <c>batchEmbedContents</c>: <c>embeddings[].values</c>; Gemini reports no token count.</summary>
    public static float[][] ReadGemini(byte[] answer, int expected, UpstreamTransport transport)
    {
        using var document = Parse(answer, transport);
        if (!document.RootElement.TryGetProperty("embeddings", out var embeddings) || embeddings.ValueKind != JsonValueKind.Array
            || embeddings.GetArrayLength() != expected)
        {
            throw transport.Malformed($"its batchEmbedContents answer does not have {expected} embeddings");
        }

        return embeddings.EnumerateArray()
            .Select(e => e.TryGetProperty("values", out var values) ? Floats(values, transport) : throw transport.Malformed("an embedding has no values"))
            .ToArray();
    }

    /// <summary>The client's body with <c>model</c> replaced by the upstream's name, every other field as sent.</summary>
    public static byte[] WithModel(ReadOnlyMemory<byte> raw, string upstreamModel)
    {
        var buffer = new ArrayBufferWriter<byte>(raw.Length + 64);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true }))
        {
            json.WriteStartObject();
            json.WriteString("model"u8, upstreamModel);
            CopyFields(json, raw.Span, static name => name != "model");
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Copies the top-level fields of the client's JSON object <paramref name="raw"/> that <paramref name="keep"/> accepts
    /// (by name) into the open object <paramref name="json"/>, each value byte for byte.
    /// </summary>
    public static void CopyFields(Utf8JsonWriter json, ReadOnlySpan<byte> raw, Func<string, bool> keep)
    {
        var reader = new Utf8JsonReader(raw, new JsonReaderOptions { MaxDepth = 256 });
        reader.Read();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = reader.GetString()!;
            reader.Read();
            var start = (int)reader.TokenStartIndex;
            reader.Skip();
            if (keep(name))
            {
                json.WritePropertyName(name);
                json.WriteRawValue(raw[start..(int)reader.BytesConsumed], skipInputValidation: true);
            }
        }
    }

    private static JsonDocument Parse(byte[] answer, UpstreamTransport transport)
    {
        try
        {
            var document = JsonDocument.Parse(answer);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                document.Dispose();
                throw transport.Malformed("its embeddings answer is not a JSON object");
            }

            return document;
        }
        catch (JsonException ex)
        {
            throw transport.Malformed($"its embeddings answer is not valid JSON (\"{UpstreamStreaming.Excerpt(answer)}\")", ex);
        }
    }

    private static float[] Floats(JsonElement array, UpstreamTransport transport)
    {
        if (array.ValueKind != JsonValueKind.Array)
        {
            throw transport.Malformed("an embedding is not an array of numbers");
        }

        var vector = new float[array.GetArrayLength()];
        var i = 0;
        foreach (var value in array.EnumerateArray())
        {
            vector[i++] = value.ValueKind == JsonValueKind.Number ? value.GetSingle() : throw transport.Malformed("an embedding holds something that is not a number");
        }

        return vector;
    }

    private static float[][] Complete(float[]?[] vectors, UpstreamTransport transport)
    {
        var complete = new float[vectors.Length][];
        for (var i = 0; i < vectors.Length; i++)
        {
            complete[i] = vectors[i]
                ?? throw transport.Malformed($"its embeddings answer has fewer vectors than inputs ({vectors.Count(v => v is not null)} of {vectors.Length})");
        }

        return complete;
    }

    /// <summary>Refuses token-id inputs for upstreams that embed text only.</summary>
    public static void RequireText(EmbeddingRequest request, UpstreamTransport transport)
    {
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            if (request.Inputs[i].Text is null)
            {
                var param = request.Inputs.Count == 1 ? "input" : $"input[{i}]";
                throw ChatException.BadRequest(
                    $"Model \"{transport.Options.Name}\" ({transport.ProviderLabel}) embeds text, not token ids ({param}). Send the text itself.",
                    param, "unsupported_value");
            }
        }
    }
}
