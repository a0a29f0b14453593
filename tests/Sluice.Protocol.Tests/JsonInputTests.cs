using System.Text;
using Sluice.Protocol;

namespace Sluice.Protocol.Tests;

/// <summary>Client JSON whose strings <see cref="System.Text.Json.JsonElement.GetString"/> would refuse is refused at parse time, naming the field.</summary>
public sealed class JsonInputTests
{
    [Theory]
    [InlineData("""{"a": "\ud800"}""", "a")]
    [InlineData("""{"a": "ok", "b": ["x", "y", "\udfff"]}""", "b[2]")]
    [InlineData("""{"messages": [{"role": "user"}, {"role": "user", "content": "x\ud83dy"}]}""", "messages[1].content")]
    [InlineData("""[1, {"k": {"deep": "\ud800\ud800"}}]""", "[1].k.deep")]
    [InlineData("""{"a": 1, "\ud800": 2}""", null)]
    [InlineData("""{"n": {"a": 1, "\ud800": 2}}""", "n")]
    [InlineData("\"\\udc00\"", null)]
    public void A_lone_surrogate_is_a_400_naming_where_it_is(string json, string? param)
    {
        var error = Assert.Throws<ChatException>(() => JsonInput.Parse(Encoding.UTF8.GetBytes(json)).Dispose());
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(JsonInput.InvalidTextCode, error.Error.Code);
        Assert.Equal(param, error.Error.Param);
        Assert.Contains("surrogate", error.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"model": "m", "input": "hi", "instructions": "be \ud800 brief"}""", "instructions")]
    [InlineData("""{"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "\udfff"}]}]}""", "input[0].content[0].text")]
    public void Every_dialect_parser_refuses_a_lone_surrogate_with_a_400_the_Responses_one_included(string json, string param)
    {
        // The fuzzer found /v1/responses answering 500 here: its parser read strings without this check.
        var error = Assert.Throws<ChatException>(() => Sluice.Protocol.Responses.ResponsesRequestParser.Parse(Encoding.UTF8.GetBytes(json)));
        Assert.Equal(400, error.StatusCode);
        Assert.Equal(JsonInput.InvalidTextCode, error.Error.Code);
        Assert.Equal(param, error.Error.Param);
    }

    [Fact]
    public void Invalid_UTF8_inside_a_string_is_a_400_naming_the_field()
    {
        byte[] json = [.. "{\"x\": 1, \"name\": \""u8, 0xE2, 0x28, 0xA1, .. "\"}"u8];
        var error = Assert.Throws<ChatException>(() => JsonInput.Parse(json).Dispose());
        Assert.Equal("name", error.Error.Param);
        Assert.Contains("UTF-8", error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nesting_past_the_limit_says_so_instead_of_pointing_at_quotes_and_commas()
    {
        var json = Encoding.UTF8.GetBytes("{\"messages\": " + new string('[', 70) + new string(']', 70) + "}");
        var error = Assert.Throws<ChatException>(() => JsonInput.Parse(json).Dispose());
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("invalid_json", error.Error.Code);
        Assert.Contains("deeper than 64 levels", error.Error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("quoting", error.Error.Message, StringComparison.Ordinal);

        // A typo is still a typo.
        var typo = Assert.Throws<ChatException>(() => JsonInput.Parse("{\"a\": 1,}"u8.ToArray()).Dispose());
        Assert.Contains("Check quoting and commas", typo.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Valid_text_escapes_and_pairs_pass_and_read_back()
    {
        using var document = JsonInput.Parse("""{"a": "smile \ud83d\ude00 \n \u00e9", "b": "caf\u00e9 plain ☕"}"""u8.ToArray());
        Assert.Equal("smile \ud83d\ude00 \n é", document.RootElement.GetProperty("a").GetString());
    }

    [Fact]
    public void Only_text_with_no_escape_and_valid_UTF8_skips_the_token_by_token_check()
    {
        Assert.True(JsonInput.IsPlainText("""{"model": "m", "messages": [{"role": "user", "content": "café \n ☕ \"q\""}]}"""u8));
        Assert.True(JsonInput.IsPlainText("{\"a\": \"☕ \\n\"}"u8));
        Assert.False(JsonInput.IsPlainText("""{"a": "\u00e9"}"""u8));
        Assert.False(JsonInput.IsPlainText([.. "{\"a\": \""u8, 0xE2, 0x28, 0xA1, .. "\"}"u8]));
    }

    [Fact]
    public void An_escaped_backslash_before_u_reads_back_as_text()
    {
        // Looks like an escape to the quick check, so it takes the full one, which passes it.
        using var document = JsonInput.Parse("""{"path": "C:\\users\\ud800"}"""u8.ToArray());
        Assert.Equal("C:\\users\\ud800", document.RootElement.GetProperty("path").GetString());
    }

    [Fact]
    public void Malformed_and_too_deep_JSON_are_invalid_json()
    {
        Assert.Equal("invalid_json", Assert.Throws<ChatException>(() => JsonInput.Parse("{\"a\": "u8.ToArray())).Error.Code);
        var deep = string.Concat(Enumerable.Repeat("[", 100)) + string.Concat(Enumerable.Repeat("]", 100));
        Assert.Equal("invalid_json", Assert.Throws<ChatException>(() => JsonInput.Parse(Encoding.UTF8.GetBytes(deep), maxDepth: 64)).Error.Code);
    }
}
