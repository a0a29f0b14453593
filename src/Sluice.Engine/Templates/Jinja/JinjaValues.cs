using System.Globalization;
using System.Text;

namespace Sluice.Engine.Templates.Jinja;

/// <summary>Jinja's undefined value: empty when printed, false when tested, an error when looked into.</summary>
internal sealed class Undefined
{
    public Undefined(string name) => Name = name;

    public string Name { get; }
}

/// <summary>A dictionary that keeps insertion order (Python dicts do, and tojson/items() show it).</summary>
internal sealed class JinjaDict
{
    private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    public JinjaDict(bool isNamespace = false) => IsNamespace = isNamespace;

    /// <summary>A <c>namespace()</c> object: its attributes may be assigned with <c>set ns.x = …</c>.</summary>
    public bool IsNamespace { get; }

    public int Count => _order.Count;

    public IEnumerable<string> Keys => _order;

    public bool ContainsKey(string key) => _values.ContainsKey(key);

    public bool TryGetValue(string key, out object? value) => _values.TryGetValue(key, out value);

    public object? this[string key]
    {
        get => _values[key];
        set
        {
            if (!_values.ContainsKey(key))
            {
                _order.Add(key);
            }
            _values[key] = value;
        }
    }

    public IEnumerable<KeyValuePair<string, object?>> Items => _order.Select(k => new KeyValuePair<string, object?>(k, _values[k]));
}

/// <summary>A callable: a global function, a bound method, a macro, <c>loop.cycle</c>.</summary>
internal delegate object? JinjaCallable(List<object?> args, Dictionary<string, object?> kwargs);

/// <summary>Python-like conversions and comparisons on Jinja values (null is None; long, double, string, bool, lists, dicts).</summary>
internal static class Values
{
    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        JinjaDict d => d.Count > 0,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "none",
        Undefined => "undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "string",
        List<object?> => "list",
        JinjaDict => "dict",
        JinjaCallable => "function",
        _ => v.GetType().Name,
    };

    /// <summary>How <c>{{ v }}</c> and <c>v|string</c> show a value (Python's str()).</summary>
    public static string ToStr(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        _ => Repr(v),
    };

    /// <summary>Python's repr(), used inside lists and dicts.</summary>
    public static string Repr(object? v)
    {
        switch (v)
        {
            case null: return "None";
            case Undefined: return "";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            case double d: return FloatRepr(d);
            case string s: return StringRepr(s);
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case JinjaDict dict: return "{" + string.Join(", ", dict.Items.Select(kv => StringRepr(kv.Key) + ": " + Repr(kv.Value))) + "}";
            case JinjaCallable: return "<function>";
            default: return Convert.ToString(v, CultureInfo.InvariantCulture) ?? "";
        }
    }

    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
        {
            return "nan";
        }
        if (double.IsInfinity(d))
        {
            return d > 0 ? "inf" : "-inf";
        }
        if (d == Math.Floor(d) && Math.Abs(d) < 1e16)
        {
            return d.ToString("F1", CultureInfo.InvariantCulture);
        }
        return d.ToString("R", CultureInfo.InvariantCulture);
    }

    private static string StringRepr(string s)
    {
        var quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == quote)
                    {
                        sb.Append('\\').Append(c);
                    }
                    else if (c < ' ' || c == '\u007f')
                    {
                        sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        return sb.Append(quote).ToString();
    }

    public static new bool Equals(object? a, object? b)
    {
        if (a is Undefined || b is Undefined)
        {
            return a is Undefined && b is Undefined;
        }
        if (IsNumber(a) && IsNumber(b))
        {
            return a is long la && b is long lb ? la == lb : ToDouble(a) == ToDouble(b);
        }
        return (a, b) switch
        {
            (null, null) => true,
            (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second)),
            (JinjaDict x, JinjaDict y) => x.Count == y.Count && x.Items.All(kv => y.TryGetValue(kv.Key, out var o) && Equals(kv.Value, o)),
            _ => ReferenceEquals(a, b),
        };
    }

    // Python: bool is an int subtype, so True == 1.
    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new ChatTemplateException($"Expected a number, got {TypeName(v)}."),
    };

    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return a is long la && b is long lb ? la.CompareTo(lb) : ToDouble(a).CompareTo(ToDouble(b));
        }
        if (a is string sa && b is string sb)
        {
            return string.CompareOrdinal(sa, sb);
        }
        if (a is List<object?> xa && b is List<object?> xb)
        {
            for (var i = 0; i < Math.Min(xa.Count, xb.Count); i++)
            {
                var c = Compare(xa[i], xb[i]);
                if (c != 0)
                {
                    return c;
                }
            }
            return xa.Count.CompareTo(xb.Count);
        }
        throw new ChatTemplateException($"Cannot compare {TypeName(a)} with {TypeName(b)}.");
    }

    /// <summary>Python's str.strip() whitespace.</summary>
    public static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001c' and <= '\u001f';

    public static int[] Codepoints(string s)
    {
        var result = new List<int>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                result.Add(char.ConvertToUtf32(s[i], s[i + 1]));
                i++;
            }
            else
            {
                result.Add(s[i]);
            }
        }
        return [.. result];
    }

    public static string FromCodepoints(IEnumerable<int> cps)
    {
        var sb = new StringBuilder();
        foreach (var cp in cps)
        {
            if (cp is >= 0xD800 and <= 0xDFFF)
            {
                sb.Append((char)cp);
            }
            else
            {
                sb.Append(char.ConvertFromUtf32(cp));
            }
        }
        return sb.ToString();
    }

    /// <summary>Converts host data (strings, numbers, bools, lists, dictionaries, JSON nodes) to Jinja values.</summary>
    public static object? FromHost(object? v) => v switch
    {
        null => null,
        string or bool or long or double or Undefined or JinjaDict or JinjaCallable => v,
        int i => (long)i,
        uint u => (long)u,
        short s => (long)s,
        byte b => (long)b,
        float f => (double)f,
        decimal m => (double)m,
        List<object?> list => list,
        System.Text.Json.Nodes.JsonNode node => FromJson(node),
        System.Text.Json.JsonElement e => FromJson(System.Text.Json.Nodes.JsonNode.Parse(e.GetRawText())),
        System.Collections.IDictionary dict => FromDictionary(dict),
        System.Collections.IEnumerable items => items.Cast<object?>().Select(FromHost).ToList(),
        _ => Convert.ToString(v, CultureInfo.InvariantCulture),
    };

    private static JinjaDict FromDictionary(System.Collections.IDictionary dict)
    {
        var result = new JinjaDict();
        foreach (System.Collections.DictionaryEntry e in dict)
        {
            result[Convert.ToString(e.Key, CultureInfo.InvariantCulture) ?? ""] = FromHost(e.Value);
        }
        return result;
    }

    private static object? FromJson(System.Text.Json.Nodes.JsonNode? node)
    {
        switch (node)
        {
            case null:
                return null;
            case System.Text.Json.Nodes.JsonObject o:
                var d = new JinjaDict();
                foreach (var (k, value) in o)
                {
                    d[k] = FromJson(value);
                }
                return d;
            case System.Text.Json.Nodes.JsonArray a:
                return a.Select(FromJson).ToList();
            default:
                var el = node.GetValue<System.Text.Json.JsonElement>();
                return el.ValueKind switch
                {
                    System.Text.Json.JsonValueKind.String => el.GetString(),
                    System.Text.Json.JsonValueKind.True => true,
                    System.Text.Json.JsonValueKind.False => false,
                    System.Text.Json.JsonValueKind.Number => el.TryGetInt64(out var l) ? l : el.GetDouble(),
                    _ => null,
                };
        }
    }

    /// <summary>Hugging Face's tojson: json.dumps(ensure_ascii=False), with optional indent and sort_keys.</summary>
    public static string ToJson(object? v, int? indent, bool sortKeys)
    {
        var sb = new StringBuilder();
        WriteJson(sb, v, indent, sortKeys, 0);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v, int? indent, bool sortKeys, int depth)
    {
        switch (v)
        {
            case null:
                sb.Append("null");
                break;
            case Undefined u:
                throw new ChatTemplateException($"tojson: '{u.Name}' is undefined.");
            case bool b:
                sb.Append(b ? "true" : "false");
                break;
            case long l:
                sb.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : FloatRepr(d));
                break;
            case string s:
                WriteJsonString(sb, s);
                break;
            case List<object?> list:
                if (list.Count == 0)
                {
                    sb.Append("[]");
                    break;
                }
                sb.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0)
                    {
                        sb.Append(indent is null ? ", " : ",");
                    }
                    NewLine(sb, indent, depth + 1);
                    WriteJson(sb, list[i], indent, sortKeys, depth + 1);
                }
                NewLine(sb, indent, depth);
                sb.Append(']');
                break;
            case JinjaDict dict:
                if (dict.Count == 0)
                {
                    sb.Append("{}");
                    break;
                }
                sb.Append('{');
                var items = sortKeys ? dict.Items.OrderBy(kv => kv.Key, StringComparer.Ordinal) : dict.Items;
                var first = true;
                foreach (var (key, value) in items)
                {
                    if (!first)
                    {
                        sb.Append(indent is null ? ", " : ",");
                    }
                    first = false;
                    NewLine(sb, indent, depth + 1);
                    WriteJsonString(sb, key);
                    sb.Append(": ");
                    WriteJson(sb, value, indent, sortKeys, depth + 1);
                }
                NewLine(sb, indent, depth);
                sb.Append('}');
                break;
            default:
                throw new ChatTemplateException($"tojson: a {TypeName(v)} is not JSON serializable.");
        }
    }

    private static void NewLine(StringBuilder sb, int? indent, int depth)
    {
        if (indent is { } n)
        {
            sb.Append('\n').Append(' ', n * depth);
        }
    }

    private static void WriteJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < ' ')
                    {
                        sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        sb.Append('"');
    }
}
