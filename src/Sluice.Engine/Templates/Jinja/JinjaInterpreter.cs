using System.Globalization;
using System.Text;

namespace Sluice.Engine.Templates.Jinja;

/// <summary>Executes a parsed template. Scoping follows Jinja: for-loop bodies and macros get their own scope.</summary>
internal sealed class JinjaInterpreter
{
    private readonly List<Dictionary<string, object?>> _scopes = [];

    private sealed class BreakSignal : Exception;

    private sealed class ContinueSignal : Exception;

    public JinjaInterpreter(Dictionary<string, object?> globals)
    {
        var builtins = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["raise_exception"] = (JinjaCallable)((args, _) =>
                throw new ChatTemplateException("The chat template raised an error: " + (args.Count > 0 ? Values.ToStr(args[0]) : ""), raisedByTemplate: true)),
            ["namespace"] = (JinjaCallable)((args, kwargs) =>
            {
                var ns = new JinjaDict(isNamespace: true);
                if (args.Count > 0 && args[0] is JinjaDict initial)
                {
                    foreach (var (k, v) in initial.Items)
                    {
                        ns[k] = v;
                    }
                }
                foreach (var (k, v) in kwargs)
                {
                    ns[k] = v;
                }
                return ns;
            }),
            ["range"] = (JinjaCallable)((args, _) =>
            {
                long start = 0, stop, step = 1;
                if (args.Count == 1)
                {
                    stop = ToLong(args[0]);
                }
                else
                {
                    start = ToLong(args[0]);
                    stop = ToLong(args[1]);
                    step = args.Count > 2 ? ToLong(args[2]) : 1;
                }
                if (step == 0)
                {
                    throw new ChatTemplateException("range() step must not be zero.");
                }
                var list = new List<object?>();
                for (var i = start; step > 0 ? i < stop : i > stop; i += step)
                {
                    list.Add(i);
                }
                return list;
            }),
            ["dict"] = (JinjaCallable)((_, kwargs) =>
            {
                var d = new JinjaDict();
                foreach (var (k, v) in kwargs)
                {
                    d[k] = v;
                }
                return d;
            }),
            ["strftime_now"] = (JinjaCallable)((args, _) => StrftimeNow(args.Count > 0 ? Values.ToStr(args[0]) : "%Y-%m-%d")),
        };
        _scopes.Add(builtins);
        _scopes.Add(globals);
    }

    public string Render(List<Node> nodes)
    {
        var sb = new StringBuilder();
        try
        {
            Execute(nodes, sb);
        }
        catch (BreakSignal)
        {
            throw new ChatTemplateException("'break' outside a for loop.");
        }
        catch (ContinueSignal)
        {
            throw new ChatTemplateException("'continue' outside a for loop.");
        }
        return sb.ToString();
    }

    private static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw new ChatTemplateException($"Expected an integer, got {Values.TypeName(v)}."),
    };

    private object? Lookup(string name)
    {
        for (var i = _scopes.Count - 1; i >= 0; i--)
        {
            if (_scopes[i].TryGetValue(name, out var v))
            {
                return v;
            }
        }
        return new Undefined(name);
    }

    private void Assign(string name, object? value) => _scopes[^1][name] = value;

    private void Execute(List<Node> nodes, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            Execute(node, output);
        }
    }

    private void Execute(Node node, StringBuilder output)
    {
        try
        {
            ExecuteCore(node, output);
        }
        catch (ChatTemplateException e) when (e.Line is null)
        {
            throw e.WithLine(node.Line);
        }
    }

    private void ExecuteCore(Node node, StringBuilder output)
    {
        switch (node)
        {
            case TextNode t:
                output.Append(t.Text);
                break;
            case OutputNode o:
                output.Append(Values.ToStr(Evaluate(o.Value)));
                break;
            case IfNode i:
                foreach (var (condition, body) in i.Branches)
                {
                    if (Values.Truthy(Evaluate(condition)))
                    {
                        Execute(body, output);
                        return;
                    }
                }
                if (i.Else is not null)
                {
                    Execute(i.Else, output);
                }
                break;
            case ForNode f:
                ExecuteFor(f, output);
                break;
            case SetNode s:
                {
                    object? value;
                    if (s.Body is not null)
                    {
                        var sb = new StringBuilder();
                        Execute(s.Body, sb);
                        value = sb.ToString();
                    }
                    else
                    {
                        value = Evaluate(s.Value!);
                    }
                    AssignTargets(s.Targets, value);
                    break;
                }
            case SetAttributeNode a:
                {
                    var target = Evaluate(a.Target);
                    if (target is not JinjaDict { IsNamespace: true } ns)
                    {
                        throw new ChatTemplateException($"Cannot assign attribute '{a.Attribute}' on a {Values.TypeName(target)}: only namespace() objects take 'set x.attr'.");
                    }
                    ns[a.Attribute] = Evaluate(a.Value);
                    break;
                }
            case MacroNode m:
                Assign(m.Name, MakeMacro(m));
                break;
            case BreakNode:
                throw new BreakSignal();
            case ContinueNode:
                throw new ContinueSignal();
            case BlockNode b:
                Execute(b.Body, output);
                break;
            default:
                throw new ChatTemplateException($"Unsupported node {node.GetType().Name}.");
        }
    }

    private void AssignTargets(List<string> targets, object? value)
    {
        if (targets.Count == 1)
        {
            Assign(targets[0], value);
            return;
        }
        var items = Iterate(value).ToList();
        if (items.Count != targets.Count)
        {
            throw new ChatTemplateException($"Cannot unpack {items.Count} values into {targets.Count} names.");
        }
        for (var i = 0; i < targets.Count; i++)
        {
            Assign(targets[i], items[i]);
        }
    }

    private JinjaCallable MakeMacro(MacroNode m) => (args, kwargs) =>
    {
        var scope = new Dictionary<string, object?>(StringComparer.Ordinal);
        for (var i = 0; i < m.Parameters.Count; i++)
        {
            var (name, defaultValue) = m.Parameters[i];
            scope[name] = i < args.Count ? args[i]
                : kwargs.TryGetValue(name, out var kw) ? kw
                : defaultValue is not null ? Evaluate(defaultValue)
                : new Undefined(name);
        }
        _scopes.Add(scope);
        try
        {
            var sb = new StringBuilder();
            Execute(m.Body, sb);
            return sb.ToString();
        }
        finally
        {
            _scopes.RemoveAt(_scopes.Count - 1);
        }
    };

    private void ExecuteFor(ForNode f, StringBuilder output)
    {
        var items = Iterate(Evaluate(f.Iterable)).ToList();
        _scopes.Add(new Dictionary<string, object?>(StringComparer.Ordinal));
        try
        {
            if (f.Filter is not null)
            {
                items = [.. items.Where(item =>
                {
                    AssignTargets(f.Targets, item);
                    return Values.Truthy(Evaluate(f.Filter));
                })];
            }
            if (items.Count == 0)
            {
                if (f.Else is not null)
                {
                    _scopes.RemoveAt(_scopes.Count - 1);
                    _scopes.Add(new Dictionary<string, object?>(StringComparer.Ordinal));
                    Execute(f.Else, output);
                }
                return;
            }
            for (var i = 0; i < items.Count; i++)
            {
                var scope = _scopes[^1];
                scope.Clear();
                var loop = new JinjaDict();
                loop["index"] = (long)(i + 1);
                loop["index0"] = (long)i;
                loop["revindex"] = (long)(items.Count - i);
                loop["revindex0"] = (long)(items.Count - i - 1);
                loop["first"] = i == 0;
                loop["last"] = i == items.Count - 1;
                loop["length"] = (long)items.Count;
                loop["depth"] = 1L;
                loop["depth0"] = 0L;
                loop["previtem"] = i > 0 ? items[i - 1] : new Undefined("previtem");
                loop["nextitem"] = i + 1 < items.Count ? items[i + 1] : new Undefined("nextitem");
                var index = i;
                loop["cycle"] = (JinjaCallable)((args, _) => args.Count == 0 ? null : args[index % args.Count]);
                scope["loop"] = loop;
                AssignTargets(f.Targets, items[i]);
                try
                {
                    Execute(f.Body, output);
                }
                catch (ContinueSignal)
                {
                }
                catch (BreakSignal)
                {
                    break;
                }
            }
        }
        finally
        {
            _scopes.RemoveAt(_scopes.Count - 1);
        }
    }

    private static IEnumerable<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list,
        JinjaDict dict => dict.Keys.Cast<object?>(),
        string s => Values.Codepoints(s).Select(cp => (object?)Values.FromCodepoints([cp])),
        Undefined => [],
        null => throw new ChatTemplateException("Cannot iterate over none."),
        _ => throw new ChatTemplateException($"Cannot iterate over a {Values.TypeName(value)}."),
    };

    private object? Evaluate(Expr expr)
    {
        switch (expr)
        {
            case LiteralExpr l:
                return l.Value;
            case NameExpr n:
                return Lookup(n.Name);
            case ListExpr l:
                return l.Items.Select(Evaluate).ToList();
            case TupleExpr t:
                return t.Items.Select(Evaluate).ToList();
            case DictExpr d:
                {
                    var dict = new JinjaDict();
                    foreach (var (k, v) in d.Items)
                    {
                        dict[Values.ToStr(Evaluate(k))] = Evaluate(v);
                    }
                    return dict;
                }
            case AttributeExpr a:
                return GetAttribute(Evaluate(a.Target), a.Name);
            case IndexExpr i:
                return GetItem(Evaluate(i.Target), Evaluate(i.Index));
            case SliceExpr s:
                return Slice(Evaluate(s.Target), s.Start is null ? null : Evaluate(s.Start), s.Stop is null ? null : Evaluate(s.Stop),
                    s.Step is null ? null : Evaluate(s.Step));
            case CallExpr c:
                {
                    var callee = Evaluate(c.Callee);
                    if (callee is not JinjaCallable fn)
                    {
                        throw new ChatTemplateException(callee is Undefined u
                            ? $"Unsupported Jinja construct: function '{u.Name}' is not defined."
                            : $"A {Values.TypeName(callee)} is not callable.");
                    }
                    return fn(c.Args.Select(Evaluate).ToList(), c.Kwargs.ToDictionary(k => k.Name, k => Evaluate(k.Value), StringComparer.Ordinal));
                }
            case FilterExpr f:
                return Filters.Apply(this, f.Name, Evaluate(f.Value), f.Args.Select(Evaluate).ToList(),
                    f.Kwargs.ToDictionary(k => k.Name, k => Evaluate(k.Value), StringComparer.Ordinal));
            case TestExpr t:
                {
                    var result = Tests.Apply(t.Name, Evaluate(t.Value), t.Args.Select(Evaluate).ToList());
                    return t.Negated ? !result : result;
                }
            case UnaryExpr u:
                {
                    var v = Evaluate(u.Operand);
                    return u.Op switch
                    {
                        "not" => !Values.Truthy(v),
                        "-" => v switch
                        {
                            long l => (object)(-l),
                            double d => -d,
                            bool b => b ? -1L : 0L,
                            _ => throw new ChatTemplateException($"Cannot negate a {Values.TypeName(v)}."),
                        },
                        _ => v,
                    };
                }
            case BinaryExpr b:
                return EvaluateBinary(b);
            case ConditionalExpr c:
                return Values.Truthy(Evaluate(c.Condition)) ? Evaluate(c.Then) : c.Else is null ? new Undefined("else") : Evaluate(c.Else);
            default:
                throw new ChatTemplateException($"Unsupported expression {expr.GetType().Name}.");
        }
    }

    private object? EvaluateBinary(BinaryExpr b)
    {
        if (b.Op == "and")
        {
            var left = Evaluate(b.Left);
            return Values.Truthy(left) ? Evaluate(b.Right) : left;
        }
        if (b.Op == "or")
        {
            var left = Evaluate(b.Left);
            return Values.Truthy(left) ? left : Evaluate(b.Right);
        }
        var l = Evaluate(b.Left);
        var r = Evaluate(b.Right);
        switch (b.Op)
        {
            case "==": return Values.Equals(l, r);
            case "!=": return !Values.Equals(l, r);
            case "<": return Values.Compare(l, r) < 0;
            case ">": return Values.Compare(l, r) > 0;
            case "<=": return Values.Compare(l, r) <= 0;
            case ">=": return Values.Compare(l, r) >= 0;
            case "in": return Contains(r, l);
            case "not in": return !Contains(r, l);
            case "~": return Values.ToStr(l) + Values.ToStr(r);
            case "+":
                return (l, r) switch
                {
                    (string x, string y) => x + y,
                    (List<object?> x, List<object?> y) => (object)x.Concat(y).ToList(),
                    _ when Values.IsNumber(l) && Values.IsNumber(r) => Arithmetic(l, r, "+"),
                    _ => throw new ChatTemplateException($"Cannot add a {Values.TypeName(r)} to a {Values.TypeName(l)} (use ~ to join text)."),
                };
            case "*" when l is string s && r is long n:
                return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n)));
            case "*" when l is List<object?> list && r is long n:
                return Enumerable.Repeat(list, (int)Math.Max(0, n)).SelectMany(x => x).ToList();
            case "-" or "*" or "/" or "//" or "%" or "**":
                if (b.Op == "%" && l is string format)
                {
                    throw new ChatTemplateException($"Unsupported Jinja construct: '%' string formatting ('{format}').");
                }
                return Arithmetic(l, r, b.Op);
            default:
                throw new ChatTemplateException($"Unsupported Jinja construct: operator '{b.Op}'.");
        }
    }

    private static object Arithmetic(object? l, object? r, string op)
    {
        if (!Values.IsNumber(l) || !Values.IsNumber(r))
        {
            throw new ChatTemplateException($"Operator '{op}' needs numbers, got {Values.TypeName(l)} and {Values.TypeName(r)}.");
        }
        var integers = l is long or bool && r is long or bool;
        if (integers && op != "/")
        {
            var x = ToLong(l);
            var y = ToLong(r);
            switch (op)
            {
                case "+": return x + y;
                case "-": return x - y;
                case "*": return x * y;
                case "**": return y >= 0 ? (object)(long)Math.Pow(x, y) : Math.Pow(x, y);
                case "//":
                case "%":
                    if (y == 0)
                    {
                        throw new ChatTemplateException("Division by zero.");
                    }
                    var q = (long)Math.Floor((double)x / y);
                    return op == "//" ? q : x - q * y;
            }
        }
        var a = Values.ToDouble(l);
        var c = Values.ToDouble(r);
        return op switch
        {
            "+" => a + c,
            "-" => a - c,
            "*" => a * c,
            "/" => c == 0 ? throw new ChatTemplateException("Division by zero.") : a / c,
            "//" => Math.Floor(a / c),
            "%" => a - Math.Floor(a / c) * c,
            "**" => Math.Pow(a, c),
            _ => throw new ChatTemplateException($"Unsupported operator '{op}'."),
        };
    }

    private static bool Contains(object? container, object? item) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw new ChatTemplateException($"'in <string>' needs a string on the left, got {Values.TypeName(item)}."),
        List<object?> list => list.Any(x => Values.Equals(x, item)),
        JinjaDict d => item is string k && d.ContainsKey(k),
        Undefined => false,
        _ => throw new ChatTemplateException($"'in' is not supported on a {Values.TypeName(container)}."),
    };

    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case JinjaDict d:
                return key is string k && d.TryGetValue(k, out var v) ? v : key is not string && d.TryGetValue(Values.ToStr(key), out var v2) ? v2 : new Undefined(Values.ToStr(key));
            case List<object?> list when key is long or bool:
                {
                    var i = ToLong(key);
                    if (i < 0)
                    {
                        i += list.Count;
                    }
                    return i >= 0 && i < list.Count ? list[(int)i] : new Undefined($"[{key}]");
                }
            case string s when key is long or bool:
                {
                    var cps = Values.Codepoints(s);
                    var i = ToLong(key);
                    if (i < 0)
                    {
                        i += cps.Length;
                    }
                    return i >= 0 && i < cps.Length ? Values.FromCodepoints([cps[i]]) : new Undefined($"[{key}]");
                }
            case Undefined u:
                throw new ChatTemplateException($"'{u.Name}' is undefined (looking up [{Values.Repr(key)}]).");
            case null:
                throw new ChatTemplateException($"Cannot look up [{Values.Repr(key)}] in none.");
            default:
                return key is string name ? GetAttribute(target, name) : new Undefined($"[{key}]");
        }
    }

    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined u:
                throw new ChatTemplateException($"'{u.Name}' is undefined (looking up '.{name}').");
            case null:
                throw new ChatTemplateException($"Cannot look up '.{name}' in none.");
            case JinjaDict d:
                if (!d.IsNamespace && Methods.IsDictMethod(name))
                {
                    return Methods.Bind(d, name);
                }
                return d.TryGetValue(name, out var v) ? v : new Undefined(name);
            case string or List<object?>:
                return Methods.Bind(target, name);
            default:
                return new Undefined(name);
        }
    }

    private static object? Slice(object? target, object? start, object? stop, object? step)
    {
        var st = step is null ? 1 : ToLong(step);
        if (st == 0)
        {
            throw new ChatTemplateException("Slice step cannot be zero.");
        }
        List<T> Take<T>(IReadOnlyList<T> items)
        {
            var n = items.Count;
            long Norm(object? v, long dflt, bool isStart)
            {
                if (v is null)
                {
                    return dflt;
                }
                var i = ToLong(v);
                if (i < 0)
                {
                    i += n;
                }
                return st > 0 ? Math.Clamp(i, 0, n) : Math.Clamp(i, -1, n - 1);
            }
            var a = Norm(start, st > 0 ? 0 : n - 1, true);
            var b = Norm(stop, st > 0 ? n : -1, false);
            var result = new List<T>();
            for (var i = a; st > 0 ? i < b : i > b; i += st)
            {
                result.Add(items[(int)i]);
            }
            return result;
        }
        return target switch
        {
            List<object?> list => Take(list),
            string s => Values.FromCodepoints(Take(Values.Codepoints(s))),
            _ => throw new ChatTemplateException($"Cannot slice a {Values.TypeName(target)}."),
        };
    }

    private static string StrftimeNow(string format)
    {
        var now = DateTime.Now;
        var sb = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                sb.Append(format[i]);
                continue;
            }
            var c = format[++i];
            sb.Append(c switch
            {
                'Y' => now.ToString("yyyy", CultureInfo.InvariantCulture),
                'm' => now.ToString("MM", CultureInfo.InvariantCulture),
                'd' => now.ToString("dd", CultureInfo.InvariantCulture),
                'B' => now.ToString("MMMM", CultureInfo.InvariantCulture),
                'b' => now.ToString("MMM", CultureInfo.InvariantCulture),
                'H' => now.ToString("HH", CultureInfo.InvariantCulture),
                'M' => now.ToString("mm", CultureInfo.InvariantCulture),
                'S' => now.ToString("ss", CultureInfo.InvariantCulture),
                'A' => now.ToString("dddd", CultureInfo.InvariantCulture),
                'a' => now.ToString("ddd", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }

    /// <summary>Filters that call back into the interpreter (map/select with another filter or test).</summary>
    internal object? ApplyFilterByName(string name, object? value, List<object?> args) =>
        Filters.Apply(this, name, value, args, []);
}
