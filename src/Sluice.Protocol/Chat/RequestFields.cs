using System.Globalization;
using System.Text.Json;

namespace Sluice.Protocol.Chat;

/// <summary>
/// Typed reads of request-body fields shared by the non-OpenAI request parsers (Anthropic, Ollama): every
/// wrong type becomes a 400 naming the parameter path.
/// </summary>
internal static class RequestFields
{
    private const int MaxDepth = 64;

    /// <summary>Parses a body that must be a JSON object; <paramref name="example"/> is shown when it is empty.</summary>
    public static JsonDocument ParseObject(ReadOnlyMemory<byte> utf8Json, string example)
    {
        if (utf8Json.IsEmpty)
        {
            throw ChatException.BadRequest($"The request body is empty. Send a JSON object such as {example}.", null, "invalid_json");
        }

        var document = JsonInput.Parse(utf8Json, MaxDepth);

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw ChatException.BadRequest("The request body must be a JSON object.", null, "invalid_type");
        }

        return document;
    }

    /// <summary>True when <paramref name="obj"/> has <paramref name="name"/> with a non-null value.</summary>
    public static bool TryGet(JsonElement obj, string name, out JsonElement value) =>
        obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

    public static string? OptionalString(JsonElement obj, string name, string? path = null)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw TypeError(path ?? name, "a string");
    }

    public static bool? OptionalBool(JsonElement obj, string name, string? path = null)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw TypeError(path ?? name, "a boolean"),
        };
    }

    public static int? OptionalInt(JsonElement obj, string name, string? path = null)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var result))
        {
            throw TypeError(path ?? name, "an integer");
        }

        return result;
    }

    public static long? OptionalLong(JsonElement obj, string name, string? path = null)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var result))
        {
            throw TypeError(path ?? name, "an integer");
        }

        return result;
    }

    public static double? OptionalDouble(JsonElement obj, string name, string? path = null)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number ? value.GetDouble() : throw TypeError(path ?? name, "a number");
    }

    /// <summary>A number in [<paramref name="min"/>, <paramref name="max"/>], or null when absent.</summary>
    public static double? OptionalRange(JsonElement obj, string name, double min, double max, string? path = null)
    {
        var value = OptionalDouble(obj, name, path);
        if (value is { } v && (v < min || v > max))
        {
            throw ChatException.BadRequest(
                $"{path ?? name} must be between {Format(min)} and {Format(max)} (got {Format(v)}).", path ?? name);
        }

        return value;
    }

    /// <summary>A string or an array of strings (empty strings dropped); null when absent or empty.</summary>
    public static List<string>? OptionalStrings(JsonElement obj, string name, string? path = null, bool allowSingle = true)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        var expected = allowSingle ? "a string or an array of strings" : "an array of strings";
        if (allowSingle && value.ValueKind == JsonValueKind.String)
        {
            var single = value.GetString()!;
            return single.Length == 0 ? null : [single];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw TypeError(path ?? name, expected);
        }

        var result = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw TypeError(path ?? name, expected);
            }

            var text = item.GetString()!;
            if (text.Length > 0)
            {
                result.Add(text);
            }
        }

        return result.Count == 0 ? null : result;
    }

    /// <summary>A flat object of scalar values, as strings (numbers and booleans keep their JSON text).</summary>
    public static Dictionary<string, string>? OptionalStringMap(JsonElement obj, string name)
    {
        if (!TryGet(obj, name, out var value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw TypeError(name, "an object of string values");
        }

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            result[property.Name] = property.Value.ValueKind switch
            {
                JsonValueKind.String => property.Value.GetString()!,
                JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => property.Value.GetRawText(),
                JsonValueKind.Null => string.Empty,
                _ => throw TypeError($"{name}.{property.Name}", "a string"),
            };
        }

        return result;
    }

    public static ChatException TypeError(string param, string expected) =>
        ChatException.BadRequest($"{param} must be {expected}.", param, "invalid_type");

    public static ChatException Missing(string param, string hint) =>
        ChatException.BadRequest($"{param} is required: {hint}", param, "missing_required_parameter");

    private static string Format(double value) => value.ToString(CultureInfo.InvariantCulture);
}
