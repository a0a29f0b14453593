using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace Sluice.Client.Internal;

/// <summary>Small request bodies and query strings of the REST calls (jobs, sessions).</summary>
internal static class JsonBody
{
    /// <summary>One JSON object, its members written by <paramref name="body"/>.</summary>
    public static byte[] Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            body(json);
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Writes the member only when it has a value (the server's default applies otherwise).</summary>
    public static void WriteOptional(Utf8JsonWriter json, string name, string? value)
    {
        if (value is not null)
        {
            json.WriteString(name, value);
        }
    }

    /// <summary><c>?limit=…&amp;offset=…</c> for the given values, or an empty string.</summary>
    public static string PageQuery(int? limit, int? offset)
    {
        var query = new List<string>(2);
        if (limit is { } l)
        {
            query.Add("limit=" + l.ToString(CultureInfo.InvariantCulture));
        }

        if (offset is { } o)
        {
            query.Add("offset=" + o.ToString(CultureInfo.InvariantCulture));
        }

        return query.Count > 0 ? "?" + string.Join('&', query) : string.Empty;
    }
}
