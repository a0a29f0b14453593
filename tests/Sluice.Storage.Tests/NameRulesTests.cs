namespace Sluice.Storage.Tests;

public sealed class NameRulesTests
{
    [Theory]
    [InlineData(NameKind.Id, "team_eng-1.a", true)]
    [InlineData(NameKind.Id, "has space", false)]
    [InlineData(NameKind.ModelName, "llama3.1:8b", true)]
    [InlineData(NameKind.ModelName, "openai/gpt-4o@2024+x", true)]
    [InlineData(NameKind.ModelName, "a\u0000b", false)]
    [InlineData(NameKind.Label, "Café ☕ 👩‍💻", true)]
    [InlineData(NameKind.Label, "tab\there", false)]
    [InlineData(NameKind.Label, "\u202Egnp.exe", false)]
    [InlineData(NameKind.Label, "iso\u2066late", false)]
    [InlineData(NameKind.Label, "bom\uFEFF", false)]
    [InlineData(NameKind.Label, "", false)]
    [InlineData(NameKind.Text, "two\nlines\tand tab", true)]
    [InlineData(NameKind.Text, "nul\0", false)]
    public void Accepts_and_refuses(NameKind kind, string value, bool accepted) =>
        Assert.Equal(accepted, NameRules.Check(kind, value) is null);

    [Fact]
    public void An_unpaired_surrogate_is_refused()
    {
        // Built in code: attribute arguments with lone surrogates do not survive test discovery.
        Assert.NotNull(NameRules.Check(NameKind.Label, "lone " + (char)0xD800));
        Assert.NotNull(NameRules.Check(NameKind.Text, (char)0xDC00 + "x"));
    }

    [Fact]
    public void Lengths_are_bounded_and_the_message_says_the_limit()
    {
        Assert.Contains("limit is 64", NameRules.Check(NameKind.Id, new string('a', 65)), StringComparison.Ordinal);
        Assert.Contains("limit is 200", NameRules.Check(NameKind.Label, new string('a', 100_000)), StringComparison.Ordinal);
        Assert.Null(NameRules.Check(NameKind.Label, new string('a', 200)));
    }

    [Fact]
    public void ToLabel_replaces_what_a_label_refuses()
    {
        Assert.Equal(" a b 👩‍💻", NameRules.ToLabel("\u202Ea\0b\ud800👩‍💻").Replace("  ", " ", StringComparison.Ordinal));
        Assert.Null(NameRules.Check(NameKind.Label, NameRules.ToLabel("x\u202E\u0007y\ud800")));
    }
}
