using Sluice.Gateway.Observability;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>Text a caller chose is escaped before it reaches a log line.</summary>
public sealed class LogTextTests
{
    [Theory]
    [InlineData("sim-fast", "sim-fast")]
    [InlineData("a\nb\r\tc", @"a\nb\r\tc")]
    [InlineData("red\u001b[31m", @"red\u001b[31m")]
    [InlineData("nul\0", @"nul\u0000")]
    [InlineData("del\u007f c1\u009b", @"del\u007f c1\u009b")]
    [InlineData("abc\u202edcba", @"abc\u202edcba")]
    [InlineData("line\u2028sep", @"line\u2028sep")]
    [InlineData("café ☕ 日本", "café ☕ 日本")]
    public void Unsafe_characters_are_written_as_escapes_and_the_rest_is_kept(string text, string logged) =>
        Assert.Equal(logged, LogText.Clean(text));

    [Fact]
    public void Clean_text_is_the_same_instance_and_null_stays_null()
    {
        const string clean = "gpt-4o-mini";
        Assert.Same(clean, LogText.Clean(clean));
        Assert.Null(LogText.Clean(null));
    }

    [Fact]
    public void Text_is_cut_before_it_is_escaped()
    {
        Assert.Equal("abc", LogText.Clean("abcdef", 3));
        Assert.Equal(@"a\u001b", LogText.Clean("a\u001bcdef", 2));
    }
}
