using System.Net;
using System.Text;
using System.Text.Json;

namespace Sluice.Gateway.Tests;

public sealed class ValidationTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync(o => o.Limits.MaxRequestBodyBytes = 64 * 1024);

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    public static TheoryData<string, int, string?, string> BadRequests()
    {
        var longPrompt = new string('a', 5001);
        return new()
        {
            { "{not json", 400, null, "invalid_json" },
            { "", 400, null, "invalid_json" },
            { "[1,2]", 400, null, "invalid_type" },
            { """{"model":"sim-fast"}""", 400, "messages", "missing_required_parameter" },
            { """{"model":"sim-fast","messages":"hi"}""", 400, "messages", "invalid_type" },
            { """{"model":"sim-fast","messages":[]}""", 400, "messages", "empty_array" },
            { """{"model":"sim-fast","messages":[{"role":"wizard","content":"hi"}]}""", 400, "messages[0].role", "invalid_value" },
            { """{"model":"sim-fast","messages":[{"content":"hi"}]}""", 400, "messages[0].role", "missing_required_parameter" },
            { """{"model":"sim-fast","messages":[{"role":"user","content":"hi"},{"role":"user","content":5}]}""", 400, "messages[1].content", "invalid_type" },
            { """{"model":"sim-fast","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "messages[0].content[0].image_url.url", "invalid_value" },
            { """{"model":"sim-fast","prompt":""}""", 400, "prompt", "empty_value" },
            { """{"model":"sim-fast","prompt":42}""", 400, "prompt", "invalid_type" },
            { $$"""{"model":"sim-fast","prompt":"{{longPrompt}}"}""", 400, "prompt", "string_above_max_length" },
            { """{"model":"sim-fast","prompt":"hi","messages":[{"role":"user","content":"hi"}]}""", 400, "prompt", "invalid_value" },
            { """{"model":"no-such-model","prompt":"hi"}""", 404, "model", "model_not_found" },
            { """{"model":42,"prompt":"hi"}""", 400, "model", "invalid_type" },
            { """{"model":"sim-fast","prompt":"hi","temperature":2.5}""", 400, "temperature", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","temperature":"hot"}""", 400, "temperature", "invalid_type" },
            { """{"model":"sim-fast","prompt":"hi","top_p":1.5}""", 400, "top_p", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","max_tokens":0}""", 400, "max_tokens", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","max_tokens":"many"}""", 400, "max_tokens", "invalid_type" },
            { """{"model":"sim-fast","prompt":"hi","max_completion_tokens":-5}""", 400, "max_completion_tokens", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","max_tokens":100000}""", 400, "max_tokens", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","n":17}""", 400, "n", "unsupported_value" },
            { """{"model":"sim-fast","prompt":"hi","stream":"yes"}""", 400, "stream", "invalid_type" },
            { """{"model":"sim-fast","prompt":"hi","stream_options":{"include_usage":1}}""", 400, "stream_options.include_usage", "invalid_type" },
            { """{"model":"sim-fast","prompt":"hi","stop":["a","b","c","d","e"]}""", 400, "stop", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","seed":1.5}""", 400, "seed", "invalid_type" },
            { """{"model":"sim-fast","prompt":"hi","tools":[{"type":"function","function":{}}]}""", 400, "tools[0].function.name", "missing_required_parameter" },
            { """{"model":"sim-fast","prompt":"hi","tool_choice":"sometimes"}""", 400, "tool_choice", "invalid_value" },
            { """{"model":"sim-fast","prompt":"hi","metadata":{"sim_fail_status":"teapot"}}""", 400, "metadata.sim_fail_status", "invalid_value" },
        };
    }

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_input_gets_a_4xx_naming_the_parameter(string body, int status, string? param, string code)
    {
        foreach (var stream in new[] { false, true })
        {
            var payload = stream && body.StartsWith('{') && body.EndsWith('}') && body.Contains("\"model\"", StringComparison.Ordinal)
                ? body[..^1] + (body.Contains("\"stream\"", StringComparison.Ordinal) ? "}" : ",\"stream\":true}")
                : body;
            using var response = await _gateway.PostChatAsync(payload);
            Assert.Equal(status, (int)response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.Equal(code, error.GetProperty("code").GetString());
            Assert.Equal(status == 404 ? "invalid_request_error" : "invalid_request_error", error.GetProperty("type").GetString());
            Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        }
    }

    [Fact]
    public async Task Body_over_the_limit_gets_413_json()
    {
        var huge = """{"model":"sim-fast","messages":[{"role":"user","content":"X"}]}""".Replace("X", new string('x', 70 * 1024), StringComparison.Ordinal);
        using var response = await _gateway.PostChatAsync(huge);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Chunked_body_over_the_limit_gets_413_json()
    {
        var huge = """{"model":"sim-fast","messages":[{"role":"user","content":"X"}]}""".Replace("X", new string('x', 70 * 1024), StringComparison.Ordinal);
        using var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(huge)));
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Accepts_text_parts_every_role_and_form_encoded_content_type()
    {
        const string body = """
            {"model":"sim-fast","max_tokens":5,"messages":[
              {"role":"system","content":"Be kind."},
              {"role":"developer","content":[{"type":"text","text":"Be short."}]},
              {"role":"user","content":[{"type":"text","text":"Weather "},{"type":"text","text":"please"}]},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"Sunny and warm"}],
             "temperature":0.2,"top_p":0.9,"stop":"zzz","seed":1,"user":"u-1","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{}}}}],"tool_choice":"auto"}
            """;
        using var content = new StringContent(body, Encoding.UTF8, "application/x-www-form-urlencoded");
        using var response = await _gateway.Client.PostAsync("v1/chat/completions", content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(5, completion.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.False(string.IsNullOrEmpty(completion.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()));
    }
}
