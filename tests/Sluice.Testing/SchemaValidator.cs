using System.Globalization;
using System.Text.Json;

namespace Sluice.Testing;

/// <summary>
/// A JSON Schema validator for the subset structured outputs use (no package on the mirror is needed for it): <c>type</c>
/// (and unions), <c>enum</c>, <c>const</c>, <c>properties</c>/<c>required</c>/<c>additionalProperties</c>, <c>items</c>,
/// <c>minItems</c>/<c>maxItems</c>/<c>uniqueItems</c>, <c>minLength</c>/<c>maxLength</c>, <c>minimum</c>/<c>maximum</c> and
/// their exclusive forms, <c>multipleOf</c>, <c>anyOf</c>/<c>oneOf</c>/<c>allOf</c>, local <c>$ref</c>s, and the
/// <c>date-time</c>, <c>date</c>, <c>email</c>, <c>uri</c> and <c>uuid</c> formats.
/// </summary>
public static class SchemaValidator
{
    /// <summary>Every violation of <paramref name="schema"/> by <paramref name="value"/>, as "path: what"; empty when valid.</summary>
    public static List<string> Validate(JsonElement value, JsonElement schema)
    {
        var errors = new List<string>();
        Check(value, schema, schema, "$", errors);
        return errors;
    }

    private static void Check(JsonElement value, JsonElement schema, JsonElement root, string path, List<string> errors)
    {
        if (schema.ValueKind == JsonValueKind.True)
        {
            return;
        }

        if (schema.ValueKind == JsonValueKind.False)
        {
            errors.Add($"{path}: no value is allowed");
            return;
        }

        if (schema.TryGetProperty("$ref", out var reference))
        {
            var target = root;
            foreach (var segment in reference.GetString()!.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                target = target.GetProperty(segment);
            }

            Check(value, target, root, path, errors);
        }

        if (schema.TryGetProperty("type", out var type))
        {
            var types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!).ToList() : [type.GetString()!];
            if (!types.Any(t => IsType(value, t)))
            {
                errors.Add($"{path}: {value.ValueKind} is not {string.Join(" or ", types)}");
                return;
            }
        }

        if (schema.TryGetProperty("const", out var constant) && !JsonEquals(value, constant))
        {
            errors.Add($"{path}: not the const {constant.GetRawText()}");
        }

        if (schema.TryGetProperty("enum", out var values) && !values.EnumerateArray().Any(v => JsonEquals(value, v)))
        {
            errors.Add($"{path}: {value.GetRawText()} is not one of {values.GetRawText()}");
        }

        if (schema.TryGetProperty("anyOf", out var anyOf) && !anyOf.EnumerateArray().Any(s => Validate(value, s, root)))
        {
            errors.Add($"{path}: matches none of anyOf");
        }

        if (schema.TryGetProperty("oneOf", out var oneOf) && oneOf.EnumerateArray().Count(s => Validate(value, s, root)) != 1)
        {
            errors.Add($"{path}: does not match exactly one of oneOf");
        }

        if (schema.TryGetProperty("allOf", out var allOf))
        {
            foreach (var part in allOf.EnumerateArray())
            {
                Check(value, part, root, path, errors);
            }
        }

        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                var properties = schema.TryGetProperty("properties", out var p) ? p : default;
                if (schema.TryGetProperty("required", out var required))
                {
                    foreach (var name in required.EnumerateArray().Select(r => r.GetString()!))
                    {
                        if (!value.TryGetProperty(name, out _))
                        {
                            errors.Add($"{path}: required property '{name}' is missing");
                        }
                    }
                }

                foreach (var property in value.EnumerateObject())
                {
                    if (properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(property.Name, out var propertySchema))
                    {
                        Check(property.Value, propertySchema, root, $"{path}.{property.Name}", errors);
                    }
                    else if (schema.TryGetProperty("additionalProperties", out var extra))
                    {
                        Check(property.Value, extra, root, $"{path}.{property.Name}", errors);
                    }
                }

                break;
            case JsonValueKind.Array:
                var count = value.GetArrayLength();
                if (Int(schema, "minItems") is { } minItems && count < minItems)
                {
                    errors.Add($"{path}: {count} items, fewer than {minItems}");
                }

                if (Int(schema, "maxItems") is { } maxItems && count > maxItems)
                {
                    errors.Add($"{path}: {count} items, more than {maxItems}");
                }

                if (schema.TryGetProperty("uniqueItems", out var unique) && unique.ValueKind == JsonValueKind.True
                    && value.EnumerateArray().Select(v => v.GetRawText()).Distinct().Count() != count)
                {
                    errors.Add($"{path}: items are not unique");
                }

                if (schema.TryGetProperty("items", out var items))
                {
                    var index = 0;
                    foreach (var item in value.EnumerateArray())
                    {
                        Check(item, items, root, $"{path}[{index++}]", errors);
                    }
                }

                break;
            case JsonValueKind.String:
                var text = value.GetString()!;
                if (Int(schema, "minLength") is { } minLength && text.Length < minLength)
                {
                    errors.Add($"{path}: shorter than {minLength}");
                }

                if (Int(schema, "maxLength") is { } maxLength && text.Length > maxLength)
                {
                    errors.Add($"{path}: longer than {maxLength}");
                }

                if (schema.TryGetProperty("format", out var format) && !FormatOk(text, format.GetString()!))
                {
                    errors.Add($"{path}: '{text}' is not a {format.GetString()}");
                }

                break;
            case JsonValueKind.Number:
                var number = value.GetDouble();
                if (Number(schema, "minimum") is { } min && number < min)
                {
                    errors.Add($"{path}: {number} < minimum {min}");
                }

                if (Number(schema, "maximum") is { } max && number > max)
                {
                    errors.Add($"{path}: {number} > maximum {max}");
                }

                if (Number(schema, "exclusiveMinimum") is { } exMin && number <= exMin)
                {
                    errors.Add($"{path}: {number} <= exclusiveMinimum {exMin}");
                }

                if (Number(schema, "exclusiveMaximum") is { } exMax && number >= exMax)
                {
                    errors.Add($"{path}: {number} >= exclusiveMaximum {exMax}");
                }

                if (Number(schema, "multipleOf") is { } step && Math.Abs(Math.IEEERemainder(number, step)) > 1e-9)
                {
                    errors.Add($"{path}: {number} is not a multiple of {step}");
                }

                break;
        }
    }

    private static bool Validate(JsonElement value, JsonElement schema, JsonElement root)
    {
        var errors = new List<string>();
        Check(value, schema, root, "$", errors);
        return errors.Count == 0;
    }

    private static bool IsType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        _ => false,
    };

    private static bool FormatOk(string text, string format) => format switch
    {
        "date-time" => DateTimeOffset.TryParseExact(text, "yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _),
        "date" => DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out _),
        "email" => text.Count(c => c == '@') == 1 && text.IndexOf('@') > 0 && text.IndexOf('.', text.IndexOf('@')) > text.IndexOf('@') + 1,
        "uri" => Uri.TryCreate(text, UriKind.Absolute, out _),
        "uuid" => Guid.TryParse(text, out _),
        _ => true,
    };

    private static bool JsonEquals(JsonElement a, JsonElement b) => JsonElement.DeepEquals(a, b);

    private static int? Int(JsonElement schema, string name) =>
        schema.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    private static double? Number(JsonElement schema, string name) =>
        schema.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
}
