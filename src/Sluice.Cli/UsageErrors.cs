using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace Sluice.Cli;

/// <summary>
/// Command-line mistakes, reported the way the help promises: one line per problem that names the option as typed and
/// says what to do, then exit code 2 — instead of System.CommandLine's default (every error, the whole help, exit 1,
/// and .NET type names such as <c>System.Nullable`1[System.Int32]</c>).
/// </summary>
internal static partial class UsageErrors
{
    /// <summary>The problems in <paramref name="parse"/>, as messages for people; empty when the command line is fine.</summary>
    public static IReadOnlyList<string> Describe(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);

        // An unknown option is taken for a value of the command's argument (e.g. the chat prompt), and the real
        // argument is then blamed as "unmatched". Blame the option instead, and only it.
        var unknown = UnknownOptions(parse);
        if (unknown.Count > 0)
        {
            var command = CommandPath(parse.CommandResult);
            return unknown.Select(option => $"unknown option '{option}'. Run '{command} --help' to see the options.").ToList();
        }

        return parse.Errors.Select(error => Rewrite(error.Message)).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Writes the problems as "<c>sluice chat: …</c>" lines.</summary>
    public static void Write(ParseResult parse, IReadOnlyList<string> problems, TextWriter error)
    {
        var command = CommandPath(parse.CommandResult);
        foreach (var problem in problems)
        {
            error.WriteLine($"{command}: {problem}");
        }

        if (!problems.Any(p => p.Contains("--help", StringComparison.Ordinal)))
        {
            error.WriteLine($"Run '{command} --help' for usage.");
        }
    }

    /// <summary>Tokens given to a command's arguments that look like options (<c>-x</c>, <c>--name</c>) and are not negative numbers.</summary>
    private static List<string> UnknownOptions(ParseResult parse)
    {
        var afterDoubleDash = parse.Tokens
            .SkipWhile(t => t.Type != TokenType.DoubleDash)
            .Where(t => t.Type == TokenType.Argument)
            .ToHashSet();
        var found = new List<string>();
        foreach (var child in parse.CommandResult.Children.OfType<ArgumentResult>())
        {
            foreach (var token in child.Tokens)
            {
                if (!afterDoubleDash.Contains(token) && LooksLikeOption(token.Value) && !found.Contains(token.Value))
                {
                    found.Add(token.Value);
                }
            }
        }

        foreach (var token in parse.UnmatchedTokens)
        {
            if (LooksLikeOption(token) && !found.Contains(token))
            {
                found.Add(token);
            }
        }

        return found;
    }

    private static bool LooksLikeOption(string value) =>
        value.Length > 1 && value[0] == '-' && !double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _);

    private static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? current = result; current is not null; current = current.Parent)
        {
            if (current is CommandResult command)
            {
                names.Add(command.Command is RootCommand ? "sluice" : command.Command.Name);
            }
        }

        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>System.CommandLine's message, with the .NET type replaced by what to type.</summary>
    private static string Rewrite(string message)
    {
        var match = CannotParse().Match(message);
        if (match.Success)
        {
            var value = match.Groups["value"].Value;
            var option = match.Groups["option"].Value;
            return $"{option} expects {Expected(match.Groups["type"].Value)}, not '{value}'.";
        }

        return message;
    }

    private static string Expected(string type)
    {
        // "System.Nullable`1[System.Int32]" → "System.Int32".
        var inner = NullableOf().Match(type) is { Success: true } nullable ? nullable.Groups[1].Value : type;
        return inner switch
        {
            "System.Int32" or "System.Int64" or "System.Int16" => "a whole number (e.g. 200)",
            "System.Double" or "System.Single" or "System.Decimal" => "a number (e.g. 0.7)",
            "System.Boolean" => "true or false",
            "System.DateTimeOffset" or "System.DateTime" => "a date and time (ISO 8601, e.g. 2027-01-01T00:00:00Z)",
            "System.TimeSpan" => "a duration (e.g. 00:00:30)",
            _ => "a different kind of value",
        };
    }

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for (?:option|argument) '(?<option>[^']*)' as expected type '(?<type>[^']*)'\.?$", RegexOptions.Singleline)]
    private static partial Regex CannotParse();

    [GeneratedRegex(@"^System\.Nullable`1\[(.+)\]$")]
    private static partial Regex NullableOf();
}
