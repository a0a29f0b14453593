using System.Text;
using System.Text.Json.Nodes;

namespace Sluice.Fuzz.Tests;

/// <summary>
/// Structure-aware mutations of valid JSON bodies: a value of another type, hostile strings (lone surrogates, invalid
/// UTF-8, NUL, bidi overrides, 100,000 characters), huge and odd numbers, deep nesting, duplicate and unknown keys,
/// removed fields, other roots, truncation and flipped bytes. Values that JSON writers would never produce are spliced
/// in as raw bytes through placeholders.
/// </summary>
internal static class Mutations
{
    /// <summary>Raw JSON values spliced where a placeholder string stands.</summary>
    private static readonly byte[][] HostileStrings =
    [
        Ascii("\"\\ud800\""),
        Ascii("\"a\\udc00b\""),
        Ascii("\"x\\ud83d\""),
        Ascii("\"\\ud83d\\ude00 ok\""),
        Ascii("\"x\\u0000y\""),
        Ascii("\"\\u202egnp.exe\""),
        Ascii("\"\\u2066isolate\\u2069\""),
        Ascii("\"\\ufeffbom\""),
        Ascii("\"\""),
        Ascii("\"   \""),
        Ascii("\"" + new string('a', 100_000) + "\""),
        Ascii("\"" + string.Concat(Enumerable.Repeat("\\n", 3000)) + "\""),
        Ascii("\"{\\\"nested\\\": [1, 2]}\""),
        Ascii("\"sk-sluice-0000000000000000000000000000\""),
        Ascii("\"../../etc/passwd\""),
        Ascii("\"%00%ff\""),
        Ascii("\"<script>alert(1)</script>\""),
        Ascii("\"sim-fast:latest\""),
        Ascii("\"SIM-FAST\""),
        [(byte)'"', 0xC3, 0x28, (byte)'"'],
        [(byte)'"', 0xC0, 0xAF, (byte)'"'],
        [(byte)'"', 0xED, 0xA0, 0x80, (byte)'"'],
        [(byte)'"', 0xFF, 0xFE, 0xFD, (byte)'"'],
        [(byte)'"', (byte)'o', (byte)'k', 0xE2, 0x82, (byte)'"'],
    ];

    private static readonly byte[][] OddNumbers =
    [
        Ascii("1e400"), Ascii("-1e400"), Ascii("1e-400"), Ascii("123456789012345678901234567890"), Ascii("-1"), Ascii("0"),
        Ascii("2147483648"), Ascii("-2147483649"), Ascii("9223372036854775808"), Ascii("1.5"), Ascii("-0.0"), Ascii("9007199254740993"),
        Ascii("0.0000001"), Ascii("100000"),
    ];

    private static readonly byte[][] OtherValues =
    [
        Ascii("true"), Ascii("false"), Ascii("null"), Ascii("[]"), Ascii("{}"), Ascii("[null]"), Ascii("[{}]"), Ascii("{\"\": \"\"}"),
        Ascii("[\"a\", 1, null, {}]"),
    ];

    /// <summary>Bodies that replace a valid one altogether.</summary>
    private static readonly byte[][] Roots =
    [
        [], Ascii("[]"), Ascii("null"), Ascii("\"text\""), Ascii("42"), Ascii("{"), Ascii("}"), Ascii("{\"a\":"), Ascii(" "), Ascii("{}"),
        Ascii("[1, 2]"), Ascii("{\"a\" 1}"), Ascii("{'a': 1}"), Ascii("{\"a\": 1,}"), Ascii("{\"a\": NaN}"), Ascii("{\"a\": Infinity}"),
        Ascii("/* comment */ {}"), [0xEF, 0xBB, 0xBF, (byte)'{', (byte)'}'], [0xFF, 0xFE, (byte)'{', 0, (byte)'}', 0],
        Ascii(new string('[', 10_000) + new string(']', 10_000)), Ascii("\"\\ud800\""), Ascii("{\"\\ud800\": 1}"), [0x00, 0x01, 0x02],
    ];

    public static byte[] Ascii(string text) => Encoding.Latin1.GetBytes(text);

    /// <summary>A mutated body and a short description of the mutation.</summary>
    public static (byte[] Body, string Description) Mutate(string validJson, Random random)
    {
        var raw = new List<byte[]>();
        var kind = random.Next(12);
        switch (kind)
        {
            case 0:
                {
                    var root = Pick(Roots, random);
                    return (root, $"root: {Describe(root)}");
                }

            case 1:
                {
                    var bytes = Encoding.UTF8.GetBytes(validJson);
                    var cut = random.Next(bytes.Length);
                    return (bytes[..cut], $"truncated at byte {cut} of {bytes.Length}");
                }

            case 2:
                {
                    var bytes = Encoding.UTF8.GetBytes(validJson);
                    var flips = 1 + random.Next(3);
                    for (var i = 0; i < flips; i++)
                    {
                        bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                    }

                    return (bytes, $"{flips} flipped byte(s)");
                }

            case 3:
                {
                    // A duplicate of an existing top-level key, with another value, before the original.
                    var node = JsonNode.Parse(validJson)!.AsObject();
                    var key = node.Select(p => p.Key).ElementAtOrDefault(random.Next(Math.Max(1, node.Count))) ?? "model";
                    var value = AnyValue(random);
                    byte[] body = [.. Ascii("{\"" + key + "\": "), .. value, .. (node.Count > 0 ? Ascii(", ") : []), .. Encoding.UTF8.GetBytes(validJson.Trim()[1..])];
                    return (body, $"duplicate key {key} = {Describe(value)}");
                }

            case 4:
                {
                    // Deep nesting in place of one value.
                    var depth = random.Next(3) switch { 0 => 40, 1 => 70, _ => 2_000 };
                    var deep = random.Next(2) == 0
                        ? Ascii(new string('[', depth) + new string(']', depth))
                        : Ascii(string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth));
                    return Splice(validJson, random, deep, $"nesting {depth} deep");
                }

            case 5:
                {
                    // A long array where an array stands (messages: more than the limit).
                    var items = string.Join(",", Enumerable.Repeat("{\"role\": \"user\", \"content\": \"x\"}", 2_100 + random.Next(1_000)));
                    return Splice(validJson, random, Ascii("[" + items + "]"), "array of 2100+ messages", preferArrays: true);
                }

            case 6:
                {
                    var node = JsonNode.Parse(validJson)!;
                    var objects = Objects(node).ToList();
                    var target = objects[random.Next(objects.Count)];
                    if (target.Count == 0)
                    {
                        return (Encoding.UTF8.GetBytes(validJson), "nothing to remove");
                    }

                    var key = target.ElementAt(random.Next(target.Count)).Key;
                    target.Remove(key);
                    return (Encoding.UTF8.GetBytes(node.ToJsonString()), $"removed {key}");
                }

            case 7:
                {
                    // Unknown fields, with hostile names now and then.
                    var node = JsonNode.Parse(validJson)!;
                    var objects = Objects(node).ToList();
                    var target = objects[random.Next(objects.Count)];
                    var name = random.Next(3) == 0 ? Placeholder(raw, Pick(HostileStrings.Where(s => s.Length < 1000).ToArray(), random)) : "x_fuzz_" + random.Next(1000);
                    target[name] = Placeholder(raw, AnyValue(random));
                    return Finish(node, raw, "unknown field");
                }

            default:
                {
                    // One value replaced: another type, a hostile string, an odd number.
                    var value = kind switch
                    {
                        8 or 9 => Pick(HostileStrings, random),
                        10 => Pick(OddNumbers, random),
                        _ => Pick(OtherValues, random),
                    };
                    return Splice(validJson, random, value, Describe(value));
                }
        }
    }

    /// <summary>A mutation that keeps the body valid JSON text with escapes only (for WebSocket text frames, which must be UTF-8).</summary>
    public static (byte[] Body, string Description) MutateText(string validJson, Random random)
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var (body, description) = Mutate(validJson, random);
            if (System.Text.Unicode.Utf8.IsValid(body) && body.Length < 512 * 1024)
            {
                return (body, description);
            }
        }

        return (Encoding.UTF8.GetBytes(validJson), "unchanged");
    }

    private static (byte[] Body, string Description) Splice(string validJson, Random random, byte[] value, string description, bool preferArrays = false)
    {
        var raw = new List<byte[]>();
        var node = JsonNode.Parse(validJson)!;
        var slots = Slots(node).ToList();
        if (preferArrays && slots.Where(s => s.Value is JsonArray).ToList() is { Count: > 0 } arrays)
        {
            slots = arrays;
        }

        if (slots.Count == 0)
        {
            return (value, description + " as the body");
        }

        var slot = slots[random.Next(slots.Count)];
        slot.Set(Placeholder(raw, value));
        return Finish(node, raw, $"{slot.Path} = {description}");
    }

    private static (byte[] Body, string Description) Finish(JsonNode node, List<byte[]> raw, string description)
    {
        var text = Encoding.UTF8.GetBytes(node.ToJsonString());
        for (var i = 0; i < raw.Count; i++)
        {
            text = Replace(text, Encoding.UTF8.GetBytes($"\"@@RAW{i}@@\""), raw[i]);
        }

        return (text, description);
    }

    private static string Placeholder(List<byte[]> raw, byte[] value)
    {
        raw.Add(value);
        return $"@@RAW{raw.Count - 1}@@";
    }

    private static byte[] AnyValue(Random random) => random.Next(3) switch
    {
        0 => Pick(HostileStrings, random),
        1 => Pick(OddNumbers, random),
        _ => Pick(OtherValues, random),
    };

    private static T Pick<T>(T[] items, Random random) => items[random.Next(items.Length)];

    private static string Describe(byte[] value)
    {
        var text = Encoding.Latin1.GetString(value.AsSpan(0, Math.Min(value.Length, 40)));
        var printable = new string([.. text.Select(c => c is >= ' ' and <= '~' ? c : '·')]);
        return value.Length > 40 ? $"{printable}… ({value.Length} bytes)" : printable;
    }

    private static IEnumerable<JsonObject> Objects(JsonNode node)
    {
        if (node is JsonObject obj)
        {
            yield return obj;
            foreach (var child in obj.Select(p => p.Value).OfType<JsonNode>().SelectMany(Objects))
            {
                yield return child;
            }
        }
        else if (node is JsonArray array)
        {
            foreach (var child in array.OfType<JsonNode>().SelectMany(Objects))
            {
                yield return child;
            }
        }
    }

    private static IEnumerable<Slot> Slots(JsonNode node, string path = "")
    {
        if (node is JsonObject obj)
        {
            foreach (var (key, value) in obj.ToList())
            {
                var at = path.Length == 0 ? key : $"{path}.{key}";
                yield return new Slot(at, value, v => obj[key] = v);
                if (value is not null)
                {
                    foreach (var inner in Slots(value, at))
                    {
                        yield return inner;
                    }
                }
            }
        }
        else if (node is JsonArray array)
        {
            for (var i = 0; i < array.Count; i++)
            {
                var index = i;
                var at = $"{path}[{i}]";
                yield return new Slot(at, array[i], v => array[index] = v);
                if (array[i] is { } value)
                {
                    foreach (var inner in Slots(value, at))
                    {
                        yield return inner;
                    }
                }
            }
        }
    }

    private static byte[] Replace(byte[] text, byte[] find, byte[] with)
    {
        var at = text.AsSpan().IndexOf(find);
        return at < 0 ? text : [.. text.AsSpan(0, at), .. with, .. text.AsSpan(at + find.Length)];
    }

    private sealed record Slot(string Path, JsonNode? Value, Action<JsonNode?> Setter)
    {
        public void Set(string placeholder) => Setter(JsonValue.Create(placeholder));
    }
}
