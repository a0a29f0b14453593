using System.Globalization;

namespace Sluice.Engine.Templates.Jinja;

/// <summary>Recursive-descent parser for the Jinja subset chat templates use; anything else is a clear error.</summary>
internal sealed class JinjaParser
{
    private readonly List<JinjaToken> _tokens;
    private int _pos;

    private JinjaParser(List<JinjaToken> tokens) => _tokens = tokens;

    public static List<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(source));
        var body = parser.ParseBody(out var end);
        if (end is not null)
        {
            throw new ChatTemplateException($"Unexpected '{{% {end} %}}' (line {parser.Current.Line}).");
        }
        return body;
    }

    private JinjaToken Current => _tokens[_pos];

    private JinjaToken Next() => _tokens[_pos++];

    private bool IsOp(string op, int ahead = 0) =>
        _tokens[Math.Min(_pos + ahead, _tokens.Count - 1)] is { Kind: TokenKind.Operator } t && t.Value == op;

    private bool IsName(string name, int ahead = 0) =>
        _tokens[Math.Min(_pos + ahead, _tokens.Count - 1)] is { Kind: TokenKind.Name } t && t.Value == name;

    private void ExpectOp(string op)
    {
        if (!IsOp(op))
        {
            throw Error($"expected '{op}'");
        }
        _pos++;
    }

    private void ExpectName(string name)
    {
        if (!IsName(name))
        {
            throw Error($"expected '{name}'");
        }
        _pos++;
    }

    private string ExpectIdentifier()
    {
        if (Current.Kind != TokenKind.Name)
        {
            throw Error("expected a name");
        }
        return Next().Value;
    }

    private void Expect(TokenKind kind)
    {
        if (Current.Kind != kind)
        {
            throw Error($"expected {(kind == TokenKind.StmtEnd ? "'%}'" : kind == TokenKind.ExprEnd ? "'}}'" : kind.ToString())}");
        }
        _pos++;
    }

    private ChatTemplateException Error(string message)
    {
        var t = Current;
        var found = t.Kind switch
        {
            TokenKind.End => "the end of the template",
            TokenKind.StmtEnd => "'%}'",
            TokenKind.ExprEnd => "'}}'",
            TokenKind.Text => "text",
            _ => $"'{t.Value}'",
        };
        return new ChatTemplateException($"Template syntax error (line {t.Line}): {message}, found {found}.");
    }

    // Parses nodes until an end/intermediate tag ({% endX %}, {% else %}, {% elif %}); returns that tag's keyword (tag left
    // open for the caller) or null at the end of the template.
    private List<Node> ParseBody(out string? end, params string[] stops)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (stops.Length > 0)
                    {
                        throw new ChatTemplateException($"Template syntax error: missing '{{% {stops[^1]} %}}' before the end of the template.");
                    }
                    end = null;
                    return nodes;
                case TokenKind.Text:
                    nodes.Add(new TextNode(t.Line, t.Value));
                    _pos++;
                    break;
                case TokenKind.ExprStart:
                    _pos++;
                    nodes.Add(new OutputNode(t.Line, ParseExpression()));
                    Expect(TokenKind.ExprEnd);
                    break;
                case TokenKind.StmtStart:
                    var keyword = _tokens[_pos + 1];
                    if (keyword.Kind == TokenKind.Name && stops.Contains(keyword.Value))
                    {
                        _pos += 2;
                        end = keyword.Value;
                        return nodes;
                    }
                    _pos++;
                    nodes.Add(ParseStatement());
                    break;
                default:
                    throw Error("unexpected token");
            }
        }
    }

    private Node ParseStatement()
    {
        var line = Current.Line;
        var keyword = ExpectIdentifier();
        switch (keyword)
        {
            case "if":
                {
                    var branches = new List<(Expr, List<Node>)>();
                    var condition = ParseExpression();
                    Expect(TokenKind.StmtEnd);
                    List<Node>? elseBody = null;
                    while (true)
                    {
                        var body = ParseBody(out var end, "elif", "else", "endif");
                        branches.Add((condition, body));
                        if (end == "elif")
                        {
                            condition = ParseExpression();
                            Expect(TokenKind.StmtEnd);
                            continue;
                        }
                        Expect(TokenKind.StmtEnd);
                        if (end == "else")
                        {
                            elseBody = ParseBody(out _, "endif");
                            Expect(TokenKind.StmtEnd);
                        }
                        break;
                    }
                    return new IfNode(line, branches, elseBody);
                }
            case "for":
                {
                    var targets = new List<string> { ExpectIdentifier() };
                    while (IsOp(","))
                    {
                        _pos++;
                        targets.Add(ExpectIdentifier());
                    }
                    ExpectName("in");
                    var iterable = ParseExpression(allowConditional: false);
                    Expr? filter = null;
                    if (IsName("if"))
                    {
                        _pos++;
                        filter = ParseExpression(allowConditional: false);
                    }
                    if (IsName("recursive"))
                    {
                        throw new ChatTemplateException($"Unsupported Jinja construct: recursive for loops (line {line}).");
                    }
                    Expect(TokenKind.StmtEnd);
                    var body = ParseBody(out var end, "else", "endfor");
                    Expect(TokenKind.StmtEnd);
                    List<Node>? elseBody = null;
                    if (end == "else")
                    {
                        elseBody = ParseBody(out _, "endfor");
                        Expect(TokenKind.StmtEnd);
                    }
                    return new ForNode(line, targets, iterable, filter, body, elseBody);
                }
            case "set":
                {
                    var first = ExpectIdentifier();
                    if (IsOp("."))
                    {
                        _pos++;
                        var attribute = ExpectIdentifier();
                        ExpectOp("=");
                        var value = ParseExpression();
                        Expect(TokenKind.StmtEnd);
                        return new SetAttributeNode(line, new NameExpr(line, first), attribute, value);
                    }
                    var targets = new List<string> { first };
                    while (IsOp(","))
                    {
                        _pos++;
                        targets.Add(ExpectIdentifier());
                    }
                    if (IsOp("="))
                    {
                        _pos++;
                        var value = ParseExpression();
                        Expect(TokenKind.StmtEnd);
                        return new SetNode(line, targets, value, null);
                    }
                    Expect(TokenKind.StmtEnd);
                    var body = ParseBody(out _, "endset");
                    Expect(TokenKind.StmtEnd);
                    return new SetNode(line, targets, null, body);
                }
            case "macro":
                {
                    var name = ExpectIdentifier();
                    ExpectOp("(");
                    var parameters = new List<(string, Expr?)>();
                    while (!IsOp(")"))
                    {
                        var p = ExpectIdentifier();
                        Expr? d = null;
                        if (IsOp("="))
                        {
                            _pos++;
                            d = ParseExpression();
                        }
                        parameters.Add((p, d));
                        if (!IsOp(")"))
                        {
                            ExpectOp(",");
                        }
                    }
                    _pos++;
                    Expect(TokenKind.StmtEnd);
                    var body = ParseBody(out _, "endmacro");
                    Expect(TokenKind.StmtEnd);
                    return new MacroNode(line, name, parameters, body);
                }
            case "break":
                Expect(TokenKind.StmtEnd);
                return new BreakNode(line);
            case "continue":
                Expect(TokenKind.StmtEnd);
                return new ContinueNode(line);
            case "generation":
                {
                    // Hugging Face's {% generation %} only marks assistant text for training masks: it renders its body.
                    Expect(TokenKind.StmtEnd);
                    var body = ParseBody(out _, "endgeneration");
                    Expect(TokenKind.StmtEnd);
                    return new BlockNode(line, body);
                }
            default:
                throw new ChatTemplateException($"Unsupported Jinja construct: statement '{{% {keyword} %}}' (line {line}).");
        }
    }

    private Expr ParseExpression(bool allowConditional = true)
    {
        var line = Current.Line;
        var value = ParseOr();
        if (allowConditional && IsName("if"))
        {
            _pos++;
            var condition = ParseOr();
            Expr? otherwise = null;
            if (IsName("else"))
            {
                _pos++;
                otherwise = ParseExpression();
            }
            return new ConditionalExpr(line, condition, value, otherwise);
        }
        return value;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (IsName("or"))
        {
            var line = Next().Line;
            left = new BinaryExpr(line, "or", left, ParseAnd());
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (IsName("and"))
        {
            var line = Next().Line;
            left = new BinaryExpr(line, "and", left, ParseNot());
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (IsName("not"))
        {
            var line = Next().Line;
            return new UnaryExpr(line, "not", ParseNot());
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var left = ParseMath1();
        while (true)
        {
            var line = Current.Line;
            if (Current.Kind == TokenKind.Operator && Current.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                var op = Next().Value;
                left = new BinaryExpr(line, op, left, ParseMath1());
            }
            else if (IsName("in"))
            {
                _pos++;
                left = new BinaryExpr(line, "in", left, ParseMath1());
            }
            else if (IsName("not") && IsName("in", 1))
            {
                _pos += 2;
                left = new BinaryExpr(line, "not in", left, ParseMath1());
            }
            else
            {
                return left;
            }
        }
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (IsOp("+") || IsOp("-"))
        {
            var t = Next();
            left = new BinaryExpr(t.Line, t.Value, left, ParseConcat());
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (IsOp("~"))
        {
            var t = Next();
            left = new BinaryExpr(t.Line, "~", left, ParseMath2());
        }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%"))
        {
            var t = Next();
            left = new BinaryExpr(t.Line, t.Value, left, ParsePow());
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary();
        while (IsOp("**"))
        {
            var t = Next();
            left = new BinaryExpr(t.Line, "**", left, ParseUnary());
        }
        return left;
    }

    private Expr ParseUnary()
    {
        if (IsOp("-") || IsOp("+"))
        {
            var t = Next();
            return ParseFilters(new UnaryExpr(t.Line, t.Value, ParseUnary()));
        }
        return ParseFilters(ParsePostfix(ParsePrimary()));
    }

    private Expr ParseFilters(Expr value)
    {
        while (true)
        {
            var line = Current.Line;
            if (IsOp("|"))
            {
                _pos++;
                var name = ExpectIdentifier();
                var (args, kwargs) = IsOp("(") ? ParseArguments() : ([], []);
                value = new FilterExpr(line, value, name, args, kwargs);
            }
            else if (IsName("is"))
            {
                _pos++;
                var negated = false;
                if (IsName("not"))
                {
                    _pos++;
                    negated = true;
                }
                var name = ExpectIdentifier();
                List<Expr> args = [];
                if (IsOp("("))
                {
                    args = ParseArguments().Args;
                }
                else if (Current.Kind is TokenKind.Integer or TokenKind.Float or TokenKind.String
                         || (Current.Kind == TokenKind.Name && Current.Value is not ("and" or "or" or "else" or "if" or "not" or "in" or "is")))
                {
                    args = [ParsePostfix(ParsePrimary())];
                }
                value = new TestExpr(line, value, name, args, negated);
            }
            else
            {
                return value;
            }
        }
    }

    private (List<Expr> Args, List<(string, Expr)> Kwargs) ParseArguments()
    {
        ExpectOp("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!IsOp(")"))
        {
            if (Current.Kind == TokenKind.Name && IsOp("=", 1))
            {
                var name = Next().Value;
                _pos++;
                kwargs.Add((name, ParseExpression()));
            }
            else
            {
                args.Add(ParseExpression());
            }
            if (!IsOp(")"))
            {
                ExpectOp(",");
            }
        }
        _pos++;
        return (args, kwargs);
    }

    private Expr ParsePostfix(Expr value)
    {
        while (true)
        {
            var line = Current.Line;
            if (IsOp("."))
            {
                _pos++;
                var name = Current.Kind == TokenKind.Integer ? Next().Value : ExpectIdentifier();
                value = int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var index)
                    ? new IndexExpr(line, value, new LiteralExpr(line, (long)index))
                    : new AttributeExpr(line, value, name);
            }
            else if (IsOp("["))
            {
                _pos++;
                Expr? start = null, stop = null, step = null;
                var isSlice = false;
                if (!IsOp(":"))
                {
                    start = ParseExpression();
                }
                if (IsOp(":"))
                {
                    isSlice = true;
                    _pos++;
                    if (!IsOp(":") && !IsOp("]"))
                    {
                        stop = ParseExpression();
                    }
                    if (IsOp(":"))
                    {
                        _pos++;
                        if (!IsOp("]"))
                        {
                            step = ParseExpression();
                        }
                    }
                }
                ExpectOp("]");
                value = isSlice ? new SliceExpr(line, value, start, stop, step) : new IndexExpr(line, value, start!);
            }
            else if (IsOp("("))
            {
                var (args, kwargs) = ParseArguments();
                value = new CallExpr(line, value, args, kwargs);
            }
            else
            {
                return value;
            }
        }
    }

    private Expr ParsePrimary()
    {
        var t = Current;
        switch (t.Kind)
        {
            case TokenKind.String:
                {
                    _pos++;
                    var s = t.Value;
                    // Adjacent string literals concatenate, as in Python.
                    while (Current.Kind == TokenKind.String)
                    {
                        s += Next().Value;
                    }
                    return new LiteralExpr(t.Line, s);
                }
            case TokenKind.Integer:
                _pos++;
                return new LiteralExpr(t.Line, long.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Float:
                _pos++;
                return new LiteralExpr(t.Line, double.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Name:
                _pos++;
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(t.Line, true),
                    "false" or "False" => new LiteralExpr(t.Line, false),
                    "none" or "None" => new LiteralExpr(t.Line, null),
                    _ => new NameExpr(t.Line, t.Value),
                };
            case TokenKind.Operator when t.Value == "(":
                {
                    _pos++;
                    if (IsOp(")"))
                    {
                        _pos++;
                        return new TupleExpr(t.Line, []);
                    }
                    var first = ParseExpression();
                    if (IsOp(")"))
                    {
                        _pos++;
                        return first;
                    }
                    var items = new List<Expr> { first };
                    while (IsOp(","))
                    {
                        _pos++;
                        if (IsOp(")"))
                        {
                            break;
                        }
                        items.Add(ParseExpression());
                    }
                    ExpectOp(")");
                    return new TupleExpr(t.Line, items);
                }
            case TokenKind.Operator when t.Value == "[":
                {
                    _pos++;
                    var items = new List<Expr>();
                    while (!IsOp("]"))
                    {
                        items.Add(ParseExpression());
                        if (!IsOp("]"))
                        {
                            ExpectOp(",");
                        }
                    }
                    _pos++;
                    return new ListExpr(t.Line, items);
                }
            case TokenKind.Operator when t.Value == "{":
                {
                    _pos++;
                    var items = new List<(Expr, Expr)>();
                    while (!IsOp("}"))
                    {
                        var key = ParseExpression();
                        ExpectOp(":");
                        items.Add((key, ParseExpression()));
                        if (!IsOp("}"))
                        {
                            ExpectOp(",");
                        }
                    }
                    _pos++;
                    return new DictExpr(t.Line, items);
                }
            default:
                throw Error("expected an expression");
        }
    }
}
