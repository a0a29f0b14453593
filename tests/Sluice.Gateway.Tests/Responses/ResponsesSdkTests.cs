using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Responses;
using Sluice.Testing;

#pragma warning disable OPENAI001 // The Responses client is marked experimental in the SDK.

namespace Sluice.Gateway.Tests.Responses;

/// <summary>The official OpenAI .NET SDK's Responses client against Sluice's <c>/v1/responses</c>, on the simulated models.</summary>
public sealed class ResponsesSdkTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync();

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    private ResponsesClient Client() => new(
        new ApiKeyCredential("sk-test-unused"),
        new ResponsesClientOptions { Endpoint = new Uri(_gateway.BaseAddress, "v1"), NetworkTimeout = TimeSpan.FromSeconds(30) });

    [Fact]
    public async Task Streams_a_response_in_the_documented_event_grammar_and_the_sdk_reads_it()
    {
        using var raw = await _gateway.Client.PostAsync("v1/responses", TestGateway.Json(
            """{"model": "sim-fast", "input": "Describe the migration of arctic terns", "stream": true, "max_output_tokens": 30}"""));
        Assert.Equal(HttpStatusCode.OK, raw.StatusCode);
        Assert.Equal("text/event-stream", raw.Content.Headers.ContentType!.MediaType);
        var events = ResponsesGrammar.Check(await raw.Content.ReadAsStringAsync());
        Assert.Equal("response.incomplete", events[^1].Type);
        Assert.Equal("max_output_tokens", events[^1].Data.GetProperty("response").GetProperty("incomplete_details").GetProperty("reason").GetString());

        var text = new StringBuilder();
        ResponseResult? completed = null;
        var types = new List<string>();
        await foreach (var update in await Client().CreateResponseStreamingAsync(new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("Describe the migration of arctic terns")]) { StreamingEnabled = true }))
        {
            types.Add(update.GetType().Name);
            if (update is StreamingResponseOutputTextDeltaUpdate delta)
            {
                text.Append(delta.Delta);
            }
            else if (update is StreamingResponseCompletedUpdate done)
            {
                completed = done.Response;
            }
        }

        Assert.NotNull(completed);
        Assert.Equal(ResponseStatus.Completed, completed.Status);
        Assert.Equal(text.ToString(), completed.GetOutputText());
        Assert.Contains("terns", text.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(completed.Usage.InputTokenCount + completed.Usage.OutputTokenCount, completed.Usage.TotalTokenCount);
        Assert.Equal(nameof(StreamingResponseCreatedUpdate), types[0]);
        Assert.Equal(nameof(StreamingResponseInProgressUpdate), types[1]);
    }

    [Fact]
    public async Task A_stored_response_can_be_read_continued_and_deleted()
    {
        var client = Client();
        ResponseResult first = await client.CreateResponseAsync(new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("Tell me about lighthouses")])
        {
            Instructions = "Be brief.",
            MaxOutputTokenCount = 25,
        });
        Assert.StartsWith("resp_", first.Id, StringComparison.Ordinal);
        Assert.Equal(ResponseStatus.Incomplete, first.Status);
        Assert.Equal(25, first.Usage.OutputTokenCount);

        ResponseResult read = await client.GetResponseAsync(first.Id);
        Assert.Equal(first.Id, read.Id);
        Assert.Equal(first.GetOutputText(), read.GetOutputText());

        // The continuation sees the earlier turn: its prompt is longer by the first question and answer.
        ResponseResult second = await client.CreateResponseAsync(new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("And about foghorns?")])
        {
            PreviousResponseId = first.Id,
            MaxOutputTokenCount = 10,
        });
        Assert.Equal(first.Id, second.PreviousResponseId);
        Assert.True(second.Usage.InputTokenCount > first.Usage.InputTokenCount + first.Usage.OutputTokenCount - 10, $"{second.Usage.InputTokenCount} vs {first.Usage.InputTokenCount}+{first.Usage.OutputTokenCount}");

        ResponseDeletionResult deleted = await client.DeleteResponseAsync(first.Id);
        Assert.True(deleted.Deleted);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => client.GetResponseAsync(first.Id));
        Assert.Equal(404, missing.Status);
        var gone = await Assert.ThrowsAsync<ClientResultException>(() => client.CreateResponseAsync(new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("More?")]) { PreviousResponseId = first.Id }));
        Assert.Equal(404, gone.Status);
    }

    [Fact]
    public async Task The_sdk_pages_through_a_continued_response_s_input_items_newest_first()
    {
        var client = Client();
        ResponseResult first = await client.CreateResponseAsync(new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("Tell me about lighthouses")]) { MaxOutputTokenCount = 5 });
        ResponseResult second = await client.CreateResponseAsync(new CreateResponseOptions(
            "sim-fast", [ResponseItem.CreateUserMessageItem("And foghorns?"), ResponseItem.CreateUserMessageItem("Briefly.")])
        {
            PreviousResponseId = first.Id,
            MaxOutputTokenCount = 5,
        });

        // The SDK follows has_more/last_id page by page (two items a page): the whole context, newest first, without
        // the second response's own output.
        var items = new List<ResponseItem>();
        await foreach (var item in client.GetResponseInputItemsAsync(new ResponseItemCollectionOptions(second.Id) { PageSizeLimit = 2 }))
        {
            items.Add(item);
        }

        var messages = items.Cast<MessageResponseItem>().ToList();
        Assert.Equal(["Briefly.", "And foghorns?", first.GetOutputText(), "Tell me about lighthouses"], messages.Select(m => m.Content[0].Text));
        Assert.Equal([MessageRole.User, MessageRole.User, MessageRole.Assistant, MessageRole.User], messages.Select(m => m.Role));
        Assert.Equal(4, items.Select(i => i.Id).Distinct().Count());
        Assert.All(items, i => Assert.False(string.IsNullOrEmpty(i.Id)));

        var ascending = new List<string>();
        await foreach (var item in client.GetResponseInputItemsAsync(new ResponseItemCollectionOptions(second.Id) { Order = ResponseItemCollectionOrder.Ascending, PageSizeLimit = 3 }))
        {
            ascending.Add(item.Id);
        }

        Assert.Equal(items.Select(i => i.Id).Reverse(), ascending);
    }

    [Fact]
    public async Task A_function_call_round_trip_with_function_call_output()
    {
        var client = Client();
        var tool = ResponseTool.CreateFunctionTool(
            "get_weather",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}"""),
            strictModeEnabled: true,
            functionDescription: "Current weather for a city");
        var options = new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("What's the weather in Oslo?")]) { Tools = { tool } };
        ResponseResult call = await client.CreateResponseAsync(options);
        var functionCall = Assert.IsType<FunctionCallResponseItem>(Assert.Single(call.OutputItems));
        Assert.Equal("get_weather", functionCall.FunctionName);
        using (var arguments = JsonDocument.Parse(functionCall.FunctionArguments))
        {
            Assert.Equal("Oslo", arguments.RootElement.GetProperty("city").GetString());
        }

        var followUp = new CreateResponseOptions("sim-fast", [ResponseItem.CreateFunctionCallOutputItem(functionCall.CallId, """{"temperature": 4, "sky": "overcast"}""")])
        {
            PreviousResponseId = call.Id,
            Tools = { tool },
            MaxOutputTokenCount = 40,
            StreamingEnabled = true,
        };
        var text = new StringBuilder();
        await foreach (var update in await client.CreateResponseStreamingAsync(followUp))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta)
            {
                text.Append(delta.Delta);
            }
        }

        // After the tool's result the model answers in text about it.
        Assert.Contains("overcast", text.ToString(), StringComparison.OrdinalIgnoreCase);
    }

    private sealed record WeatherReport(string City, string Unit, int Days, List<string> Conditions);

    [Fact]
    public async Task Structured_outputs_parse_into_a_dotnet_type_from_chat_completions_and_responses()
    {
        const string schema = """
            {"type":"object","properties":{"City":{"type":"string"},"Unit":{"type":"string","enum":["celsius","fahrenheit"]},
             "Days":{"type":"integer","minimum":1,"maximum":7},"Conditions":{"type":"array","items":{"type":"string"},"minItems":1}},
             "required":["City","Unit","Days","Conditions"],"additionalProperties":false}
            """;
        var chat = new ChatClient("sim-fast", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_gateway.BaseAddress, "v1") });
        ChatCompletion completion = await chat.CompleteChatAsync(
            [new UserChatMessage("Weather outlook for Bergen please")],
            new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("weather_report", BinaryData.FromString(schema), jsonSchemaIsStrict: true) });
        var report = JsonSerializer.Deserialize<WeatherReport>(completion.Content[0].Text)!;
        Assert.True(report.Unit is "celsius" or "fahrenheit", report.Unit);
        Assert.InRange(report.Days, 1, 7);
        Assert.NotEmpty(report.Conditions);

        ResponseResult response = await Client().CreateResponseAsync(new CreateResponseOptions("sim-fast", [ResponseItem.CreateUserMessageItem("Weather outlook for Bergen please")])
        {
            TextOptions = new ResponseTextOptions { TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("weather_report", BinaryData.FromString(schema), jsonSchemaIsStrict: true) },
        });
        var fromResponses = JsonSerializer.Deserialize<WeatherReport>(response.GetOutputText())!;
        Assert.InRange(fromResponses.Days, 1, 7);
        using var parsedSchema = JsonDocument.Parse(schema);
        using var answer = JsonDocument.Parse(response.GetOutputText());
        Assert.Empty(SchemaValidator.Validate(answer.RootElement, parsedSchema.RootElement));
    }

    [Theory]
    [InlineData("""{"model":"sim-fast","input":[{"type":"input_image","image_url":"x"}]}""", "input[0].type")]
    [InlineData("""{"model":"sim-fast","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}""", "input[0].content[0]")]
    [InlineData("""{"model":"sim-fast","input":[{"type":"function_call_output","output":"x"}]}""", "input[0].call_id")]
    [InlineData("""{"model":"sim-fast","input":"Hi","tools":[{"type":"web_search"}]}""", "tools[0].type")]
    [InlineData("""{"model":"sim-fast","input":"Hi","temperature":3}""", "temperature")]
    [InlineData("""{"model":"sim-fast","input":"Hi","text":{"format":{"type":"json_schema","schema":{"type":"object"}}}}""", "text.format.name")]
    [InlineData("""{"model":"sim-fast"}""", "input")]
    [InlineData("""{"model":"sim-fast","input":"Hi","background":true}""", "background")]
    public async Task Bad_input_is_a_400_naming_the_parameter_in_openai_error_shape(string body, string param)
    {
        using var response = await _gateway.Client.PostAsync("v1/responses", TestGateway.Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var e = error.RootElement.GetProperty("error");
        Assert.Equal(param, e.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", e.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
    }

    [Theory]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=101", "limit")]
    [InlineData("limit=2x", "limit")]
    [InlineData("order=newest", "order")]
    [InlineData("after=msg_nothing_here", "after")]
    public async Task Bad_input_items_query_is_a_400_naming_the_parameter(string query, string param)
    {
        using var created = await _gateway.Client.PostAsync("v1/responses", TestGateway.Json("""{"model":"sim-fast","input":"Hi","max_output_tokens":2}"""));
        using var body = JsonDocument.Parse(await created.Content.ReadAsStringAsync());
        var id = body.RootElement.GetProperty("id").GetString();
        using var response = await _gateway.Client.GetAsync($"v1/responses/{id}/input_items?{query}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var e = error.RootElement.GetProperty("error");
        Assert.Equal(param, e.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", e.GetProperty("type").GetString());
    }

    [Fact]
    public async Task A_failure_after_the_first_event_is_error_then_response_failed()
    {
        using var raw = await _gateway.Client.PostAsync("v1/responses", TestGateway.Json(
            """{"model": "sim-fast", "input": "Tell me a story", "stream": true, "metadata": {"sim_fail_after_tokens": "4"}}"""));
        var events = ResponsesGrammar.Check(await raw.Content.ReadAsStringAsync());
        Assert.Equal(["error", "response.failed"], events.TakeLast(2).Select(e => e.Type));
        Assert.Equal("simulated_failure", events[^2].Data.GetProperty("code").GetString());
        Assert.Equal("failed", events[^1].Data.GetProperty("response").GetProperty("status").GetString());

        using var early = await _gateway.Client.PostAsync("v1/responses", TestGateway.Json(
            """{"model": "sim-fast", "input": "Hi", "stream": true, "metadata": {"sim_fail_status": "429"}}"""));
        Assert.Equal(HttpStatusCode.TooManyRequests, early.StatusCode);
        using var body = JsonDocument.Parse(await early.Content.ReadAsStringAsync());
        Assert.Equal("rate_limit_exceeded", body.RootElement.GetProperty("error").GetProperty("code").GetString());
    }
}
