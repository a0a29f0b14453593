using System.Net;
using System.Text;
using System.Text.Json;
using Sluice.Testing;

namespace Sluice.Gateway.Tests.Dialects;

/// <summary>
/// Anthropic's structured outputs (<c>output_format</c> with a JSON schema) are honoured on <c>/v1/messages</c> like
/// OpenAI's <c>response_format</c>: the answer's text is JSON valid against the schema, streamed or not.
/// </summary>
public sealed class AnthropicOutputFormatTests
{
    private const string Schema = """
        {"type": "object", "properties": {"city": {"type": "string"}, "temperature": {"type": "number"},
         "sky": {"type": "string", "enum": ["clear", "cloudy", "overcast"]}}, "required": ["city", "temperature", "sky"], "additionalProperties": false}
        """;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_answer_text_validates_against_the_output_format_schema(bool stream)
    {
        await using var gateway = await TestGateway.StartAsync();
        var body = $$$"""{"model": "sim-fast", "max_tokens": 400, "stream": {{{(stream ? "true" : "false")}}}, "messages": [{"role": "user", "content": "Weather in Oslo as JSON"}], "output_format": {"type": "json_schema", "schema": {{{Schema}}}}}""";
        using var response = await gateway.Client.PostAsync("v1/messages", TestGateway.Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);

        var answer = new StringBuilder();
        if (stream)
        {
            foreach (var line in text.Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)))
            {
                using var data = JsonDocument.Parse(line["data: ".Length..]);
                if (data.RootElement.GetProperty("type").GetString() == "content_block_delta"
                    && data.RootElement.GetProperty("delta").TryGetProperty("text", out var piece))
                {
                    answer.Append(piece.GetString());
                }
            }
        }
        else
        {
            using var message = JsonDocument.Parse(text);
            foreach (var block in message.RootElement.GetProperty("content").EnumerateArray().Where(b => b.GetProperty("type").GetString() == "text"))
            {
                answer.Append(block.GetProperty("text").GetString());
            }
        }

        using var parsed = JsonDocument.Parse(answer.ToString());
        using var schema = JsonDocument.Parse(Schema);
        Assert.Empty(SchemaValidator.Validate(parsed.RootElement, schema.RootElement));
    }

    [Theory]
    [InlineData("""{"type": "json_object"}""", "output_format.type")]
    [InlineData("""{"type": "json_schema"}""", "output_format.schema")]
    [InlineData("\"json\"", "output_format")]
    public async Task A_malformed_output_format_is_an_Anthropic_400_naming_it(string format, string named)
    {
        await using var gateway = await TestGateway.StartAsync();
        using var response = await gateway.Client.PostAsync("v1/messages", TestGateway.Json(
            $$"""{"model": "sim-fast", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "output_format": {{format}}}"""));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, text);
        using var error = JsonDocument.Parse(text);
        Assert.Equal("error", error.RootElement.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains(named, error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}
