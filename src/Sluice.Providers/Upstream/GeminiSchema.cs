using System.Text.Json;

namespace Sluice.Providers.Upstream;

/// <summary>
/// A JSON schema rewritten as Gemini's <c>responseSchema</c>, which reads a subset of OpenAPI 3.0 schemas: upper-case
/// types, <c>nullable</c> instead of type unions with <c>null</c>, <c>const</c> as a one-value <c>enum</c>, local
/// <c>$ref</c>s inlined (recursion cut after a few levels), and the keywords Gemini rejects
/// (<c>additionalProperties</c>, <c>$defs</c>, <c>$schema</c>, …) left out. Property order is kept with
/// <c>propertyOrdering</c>, since Gemini otherwise sorts the properties.
/// </summary>
internal static class GeminiSchema
{
    private const int MaxRefDepth = 4;

    private static readonly HashSet<string> Copied = new(StringComparer.Ordinal)
    {
        "format", "description", "title", "pattern", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
        "minProperties", "maxProperties", "required", "example", "default",
    };

    public static void Write(Utf8JsonWriter json, JsonElement schema) => Write(json, schema, schema, 0);

    private static void Write(Utf8JsonWriter json, JsonElement schema, JsonElement root, int refDepth)
    {
        if (schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$ref", out var reference) && reference.ValueKind == JsonValueKind.String)
        {
            var target = Resolve(root, reference.GetString()!);
            if (target.ValueKind == JsonValueKind.Object && refDepth < MaxRefDepth)
            {
                Write(json, target, root, refDepth + 1);
            }
            else
            {
                // A recursion cut here: an object Gemini may leave empty.
                json.WriteStartObject();
                json.WriteString("type"u8, "OBJECT"u8);
                json.WriteBoolean("nullable"u8, true);
                json.WriteEndObject();
            }

            return;
        }

        json.WriteStartObject();
        if (schema.ValueKind != JsonValueKind.Object)
        {
            json.WriteString("type"u8, "STRING"u8);
            json.WriteEndObject();
            return;
        }

        var (type, nullable) = TypeOf(schema);
        if (type is not null)
        {
            json.WriteString("type"u8, type.ToUpperInvariant());
        }

        if (nullable || (schema.TryGetProperty("nullable", out var n) && n.ValueKind == JsonValueKind.True))
        {
            json.WriteBoolean("nullable"u8, true);
        }

        foreach (var property in schema.EnumerateObject())
        {
            switch (property.Name)
            {
                case "properties" when property.Value.ValueKind == JsonValueKind.Object:
                    json.WriteStartObject("properties"u8);
                    foreach (var child in property.Value.EnumerateObject())
                    {
                        json.WritePropertyName(child.Name);
                        Write(json, child.Value, root, refDepth);
                    }

                    json.WriteEndObject();
                    json.WriteStartArray("propertyOrdering"u8);
                    foreach (var child in property.Value.EnumerateObject())
                    {
                        json.WriteStringValue(child.Name);
                    }

                    json.WriteEndArray();
                    break;
                case "items" when property.Value.ValueKind == JsonValueKind.Object:
                    json.WritePropertyName("items"u8);
                    Write(json, property.Value, root, refDepth);
                    break;
                case "anyOf" or "oneOf" when property.Value.ValueKind == JsonValueKind.Array:
                    json.WriteStartArray("anyOf"u8);
                    foreach (var option in property.Value.EnumerateArray())
                    {
                        Write(json, option, root, refDepth);
                    }

                    json.WriteEndArray();
                    break;
                case "enum" when property.Value.ValueKind == JsonValueKind.Array:
                    // Gemini's enums are strings.
                    json.WriteStartArray("enum"u8);
                    foreach (var value in property.Value.EnumerateArray().Where(v => v.ValueKind != JsonValueKind.Null))
                    {
                        json.WriteStringValue(value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText());
                    }

                    json.WriteEndArray();
                    break;
                case "const":
                    json.WriteStartArray("enum"u8);
                    json.WriteStringValue(property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : property.Value.GetRawText());
                    json.WriteEndArray();
                    break;
                case var name when Copied.Contains(name):
                    json.WritePropertyName(name);
                    property.Value.WriteTo(json);
                    break;
            }
        }

        json.WriteEndObject();
    }

    private static (string? Type, bool Nullable) TypeOf(JsonElement schema)
    {
        if (!schema.TryGetProperty("type", out var type))
        {
            return schema.TryGetProperty("properties", out _) ? ("object", false)
                : schema.TryGetProperty("items", out _) ? ("array", false)
                : (null, false);
        }

        if (type.ValueKind == JsonValueKind.String)
        {
            return type.GetString() == "null" ? ("string", true) : (type.GetString(), false);
        }

        if (type.ValueKind != JsonValueKind.Array)
        {
            return (null, false);
        }

        var names = type.EnumerateArray().Where(t => t.ValueKind == JsonValueKind.String).Select(t => t.GetString()!).ToList();
        var nonNull = names.FirstOrDefault(t => t != "null");
        return (nonNull ?? "string", names.Contains("null"));
    }

    private static JsonElement Resolve(JsonElement root, string reference)
    {
        if (!reference.StartsWith('#'))
        {
            return default;
        }

        var target = root;
        foreach (var segment in reference[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (target.ValueKind != JsonValueKind.Object || !target.TryGetProperty(segment.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal), out target))
            {
                return default;
            }
        }

        return target;
    }
}
