namespace Sluice.Cli.Tests;

/// <summary>Command-line mistakes exit 2, as the help says, with one line that blames the right thing.</summary>
public sealed class UsageErrorTests
{
    [Theory]
    [InlineData(new[] { "chat", "--max-tokens", "abc", "Hello" }, "sluice chat: --max-tokens expects a whole number (e.g. 200), not 'abc'.")]
    [InlineData(new[] { "chat", "--temperature", "warm", "Hello" }, "sluice chat: --temperature expects a number (e.g. 0.7), not 'warm'.")]
    [InlineData(new[] { "serve", "--port", "eighty" }, "sluice serve: --port expects a whole number (e.g. 200), not 'eighty'.")]
    [InlineData(new[] { "admin", "keys", "create", "team_x", "--expires", "tomorrow" }, "sluice admin keys create: --expires expects a date and time (ISO 8601, e.g. 2027-01-01T00:00:00Z), not 'tomorrow'.")]
    public async Task Bad_number_exits_2_and_names_the_option_and_what_to_type(string[] args, string expected)
    {
        var result = await CliProcess.RunAsync(args);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal(expected, result.StderrLines[0]);
        Assert.DoesNotContain("System.", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Nullable", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, result.Stdout);
    }

    [Fact]
    public async Task Unknown_option_is_the_one_blamed_not_the_prompt()
    {
        var result = await CliProcess.RunAsync(["chat", "--bogus", "Hello there"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.StderrLines);
        Assert.Equal("sluice chat: unknown option '--bogus'. Run 'sluice chat --help' to see the options.", line);
    }

    [Fact]
    public async Task Missing_required_option_exits_2_without_printing_the_whole_help()
    {
        var result = await CliProcess.RunAsync(["admin", "teams", "create", "--org", "org_x"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal(["sluice admin teams create: Option '--name' is required.", "Run 'sluice admin teams create --help' for usage."], result.StderrLines);
    }

    [Fact]
    public async Task Unknown_command_exits_2()
    {
        var result = await CliProcess.RunAsync(["frobnicate"]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(result.StderrLines, l => l.Contains("'frobnicate'", StringComparison.Ordinal));
        Assert.DoesNotContain("Description:", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_still_exits_0()
    {
        var result = await CliProcess.RunAsync(["chat", "--help"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Exit codes: 0 ok, 2 bad usage", result.Stdout, StringComparison.Ordinal);
    }
}
