using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Sluice.Protocol.Chat;

namespace Sluice.Providers.Simulation;

/// <summary>
/// Writes the simulated model's structured answers: a JSON object about the prompt for <c>json_object</c>, and for
/// <c>json_schema</c> a value that validates against the schema — types (and type unions), <c>enum</c>/<c>const</c>,
/// nested objects with <c>required</c> and <c>additionalProperties</c>, arrays with <c>minItems</c>/<c>maxItems</c>/
/// <c>uniqueItems</c>, string lengths and common <c>format</c>s, numeric bounds and <c>multipleOf</c>, <c>anyOf</c>/
/// <c>oneOf</c>/<c>allOf</c>, and local <c>$ref</c>s (<c>#/$defs/…</c>, recursion bounded). <c>pattern</c> is not
/// followed (a regular expression cannot be satisfied in general without a generator for it).
/// </summary>
internal static class SimulatedJson
{
    private const int MaxDepth = 12;

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The answer's JSON text for <paramref name="format"/>, using the prompt's words.</summary>
    public static string Compose(ResponseFormat format, string prompt, Random random)
    {
        var topics = SimulatedAnswerComposer.ExtractTopics(prompt);
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            if (format.Type == ResponseFormat.JsonSchemaType && format.Schema is { } schema)
            {
                new Generator(schema, topics, random).Write(json, schema, "answer", 0);
            }
            else
            {
                WriteFreeObject(json, topics, random);
            }
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteFreeObject(Utf8JsonWriter json, List<string> topics, Random random)
    {
        json.WriteStartObject();
        json.WriteString("topic", topics[0]);
        json.WriteString("summary", Sentence(topics, random));
        json.WriteStartArray("key_points");
        for (var i = 0; i < Math.Min(3, topics.Count + 1); i++)
        {
            json.WriteStringValue(Sentence(topics, random));
        }

        json.WriteEndArray();
        json.WriteNumber("confidence", Math.Round(0.5 + (random.NextDouble() * 0.45), 2));
        json.WriteBoolean("simulated", true);
        json.WriteEndObject();
    }

    private static string Sentence(List<string> topics, Random random) =>
        random.Next(3) switch
        {
            0 => $"{Capital(Pick(topics, random))} relates closely to {Pick(topics, random)}.",
            1 => $"A simulated note about {Pick(topics, random)}.",
            _ => $"{Capital(Pick(topics, random))} depends on context.",
        };

    private static string Pick(List<string> items, Random random) => items[random.Next(items.Count)];

    private static string Capital(string word) => word.Length == 0 ? word : char.ToUpperInvariant(word[0]) + word[1..];

    private sealed class Generator(JsonElement root, List<string> topics, Random random)
    {
        public void Write(Utf8JsonWriter json, JsonElement schema, string name, int depth)
        {
            schema = Resolve(schema);
            if (schema.ValueKind == JsonValueKind.True || schema.ValueKind != JsonValueKind.Object)
            {
                json.WriteStringValue(Pick(topics, random));
                return;
            }

            if (schema.TryGetProperty("const", out var constant))
            {
                constant.WriteTo(json);
                return;
            }

            if (schema.TryGetProperty("enum", out var values) && values.ValueKind == JsonValueKind.Array && values.GetArrayLength() > 0)
            {
                values[random.Next(values.GetArrayLength())].WriteTo(json);
                return;
            }

            foreach (var keyword in (string[])["anyOf", "oneOf"])
            {
                if (schema.TryGetProperty(keyword, out var options) && options.ValueKind == JsonValueKind.Array && options.GetArrayLength() > 0)
                {
                    // Deep in a recursive schema, the first non-recursive option ends the recursion.
                    var choice = depth >= MaxDepth / 2 ? Shallowest(options) : options[random.Next(options.GetArrayLength())];
                    Write(json, choice, name, depth + 1);
                    return;
                }
            }

            if (schema.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && all.GetArrayLength() > 0)
            {
                WriteObject(json, [schema, .. all.EnumerateArray().Select(Resolve)], depth);
                return;
            }

            switch (ChooseType(schema, depth))
            {
                case "object":
                    WriteObject(json, [schema], depth);
                    break;
                case "array":
                    WriteArray(json, schema, name, depth);
                    break;
                case "integer":
                    json.WriteNumberValue(Integer(schema));
                    break;
                case "number":
                    json.WriteNumberValue(Number(schema));
                    break;
                case "boolean":
                    json.WriteBooleanValue(random.Next(2) == 0);
                    break;
                case "null":
                    json.WriteNullValue();
                    break;
                default:
                    json.WriteStringValue(Text(schema, name));
                    break;
            }
        }

        private JsonElement Resolve(JsonElement schema)
        {
            for (var hops = 0; hops < 32 && schema.ValueKind == JsonValueKind.Object
                && schema.TryGetProperty("$ref", out var reference) && reference.ValueKind == JsonValueKind.String; hops++)
            {
                var path = reference.GetString()!;
                if (!path.StartsWith("#", StringComparison.Ordinal))
                {
                    break;
                }

                var target = root;
                foreach (var segment in path.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
                {
                    var key = segment.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                    if (target.ValueKind != JsonValueKind.Object || !target.TryGetProperty(key, out target))
                    {
                        return default;
                    }
                }

                schema = target;
            }

            return schema;
        }

        private JsonElement Shallowest(JsonElement options)
        {
            foreach (var option in options.EnumerateArray())
            {
                var resolved = Resolve(option);
                if (resolved.ValueKind == JsonValueKind.Object && ChooseType(resolved, MaxDepth) is not ("object" or "array"))
                {
                    return option;
                }
            }

            return options[0];
        }

        private static IEnumerable<string> Types(JsonElement schema)
        {
            if (!schema.TryGetProperty("type", out var type))
            {
                return schema.TryGetProperty("properties", out _) ? ["object"] : schema.TryGetProperty("items", out _) ? ["array"] : ["string"];
            }

            return type.ValueKind switch
            {
                JsonValueKind.String => [type.GetString()!],
                JsonValueKind.Array => type.EnumerateArray().Where(t => t.ValueKind == JsonValueKind.String).Select(t => t.GetString()!).ToList(),
                _ => ["string"],
            };
        }

        private string ChooseType(JsonElement schema, int depth)
        {
            var types = Types(schema).ToList();
            if (types.Count == 0)
            {
                return "string";
            }

            if (depth >= MaxDepth && types.Contains("null"))
            {
                return "null";
            }

            // A nullable field is usually filled in: null only now and then, as a model would.
            var nonNull = types.Where(t => t != "null").ToList();
            return nonNull.Count == 0 || (types.Contains("null") && random.Next(5) == 0) ? "null" : nonNull[random.Next(nonNull.Count)];
        }

        private void WriteObject(Utf8JsonWriter json, List<JsonElement> schemas, int depth)
        {
            json.WriteStartObject();
            var written = new HashSet<string>(StringComparer.Ordinal);
            var required = new HashSet<string>(StringComparer.Ordinal);
            var closed = false;
            foreach (var schema in schemas)
            {
                if (schema.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                if (schema.TryGetProperty("required", out var list) && list.ValueKind == JsonValueKind.Array)
                {
                    required.UnionWith(list.EnumerateArray().Where(r => r.ValueKind == JsonValueKind.String).Select(r => r.GetString()!));
                }

                closed |= schema.TryGetProperty("additionalProperties", out var extra) && extra.ValueKind == JsonValueKind.False;
            }

            foreach (var schema in schemas)
            {
                if (schema.ValueKind != JsonValueKind.Object || !schema.TryGetProperty("properties", out var properties)
                    || properties.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                foreach (var property in properties.EnumerateObject())
                {
                    // Optional properties are mostly present; deep in a recursive schema they are left out.
                    var include = required.Contains(property.Name) || (depth < MaxDepth / 2 && random.Next(4) != 0);
                    if (include && written.Add(property.Name))
                    {
                        json.WritePropertyName(property.Name);
                        Write(json, property.Value, property.Name, depth + 1);
                    }
                }
            }

            // Required names without a property schema still have to be there.
            foreach (var name in required.Where(r => !written.Contains(r)))
            {
                json.WriteString(name, Pick(topics, random));
                written.Add(name);
            }

            if (written.Count == 0 && !closed)
            {
                json.WriteString("topic", topics[0]);
            }

            json.WriteEndObject();
        }

        private void WriteArray(Utf8JsonWriter json, JsonElement schema, string name, int depth)
        {
            var min = Int(schema, "minItems") ?? 0;
            var max = Int(schema, "maxItems") ?? Math.Max(min, 4);
            var count = depth >= MaxDepth / 2 ? min : Math.Clamp(random.Next(1, 4), min, Math.Max(min, max));
            var unique = schema.TryGetProperty("uniqueItems", out var u) && u.ValueKind == JsonValueKind.True;
            var items = schema.TryGetProperty("items", out var i) && i.ValueKind is JsonValueKind.Object or JsonValueKind.True ? i : default;
            json.WriteStartArray();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (var n = 0; n < count; n++)
            {
                if (items.ValueKind == JsonValueKind.Undefined)
                {
                    json.WriteStringValue(unique ? $"{Pick(topics, random)} {n + 1}" : Pick(topics, random));
                    continue;
                }

                if (!unique)
                {
                    Write(json, items, Singular(name), depth + 1);
                    continue;
                }

                // Unique items: draw again (bounded) until the value is new; the last draw stands.
                for (var attempt = 0; attempt < 8; attempt++)
                {
                    var probe = new ArrayBufferWriter<byte>(64);
                    using (var writer = new Utf8JsonWriter(probe, WriterOptions))
                    {
                        Write(writer, items, Singular(name), depth + 1);
                    }

                    var text = Encoding.UTF8.GetString(probe.WrittenSpan);
                    if (seen.Add(text) || attempt == 7)
                    {
                        json.WriteRawValue(text, skipInputValidation: true);
                        break;
                    }
                }
            }

            json.WriteEndArray();
        }

        private long Integer(JsonElement schema)
        {
            var (low, high) = Bounds(schema, 1, 100);
            var lowInt = (long)Math.Ceiling(low);
            var highInt = (long)Math.Floor(high);
            if (schema.TryGetProperty("exclusiveMinimum", out var exMin) && exMin.ValueKind == JsonValueKind.Number && lowInt <= exMin.GetDouble())
            {
                lowInt = (long)Math.Floor(exMin.GetDouble()) + 1;
            }

            if (schema.TryGetProperty("exclusiveMaximum", out var exMax) && exMax.ValueKind == JsonValueKind.Number && highInt >= exMax.GetDouble())
            {
                highInt = (long)Math.Ceiling(exMax.GetDouble()) - 1;
            }

            highInt = Math.Max(lowInt, highInt);
            var value = lowInt + (long)(random.NextDouble() * (highInt - lowInt + 1));
            value = Math.Min(value, highInt);
            if (schema.TryGetProperty("multipleOf", out var step) && step.ValueKind == JsonValueKind.Number && step.GetDouble() >= 1)
            {
                var m = (long)step.GetDouble();
                var first = (long)Math.Ceiling(lowInt / (double)m) * m;
                var last = (long)Math.Floor(highInt / (double)m) * m;
                value = last >= first ? first + (m * (long)(random.NextDouble() * (((last - first) / m) + 1))) : first;
                value = Math.Min(value, Math.Max(first, last));
            }

            return value;
        }

        private double Number(JsonElement schema)
        {
            var (low, high) = Bounds(schema, 0, 100);
            if (schema.TryGetProperty("exclusiveMinimum", out var exMin) && exMin.ValueKind == JsonValueKind.Number)
            {
                low = Math.Max(low, exMin.GetDouble() + ((high - exMin.GetDouble()) * 0.01));
            }

            if (schema.TryGetProperty("exclusiveMaximum", out var exMax) && exMax.ValueKind == JsonValueKind.Number)
            {
                high = Math.Min(high, exMax.GetDouble() - ((exMax.GetDouble() - low) * 0.01));
            }

            var value = low + (random.NextDouble() * Math.Max(0, high - low));
            var rounded = Math.Round(value, 2);
            return rounded >= low && rounded <= high ? rounded : value;
        }

        private static (double Low, double High) Bounds(JsonElement schema, double defaultLow, double defaultHigh)
        {
            double? min = schema.TryGetProperty("minimum", out var a) && a.ValueKind == JsonValueKind.Number ? a.GetDouble() : null;
            double? max = schema.TryGetProperty("maximum", out var b) && b.ValueKind == JsonValueKind.Number ? b.GetDouble() : null;
            double? exMin = schema.TryGetProperty("exclusiveMinimum", out var c) && c.ValueKind == JsonValueKind.Number ? c.GetDouble() : null;
            double? exMax = schema.TryGetProperty("exclusiveMaximum", out var d) && d.ValueKind == JsonValueKind.Number ? d.GetDouble() : null;
            var ceiling = max ?? exMax;
            var low = min ?? exMin ?? (ceiling is { } top ? Math.Min(defaultLow, top - 100) : defaultLow);
            var high = max ?? exMax ?? Math.Max(low + (defaultHigh - defaultLow), defaultHigh);
            return (low, Math.Max(low, high));
        }

        private string Text(JsonElement schema, string name)
        {
            var format = schema.TryGetProperty("format", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;
            var text = format switch
            {
                "date-time" => new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddMinutes(random.Next(525_600)).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                "date" => new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddDays(random.Next(365)).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                "time" => $"{random.Next(24):00}:{random.Next(60):00}:00",
                "email" => $"{Slug(Pick(topics, random))}@example.com",
                "uri" or "url" => $"https://example.com/{Slug(Pick(topics, random))}",
                "uuid" => new Guid(Bytes(16)).ToString(),
                "ipv4" => $"192.0.2.{random.Next(1, 255)}",
                _ => Words(name),
            };
            var min = Int(schema, "minLength") ?? 0;
            var max = Int(schema, "maxLength");
            while (text.Length < min)
            {
                text += " " + Pick(topics, random);
            }

            return max is { } limit && text.Length > limit ? text[..limit].TrimEnd() is { } cut && cut.Length >= min ? cut : text[..limit] : text;
        }

        private string Words(string name)
        {
            var lower = name.ToLowerInvariant();
            if (lower.Contains("summary", StringComparison.Ordinal) || lower.Contains("description", StringComparison.Ordinal)
                || lower.Contains("reason", StringComparison.Ordinal) || lower.Contains("explanation", StringComparison.Ordinal))
            {
                return Sentence(topics, random);
            }

            if (lower.Contains("name", StringComparison.Ordinal) || lower.Contains("title", StringComparison.Ordinal))
            {
                return Capital(Pick(topics, random));
            }

            return Pick(topics, random);
        }

        private byte[] Bytes(int count)
        {
            var bytes = new byte[count];
            random.NextBytes(bytes);
            return bytes;
        }

        private static string Slug(string word) => new([.. word.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit)]);

        private static string Singular(string name) => name.EndsWith('s') && name.Length > 3 ? name[..^1] : name;

        private static int? Int(JsonElement schema, string keyword) =>
            schema.TryGetProperty(keyword, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) ? Math.Max(0, n) : null;
    }
}
