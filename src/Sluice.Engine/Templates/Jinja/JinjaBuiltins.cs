using System.Globalization;
using System.Text;

namespace Sluice.Engine.Templates.Jinja;

/// <summary>The filters chat templates use (Jinja's built-ins plus Hugging Face's tojson).</summary>
internal static class Filters
{
    public static object? Apply(JinjaInterpreter interpreter, string name, object? value, List<object?> args, Dictionary<string, object?> kwargs)
    {
        object? Arg(int i, string kw, object? dflt = null) => i < args.Count ? args[i] : kwargs.TryGetValue(kw, out var v) ? v : dflt;
        switch (name)
        {
            case "trim":
                return Arg(0, "chars") is string chars ? Str(value).Trim(chars.ToCharArray()) : Methods.PyStrip(Str(value), true, true);
            case "length" or "count":
                return value switch
                {
                    string s => (long)Values.Codepoints(s).Length,
                    List<object?> l => (long)l.Count,
                    JinjaDict dict => (long)dict.Count,
                    Undefined => 0L,
                    _ => throw new ChatTemplateException($"length: a {Values.TypeName(value)} has no length."),
                };
            case "tojson":
                {
                    var indent = Arg(0, "indent");
                    return Values.ToJson(value, indent is long width ? (int)width : null, Values.Truthy(Arg(1, "sort_keys", false)));
                }
            case "string":
                return Values.ToStr(value);
            case "lower":
                return Str(value).ToLowerInvariant();
            case "upper":
                return Str(value).ToUpperInvariant();
            case "capitalize":
                return Methods.Call(Str(value), "capitalize", [], []);
            case "title":
                return Methods.Call(Str(value), "title", [], []);
            case "replace":
                return Methods.Call(Str(value), "replace", [.. args], []);
            case "join":
                {
                    var sep = Arg(0, "d", "") is string s ? s : "";
                    var attribute = kwargs.TryGetValue("attribute", out var a) ? Values.ToStr(a) : null;
                    return string.Join(sep, List(value).Select(x => Values.ToStr(attribute is null ? x : JinjaInterpreter.GetAttribute(x, attribute))));
                }
            case "first":
                {
                    var items = List(value).ToList();
                    return items.Count > 0 ? items[0] : new Undefined("first");
                }
            case "last":
                {
                    var items = List(value).ToList();
                    return items.Count > 0 ? items[^1] : new Undefined("last");
                }
            case "default" or "d":
                {
                    var fallback = Arg(0, "default_value", "");
                    var boolean = Values.Truthy(Arg(1, "boolean", false));
                    return value is Undefined || (boolean && !Values.Truthy(value)) ? fallback : value;
                }
            case "list":
                return List(value).ToList();
            case "items":
                return value is JinjaDict d ? d.Items.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()
                    : throw new ChatTemplateException($"items: expected a dict, got {Values.TypeName(value)}.");
            case "reverse":
                return value is string rs ? Values.FromCodepoints(Values.Codepoints(rs).Reverse()) : Enumerable.Reverse(List(value)).ToList();
            case "unique":
                {
                    var result = new List<object?>();
                    foreach (var x in List(value))
                    {
                        if (!result.Any(y => Values.Equals(x, y)))
                        {
                            result.Add(x);
                        }
                    }
                    return result;
                }
            case "sort":
                {
                    var attribute = kwargs.TryGetValue("attribute", out var a) ? Values.ToStr(a) : null;
                    var reverse = Values.Truthy(Arg(0, "reverse", false));
                    var items = List(value).ToList();
                    items.Sort((x, y) => Values.Compare(attribute is null ? x : JinjaInterpreter.GetAttribute(x, attribute),
                        attribute is null ? y : JinjaInterpreter.GetAttribute(y, attribute)));
                    if (reverse)
                    {
                        items.Reverse();
                    }
                    return items;
                }
            case "int":
                return value switch
                {
                    long l => l,
                    double dd => (long)dd,
                    bool b => b ? 1L : 0L,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) => p,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var p) => (long)p,
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long l => (double)l,
                    double dd => dd,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var p) => p,
                    _ => Arg(0, "default", 0.0),
                };
            case "abs":
                return value switch
                {
                    long l => (object)Math.Abs(l),
                    double dd => Math.Abs(dd),
                    _ => throw new ChatTemplateException($"abs: expected a number, got {Values.TypeName(value)}."),
                };
            case "safe":
                return value;
            case "min":
                return List(value).Aggregate((object?)null, (m, x) => m is null || Values.Compare(x, m) < 0 ? x : m) ?? new Undefined("min");
            case "max":
                return List(value).Aggregate((object?)null, (m, x) => m is null || Values.Compare(x, m) > 0 ? x : m) ?? new Undefined("max");
            case "sum":
                return List(value).Aggregate((object?)0L, (acc, x) => Values.IsNumber(x) && acc is long la && x is long lx ? la + lx : Values.ToDouble(acc) + Values.ToDouble(x));
            case "wordcount":
                return (long)Str(value).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            case "indent":
                {
                    var width = Arg(0, "width", 4L);
                    var pad = width is string ps ? ps : new string(' ', (int)(width is long w ? w : 4));
                    var first = Values.Truthy(Arg(1, "first", false));
                    var blank = Values.Truthy(Arg(2, "blank", false));
                    var lines = Str(value).Split('\n');
                    var sb = new StringBuilder();
                    for (var i = 0; i < lines.Length; i++)
                    {
                        if (i > 0)
                        {
                            sb.Append('\n');
                        }
                        if ((i > 0 || first) && (blank || lines[i].Length > 0))
                        {
                            sb.Append(pad);
                        }
                        sb.Append(lines[i]);
                    }
                    return sb.ToString();
                }
            case "map":
                {
                    if (kwargs.TryGetValue("attribute", out var attr))
                    {
                        var fallback = kwargs.TryGetValue("default", out var df) ? df : null;
                        return List(value).Select(x => JinjaInterpreter.GetAttribute(x, Values.ToStr(attr)) is Undefined && fallback is not null
                            ? fallback : JinjaInterpreter.GetAttribute(x, Values.ToStr(attr))).ToList();
                    }
                    if (args.Count > 0 && args[0] is string filter)
                    {
                        return List(value).Select(x => interpreter.ApplyFilterByName(filter, x, args.Skip(1).ToList())).ToList();
                    }
                    throw new ChatTemplateException("map: needs attribute= or a filter name.");
                }
            case "select" or "reject":
                {
                    var keep = name == "select";
                    if (args.Count == 0)
                    {
                        return List(value).Where(x => Values.Truthy(x) == keep).ToList();
                    }
                    var test = Values.ToStr(args[0]);
                    return List(value).Where(x => Tests.Apply(test, x, args.Skip(1).ToList()) == keep).ToList();
                }
            case "selectattr" or "rejectattr":
                {
                    var keep = name == "selectattr";
                    var attribute = Values.ToStr(Arg(0, "attribute"));
                    return List(value).Where(x =>
                    {
                        var v = x is JinjaDict d && d.TryGetValue(attribute, out var found) ? found : new Undefined(attribute);
                        var ok = args.Count > 1 ? Tests.Apply(Values.ToStr(args[1]), v, args.Skip(2).ToList()) : Values.Truthy(v);
                        return ok == keep;
                    }).ToList();
                }
            default:
                throw new ChatTemplateException($"Unsupported Jinja construct: filter '{name}'.");
        }
    }

    private static string Str(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Values.ToStr(value),
    };

    private static IEnumerable<object?> List(object? value) => value switch
    {
        List<object?> l => l,
        JinjaDict d => d.Keys.Cast<object?>(),
        string s => Values.Codepoints(s).Select(cp => (object?)Values.FromCodepoints([cp])),
        Undefined => [],
        _ => throw new ChatTemplateException($"Expected a sequence, got {Values.TypeName(value)}."),
    };
}

/// <summary>The tests of <c>x is name</c>.</summary>
internal static class Tests
{
    public static bool Apply(string name, object? value, List<object?> args) => name switch
    {
        "defined" => value is not Undefined,
        "undefined" => value is Undefined,
        "none" => value is null,
        "string" => value is string,
        "number" => value is long or double,
        "integer" => value is long,
        "float" => value is double,
        "boolean" => value is bool,
        "true" => value is true,
        "false" => value is false,
        "mapping" => value is JinjaDict,
        "sequence" => value is List<object?> or string or JinjaDict,
        "iterable" => value is List<object?> or string or JinjaDict,
        "callable" => value is JinjaCallable,
        "odd" => value is long l && Math.Abs(l % 2) == 1,
        "even" => value is long l && l % 2 == 0,
        "divisibleby" => value is long l && args.Count > 0 && args[0] is long d && d != 0 && l % d == 0,
        "eq" or "equalto" or "==" => args.Count > 0 && Values.Equals(value, args[0]),
        "ne" or "!=" => args.Count > 0 && !Values.Equals(value, args[0]),
        "lt" or "lessthan" or "<" => Values.Compare(value, args[0]) < 0,
        "le" or "<=" => Values.Compare(value, args[0]) <= 0,
        "gt" or "greaterthan" or ">" => Values.Compare(value, args[0]) > 0,
        "ge" or ">=" => Values.Compare(value, args[0]) >= 0,
        "in" => args.Count > 0 && args[0] switch
        {
            List<object?> list => list.Any(x => Values.Equals(x, value)),
            string s => value is string sub && s.Contains(sub, StringComparison.Ordinal),
            JinjaDict d => value is string k && d.ContainsKey(k),
            _ => false,
        },
        "sameas" => args.Count > 0 && (ReferenceEquals(value, args[0]) || (value is bool or null && Values.Equals(value, args[0]) && value?.GetType() == args[0]?.GetType())),
        "lower" => value is string s && s == s.ToLowerInvariant(),
        "upper" => value is string s && s == s.ToUpperInvariant(),
        _ => throw new ChatTemplateException($"Unsupported Jinja construct: test '{name}'."),
    };
}

/// <summary>Python methods on strings, lists and dicts that templates call (<c>content.strip()</c>, <c>d.items()</c>, …).</summary>
internal static class Methods
{
    public static bool IsDictMethod(string name) => name is "items" or "keys" or "values" or "get";

    public static JinjaCallable Bind(object target, string name) => (args, kwargs) => Call(target, name, args, kwargs);

    public static object? Call(object target, string name, List<object?> args, Dictionary<string, object?> kwargs)
    {
        object? Arg(int i, string kw) => i < args.Count ? args[i] : kwargs.TryGetValue(kw, out var v) ? v : null;
        switch (target)
        {
            case string s:
                switch (name)
                {
                    case "strip": return Arg(0, "chars") is string c0 ? s.Trim(c0.ToCharArray()) : PyStrip(s, true, true);
                    case "lstrip": return Arg(0, "chars") is string c1 ? s.TrimStart(c1.ToCharArray()) : PyStrip(s, true, false);
                    case "rstrip": return Arg(0, "chars") is string c2 ? s.TrimEnd(c2.ToCharArray()) : PyStrip(s, false, true);
                    case "startswith": return Affix(s, Arg(0, "prefix"), (x, p) => x.StartsWith(p, StringComparison.Ordinal));
                    case "endswith": return Affix(s, Arg(0, "suffix"), (x, p) => x.EndsWith(p, StringComparison.Ordinal));
                    case "upper": return s.ToUpperInvariant();
                    case "lower": return s.ToLowerInvariant();
                    case "capitalize": return s.Length == 0 ? s : s[..1].ToUpperInvariant() + s[1..].ToLowerInvariant();
                    case "title": return Title(s);
                    case "replace":
                        {
                            var old = Values.ToStr(Arg(0, "old"));
                            var replacement = Values.ToStr(Arg(1, "new"));
                            var count = Arg(2, "count") is long n ? n : -1;
                            if (count < 0)
                            {
                                return old.Length == 0 ? s : s.Replace(old, replacement, StringComparison.Ordinal);
                            }
                            var sb = new StringBuilder();
                            var pos = 0;
                            for (var k = 0; k < count; k++)
                            {
                                var at = s.IndexOf(old, pos, StringComparison.Ordinal);
                                if (at < 0 || old.Length == 0)
                                {
                                    break;
                                }
                                sb.Append(s, pos, at - pos).Append(replacement);
                                pos = at + old.Length;
                            }
                            return sb.Append(s, pos, s.Length - pos).ToString();
                        }
                    case "split":
                        {
                            var sep = Arg(0, "sep");
                            var max = Arg(1, "maxsplit") is long m ? m : -1;
                            if (sep is null or Undefined)
                            {
                                var parts = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                                return parts.Select(p => (object?)p).ToList();
                            }
                            var separator = Values.ToStr(sep);
                            if (separator.Length == 0)
                            {
                                throw new ChatTemplateException("split: empty separator.");
                            }
                            var pieces = max < 0 ? s.Split(separator) : s.Split(separator, (int)max + 1);
                            return pieces.Select(p => (object?)p).ToList();
                        }
                    case "find": return (long)s.IndexOf(Values.ToStr(Arg(0, "sub")), StringComparison.Ordinal);
                    case "count":
                        {
                            var sub = Values.ToStr(Arg(0, "sub"));
                            if (sub.Length == 0)
                            {
                                return (long)(s.Length + 1);
                            }
                            long n = 0;
                            for (var at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0; at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal))
                            {
                                n++;
                            }
                            return n;
                        }
                    case "join": return string.Join(s, (Arg(0, "iterable") as List<object?> ?? []).Select(Values.ToStr));
                    case "splitlines": return s.Split('\n').Select(p => (object?)p.TrimEnd('\r')).ToList();
                    case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
                    case "isspace": return s.Length > 0 && s.All(Values.IsPythonSpace);
                    default: break;
                }
                break;
            case List<object?> list:
                switch (name)
                {
                    case "append": list.Add(Arg(0, "item")); return null;
                    case "pop":
                        {
                            var i = Arg(0, "index") is long n ? (int)(n < 0 ? n + list.Count : n) : list.Count - 1;
                            var v = list[i];
                            list.RemoveAt(i);
                            return v;
                        }
                    case "index": return (long)list.FindIndex(x => Values.Equals(x, Arg(0, "value")));
                    case "count": return (long)list.Count(x => Values.Equals(x, Arg(0, "value")));
                    default: break;
                }
                break;
            case JinjaDict d:
                switch (name)
                {
                    case "items": return d.Items.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList();
                    case "keys": return d.Keys.Select(k => (object?)k).ToList();
                    case "values": return d.Items.Select(kv => kv.Value).ToList();
                    case "get": return Arg(0, "key") is string k && d.TryGetValue(k, out var v) ? v : Arg(1, "default");
                    default: break;
                }
                break;
            default:
                break;
        }
        throw new ChatTemplateException($"Unsupported Jinja construct: method '{name}' on a {Values.TypeName(target)}.");
    }

    private static bool Affix(string s, object? arg, Func<string, string, bool> test) => arg switch
    {
        string p => test(s, p),
        List<object?> options => options.Any(o => o is string p && test(s, p)),
        _ => throw new ChatTemplateException($"startswith/endswith: expected a string, got {Values.TypeName(arg)}."),
    };

    public static string PyStrip(string s, bool start, bool end)
    {
        int a = 0, b = s.Length;
        if (start)
        {
            while (a < b && Values.IsPythonSpace(s[a]))
            {
                a++;
            }
        }
        if (end)
        {
            while (b > a && Values.IsPythonSpace(s[b - 1]))
            {
                b--;
            }
        }
        return s[a..b];
    }

    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return sb.ToString();
    }
}
