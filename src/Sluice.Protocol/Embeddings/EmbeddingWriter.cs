using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;
using Sluice.Protocol.OpenAI;

namespace Sluice.Protocol.Embeddings;

/// <summary>Writes embeddings answers: OpenAI's list object, Ollama's <c>/api/embed</c> and <c>/api/embeddings</c> objects.</summary>
public static class EmbeddingWriter
{
    /// <summary>
    /// OpenAI: <c>{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}</c>, each
    /// vector a float array or (base64) the base64 of its little-endian float32 bytes. An upstream's verbatim answer is
    /// written as it is.
    /// </summary>
    public static void WriteOpenAI(IBufferWriter<byte> output, string model, EmbeddingResult result, EmbeddingEncoding encoding, int promptTokens)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(result);
        if (!result.Verbatim.IsEmpty)
        {
            output.Write(result.Verbatim.Span);
            return;
        }

        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString("object"u8, "list"u8);
        json.WriteStartArray("data"u8);
        for (var i = 0; i < result.Vectors.Count; i++)
        {
            json.WriteStartObject();
            json.WriteString("object"u8, "embedding"u8);
            json.WriteNumber("index"u8, i);
            if (encoding == EmbeddingEncoding.Base64)
            {
                json.WriteBase64String("embedding"u8, MemoryMarshal.AsBytes(result.Vectors[i].AsSpan()));
            }
            else
            {
                WriteFloats(json, "embedding"u8, result.Vectors[i]);
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteString("model"u8, model);
        json.WriteStartObject("usage"u8);
        json.WriteNumber("prompt_tokens"u8, promptTokens);
        json.WriteNumber("total_tokens"u8, promptTokens);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>
    /// Ollama <c>/api/embed</c>: <c>{"model", "embeddings": [[…]], "total_duration", "load_duration", "prompt_eval_count"}</c>
    /// (durations in nanoseconds).
    /// </summary>
    public static void WriteOllamaEmbed(IBufferWriter<byte> output, string model, EmbeddingResult result, int promptTokens, TimeSpan duration)
    {
        ArgumentNullException.ThrowIfNull(result);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        json.WriteString("model"u8, model);
        json.WriteStartArray("embeddings"u8);
        foreach (var vector in result.Vectors)
        {
            WriteFloats(json, default, vector);
        }

        json.WriteEndArray();
        json.WriteNumber("total_duration"u8, duration.Ticks * 100);
        json.WriteNumber("load_duration"u8, 0);
        json.WriteNumber("prompt_eval_count"u8, promptTokens);
        json.WriteEndObject();
    }

    /// <summary>Ollama <c>/api/embeddings</c>: <c>{"embedding": […]}</c>.</summary>
    public static void WriteOllamaEmbeddings(IBufferWriter<byte> output, EmbeddingResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        using var json = new Utf8JsonWriter(output, OpenAIJson.WriterOptions);
        json.WriteStartObject();
        WriteFloats(json, "embedding"u8, result.Vectors.Count > 0 ? result.Vectors[0] : []);
        json.WriteEndObject();
    }

    /// <summary>The vector of base64 little-endian float32 bytes (OpenAI's <c>base64</c> encoding).</summary>
    public static float[] DecodeBase64(string base64)
    {
        ArgumentNullException.ThrowIfNull(base64);
        var bytes = Convert.FromBase64String(base64);
        if (bytes.Length % sizeof(float) != 0)
        {
            throw new FormatException($"A base64 embedding must hold whole float32 values; it has {bytes.Length} bytes.");
        }

        return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    private static void WriteFloats(Utf8JsonWriter json, ReadOnlySpan<byte> name, float[] vector)
    {
        if (name.IsEmpty)
        {
            json.WriteStartArray();
        }
        else
        {
            json.WriteStartArray(name);
        }

        foreach (var value in vector)
        {
            json.WriteNumberValue(value);
        }

        json.WriteEndArray();
    }
}
