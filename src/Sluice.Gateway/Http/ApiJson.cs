using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Storage;

namespace Sluice.Gateway.Http;

/// <summary>Reading and writing the JSON bodies of the <c>/api</c> endpoints, with 400s that name the field.</summary>
internal static class ApiJson
{
    private const int MaxDepth = 32;

    /// <summary>Most names in one list (a group's models, a team's or key's model groups).</summary>
    private const int MaxNames = 100;

    /// <summary>Reads the body as a JSON document; an empty body counts as <c>{}</c> when <paramref name="emptyIsObject"/>.</summary>
    public static async Task<JsonDocument> ReadAsync(HttpContext context, long limit, bool emptyIsObject = true)
    {
        var body = await RequestBody.ReadAsync(context.Request, limit, context.RequestAborted);
        if (body.IsEmpty && emptyIsObject)
        {
            return JsonDocument.Parse("{}");
        }

        return JsonInput.Parse(body, MaxDepth, hint: "Send a JSON object with Content-Type: application/json.");
    }

    public static JsonElement RequireObject(JsonDocument document)
    {
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw ChatException.BadRequest("The request body must be a JSON object.", null, "invalid_type");
        }

        return document.RootElement;
    }

    /// <summary>
    /// The body as an object that has no field outside <paramref name="known"/>: an administrative call with a misspelt
    /// field (<c>credits</c> for <c>credits_allocated</c>) would otherwise succeed without it — a team without its
    /// credits, a key without its limit. The 400 names the field and the closest known one.
    /// </summary>
    public static JsonElement RequireObject(JsonDocument document, IReadOnlyList<string> known)
    {
        var root = RequireObject(document);
        foreach (var property in root.EnumerateObject())
        {
            if (!known.Contains(property.Name))
            {
                // Suggested only for names of a plausible length: the distance costs their product.
                var closest = property.Name.Length <= 64 ? known.MinBy(k => Distance(property.Name, k)) : null;
                var hint = closest is not null && Distance(property.Name, closest) <= Math.Max(2, property.Name.Length / 3)
                    ? $" Did you mean '{closest}'?"
                    : string.Empty;
                // Echoed shortened and printable: the name is the client's, of any length.
                var name = Calls.SluiceErrors.Echo(property.Name);
                throw ChatException.BadRequest(
                    $"Unknown parameter '{name}'.{hint} This endpoint takes: {string.Join(", ", known)}.", name, "unknown_parameter");
            }
        }

        return root;
    }

    /// <summary>The fields of <see cref="ReadLimits"/>.</summary>
    public static readonly string[] LimitFields = ["rpm_limit", "tpm_limit", "max_parallel_requests"];

    /// <summary>Edit distance, with a name that contains the other (or is contained) counted close.</summary>
    private static int Distance(string a, string b)
    {
        if (a.Length > 1 && b.Length > 1 && (a.Contains(b, StringComparison.OrdinalIgnoreCase) || b.Contains(a, StringComparison.OrdinalIgnoreCase)))
        {
            return 1;
        }

        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = char.ToLowerInvariant(a[i - 1]) == char.ToLowerInvariant(b[j - 1]) ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    public static string? OptionalString(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw ChatException.BadRequest($"{name} must be a string.", name, "invalid_type");
        }

        var text = value.GetString()!.Trim();
        return text.Length == 0 ? null : text;
    }

    public static string RequiredString(JsonElement root, string name, string example) =>
        OptionalString(root, name) ?? throw ChatException.BadRequest($"{name} is required, e.g. \"{name}\": \"{example}\".", name, "missing_required_parameter");

    /// <summary>
    /// A name or id the caller sets (trimmed; null when absent or blank), checked by <see cref="NameRules"/>: a 400 naming
    /// <paramref name="name"/> for a value too long or with characters that are not allowed.
    /// </summary>
    public static string? OptionalName(JsonElement root, string name, NameKind kind, int? maxLength = null) =>
        OptionalString(root, name) is { } value ? CheckName(value, name, kind, maxLength) : null;

    /// <summary>Like <see cref="OptionalName"/>, and required.</summary>
    public static string RequiredName(JsonElement root, string name, NameKind kind, string example, int? maxLength = null) =>
        CheckName(RequiredString(root, name, example), name, kind, maxLength);

    /// <summary>Returns <paramref name="value"/> when <see cref="NameRules"/> accepts it as <paramref name="kind"/>; otherwise the 400 naming <paramref name="param"/>.</summary>
    public static string CheckName(string value, string param, NameKind kind, int? maxLength = null)
    {
        if (NameRules.Check(kind, value, maxLength) is { } problem)
        {
            var code = value.Length > (maxLength ?? NameRules.MaxLength(kind)) ? "string_above_max_length" : "invalid_value";
            throw ChatException.BadRequest($"{param} {problem}", param, code);
        }

        return value;
    }

    public static long? OptionalLong(JsonElement root, string name, long min = long.MinValue)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number))
        {
            throw ChatException.BadRequest($"{name} must be an integer.", name, "invalid_type");
        }

        if (number < min)
        {
            throw ChatException.BadRequest($"{name} must be at least {min} (got {number}).", name);
        }

        return number;
    }

    public static int? OptionalLimit(JsonElement root, string name)
    {
        var value = OptionalLong(root, name, 1);
        if (value > int.MaxValue)
        {
            throw ChatException.BadRequest($"{name} must be at most {int.MaxValue}.", name);
        }

        return (int?)value;
    }

    /// <summary>
    /// A list of names: <c>["a", "b"]</c>, or objects carrying <paramref name="objectField"/> and an optional
    /// <c>priority</c> (sorted by it, lowest first, as the integration guide's model lists are).
    /// </summary>
    public static List<string>? OptionalNames(JsonElement root, string name, string? objectField = null) =>
        root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? Names(value, name, objectField) : null;

    public static List<string> Names(JsonElement value, string name, string? objectField = null)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw ChatException.BadRequest($"{name} must be an array of names.", name, "invalid_type");
        }

        if (value.GetArrayLength() > MaxNames)
        {
            throw ChatException.BadRequest($"{name} lists {value.GetArrayLength()} names; the limit is {MaxNames}.", name, "array_above_max_length");
        }

        var items = new List<(string Name, long Priority, int Index)>();
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            var at = $"{name}[{index}]";
            if (item.ValueKind == JsonValueKind.String && item.GetString()!.Trim() is { Length: > 0 } text)
            {
                items.Add((CheckName(text, at, NameKind.ModelName), index, index));
            }
            else if (objectField is not null && item.ValueKind == JsonValueKind.Object)
            {
                var field = OptionalString(item, objectField)
                    ?? throw ChatException.BadRequest($"{at}.{objectField} is required.", $"{at}.{objectField}", "missing_required_parameter");
                items.Add((CheckName(field, $"{at}.{objectField}", NameKind.ModelName), OptionalLong(item, "priority") ?? index, index));
            }
            else
            {
                throw ChatException.BadRequest(
                    objectField is null ? $"{at} must be a non-empty string." : $"{at} must be a name or an object with \"{objectField}\".",
                    at, "invalid_type");
            }

            index++;
        }

        return [.. items.OrderBy(i => i.Priority).ThenBy(i => i.Index).Select(i => i.Name).Distinct(StringComparer.Ordinal)];
    }

    public static DateTimeOffset? OptionalTime(JsonElement root, string name)
    {
        var text = OptionalString(root, name);
        if (text is null)
        {
            return null;
        }

        if (!DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time))
        {
            throw ChatException.BadRequest($"{name} must be an ISO 8601 time such as \"2030-01-31T00:00:00Z\".", name);
        }

        return time;
    }

    /// <summary>Reads <c>limit</c>/<c>offset</c> query parameters (defaults 50/0, limit at most 1000).</summary>
    public static (int Limit, int Offset) Page(HttpContext context, int defaultLimit = 50) =>
        (QueryNumber(context.Request.Query, "limit", defaultLimit, 1, 1000), QueryNumber(context.Request.Query, "offset", 0, 0, int.MaxValue));

    /// <summary>The whole-number query parameter <paramref name="name"/> in [<paramref name="min"/>, <paramref name="max"/>], or <paramref name="fallback"/> when absent.</summary>
    public static int QueryNumber(IQueryCollection query, string name, int fallback, int min, int max)
    {
        var text = query[name].ToString();
        if (text.Length == 0)
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw ChatException.BadRequest($"Query parameter {name} must be an integer from {min} to {max} (got \"{text}\").", name);
        }

        return value;
    }

    /// <summary>Writes a JSON response.</summary>
    public static async Task WriteAsync(HttpContext context, int status, Action<Utf8JsonWriter> write)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await using (var json = new Utf8JsonWriter(context.Response.BodyWriter))
        {
            write(json);
        }

        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    public static void WriteTime(this Utf8JsonWriter json, string name, DateTimeOffset? time)
    {
        if (time is { } t)
        {
            json.WriteString(name, t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
        }
        else
        {
            json.WriteNull(name);
        }
    }

    public static void WriteNames(this Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (var value in values)
        {
            json.WriteStringValue(value);
        }

        json.WriteEndArray();
    }

    public static void WriteNullableNumber(this Utf8JsonWriter json, string name, long? value)
    {
        if (value is { } v)
        {
            json.WriteNumber(name, v);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    /// <summary>Limits in LiteLLM's field names.</summary>
    public static void WriteLimits(this Utf8JsonWriter json, RateLimits limits)
    {
        json.WriteNullableNumber("rpm_limit", limits.RequestsPerMinute);
        json.WriteNullableNumber("tpm_limit", limits.TokensPerMinute);
        json.WriteNullableNumber("max_parallel_requests", limits.ConcurrentStreams);
    }

    /// <summary>Limits from LiteLLM's field names; <see langword="null"/> when none is given.</summary>
    public static RateLimits? ReadLimits(JsonElement root)
    {
        var rpm = OptionalLimit(root, "rpm_limit");
        var tpm = OptionalLimit(root, "tpm_limit");
        var streams = OptionalLimit(root, "max_parallel_requests");
        return rpm is null && tpm is null && streams is null ? null : new RateLimits(rpm, tpm, streams);
    }
}
