using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Protocol.Embeddings;

/// <summary>
/// Parses embeddings requests — OpenAI's <c>POST /v1/embeddings</c>, Ollama's <c>POST /api/embed</c> and the older
/// <c>POST /api/embeddings</c> — into an <see cref="EmbeddingRequest"/>, refusing bad input with a 400 naming the parameter.
/// </summary>
public static class EmbeddingRequestParser
{
    /// <summary>Most inputs in one request (OpenAI's own limit).</summary>
    public const int MaxInputs = 2048;

    /// <summary>
    /// OpenAI: <c>input</c> is a string, an array of strings, an array of token ids or an array of token-id arrays;
    /// <c>model</c>, <c>encoding_format</c> (<c>float</c> or <c>base64</c>), <c>dimensions</c>, <c>user</c>. The body is
    /// kept as <see cref="EmbeddingRequest.RawBody"/> for OpenAI-compatible upstreams.
    /// </summary>
    /// <exception cref="ChatException">The body is not a valid request.</exception>
    public static EmbeddingRequest ParseOpenAI(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = RequestFields.ParseObject(utf8Json, "{\"model\": \"sim-embed\", \"input\": \"The food was delicious\"}");
        var root = document.RootElement;
        var model = RequireModel(root, "GET /v1/models");
        if (!RequestFields.TryGet(root, "input", out var input))
        {
            throw RequestFields.Missing("input", "send the text to embed as a string, or several as an array of strings.");
        }

        var format = RequestFields.OptionalString(root, "encoding_format");
        var encoding = format switch
        {
            null or "float" => EmbeddingEncoding.Float,
            "base64" => EmbeddingEncoding.Base64,
            _ => throw ChatException.BadRequest($"encoding_format must be \"float\" or \"base64\" (got \"{format}\").", "encoding_format"),
        };

        return new EmbeddingRequest
        {
            Model = model,
            Inputs = ParseOpenAIInput(input),
            Dimensions = Dimensions(root),
            Encoding = encoding,
            User = RequestFields.OptionalString(root, "user"),
            RawBody = utf8Json,
        };
    }

    /// <summary>
    /// Ollama <c>/api/embed</c>: <c>input</c> is a string or an array of strings; <c>truncate</c> (default true),
    /// <c>dimensions</c>; <c>options</c> and <c>keep_alive</c> are accepted and ignored.
    /// </summary>
    /// <exception cref="ChatException">The body is not a valid request.</exception>
    public static EmbeddingRequest ParseOllamaEmbed(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = RequestFields.ParseObject(utf8Json, "{\"model\": \"sim-embed\", \"input\": \"Why is the sky blue?\"}");
        var root = document.RootElement;
        var model = RequireModel(root, "GET /api/tags");
        if (!RequestFields.TryGet(root, "input", out var input))
        {
            throw RequestFields.Missing("input", "send the text to embed as a string, or several as an array of strings.");
        }

        List<EmbeddingInput> inputs;
        if (input.ValueKind == JsonValueKind.String)
        {
            inputs = [Text(input.GetString()!, "input")];
        }
        else if (input.ValueKind == JsonValueKind.Array)
        {
            inputs = [];
            var index = 0;
            foreach (var item in input.EnumerateArray())
            {
                var path = $"input[{index++}]";
                inputs.Add(item.ValueKind == JsonValueKind.String ? Text(item.GetString()!, path) : throw RequestFields.TypeError(path, "a string"));
            }

            CheckCount(inputs.Count);
        }
        else
        {
            throw RequestFields.TypeError("input", "a string or an array of strings");
        }

        return new EmbeddingRequest
        {
            Model = model,
            Inputs = inputs,
            Dimensions = Dimensions(root),
            Truncate = RequestFields.OptionalBool(root, "truncate") ?? true,
        };
    }

    /// <summary>Ollama's older <c>/api/embeddings</c>: one <c>prompt</c>, one vector.</summary>
    /// <exception cref="ChatException">The body is not a valid request.</exception>
    public static EmbeddingRequest ParseOllamaEmbeddings(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = RequestFields.ParseObject(utf8Json, "{\"model\": \"sim-embed\", \"prompt\": \"Why is the sky blue?\"}");
        var root = document.RootElement;
        var model = RequireModel(root, "GET /api/tags");
        var prompt = RequestFields.OptionalString(root, "prompt")
            ?? throw RequestFields.Missing("prompt", "send the text to embed, e.g. \"prompt\": \"Why is the sky blue?\".");
        return new EmbeddingRequest { Model = model, Inputs = [Text(prompt, "prompt")], Truncate = true };
    }

    private static List<EmbeddingInput> ParseOpenAIInput(JsonElement input)
    {
        switch (input.ValueKind)
        {
            case JsonValueKind.String:
                return [Text(input.GetString()!, "input")];
            case JsonValueKind.Array:
                var count = input.GetArrayLength();
                if (count == 0)
                {
                    throw ChatException.BadRequest("input is an empty array; send at least one text (or token list) to embed.", "input", "empty_array");
                }

                CheckCount(count);
                var first = input[0];
                if (first.ValueKind == JsonValueKind.Number)
                {
                    // One input given as token ids.
                    return [new EmbeddingInput(null, Tokens(input, "input"))];
                }

                var inputs = new List<EmbeddingInput>(count);
                var index = 0;
                foreach (var item in input.EnumerateArray())
                {
                    var path = $"input[{index++}]";
                    inputs.Add(item.ValueKind switch
                    {
                        JsonValueKind.String => Text(item.GetString()!, path),
                        JsonValueKind.Array => new EmbeddingInput(null, Tokens(item, path)),
                        _ => throw RequestFields.TypeError(path, "a string (or every input an array of token ids)"),
                    });
                }

                return inputs;
            default:
                throw RequestFields.TypeError("input", "a string, an array of strings, an array of token ids or an array of token-id arrays");
        }
    }

    private static EmbeddingInput Text(string text, string path) =>
        text.Length == 0
            ? throw ChatException.BadRequest($"{path} is empty; every input must have text to embed.", path, "empty_value")
            : new EmbeddingInput(text, null);

    private static int[] Tokens(JsonElement array, string path)
    {
        if (array.GetArrayLength() == 0)
        {
            throw ChatException.BadRequest($"{path} is an empty token list; send at least one token id.", path, "empty_array");
        }

        var tokens = new int[array.GetArrayLength()];
        var index = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id) || id < 0)
            {
                throw RequestFields.TypeError($"{path}[{index}]", "a token id (an integer of 0 or more)");
            }

            tokens[index++] = id;
        }

        return tokens;
    }

    private static void CheckCount(int count)
    {
        if (count > MaxInputs)
        {
            throw ChatException.BadRequest($"input has {count} entries; the limit is {MaxInputs} per request. Split them over several requests.", "input", "array_above_max_length");
        }
    }

    private static int? Dimensions(JsonElement root)
    {
        var dimensions = RequestFields.OptionalInt(root, "dimensions");
        return dimensions is < 1
            ? throw ChatException.BadRequest($"dimensions must be at least 1 (got {dimensions}).", "dimensions")
            : dimensions;
    }

    private static string RequireModel(JsonElement root, string listing)
    {
        var model = RequestFields.OptionalString(root, "model");
        return string.IsNullOrEmpty(model)
            ? throw RequestFields.Missing("model", $"name the embedding model, e.g. \"model\": \"sim-embed\" ({listing} lists the models).")
            : model;
    }
}
