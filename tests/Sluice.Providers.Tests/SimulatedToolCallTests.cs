using System.Text;
using System.Text.Json;
using Sluice.Protocol;
using Sluice.Protocol.Events;
using static Sluice.Providers.Tests.SimTestKit;

namespace Sluice.Providers.Tests;

public sealed class SimulatedToolCallTests
{
    private const string WeatherTool = """
        {"type":"function","function":{"name":"get_weather","description":"Current weather for a place",
          "parameters":{"type":"object","properties":{
            "location":{"type":"string","description":"City name"},
            "unit":{"type":"string","enum":["celsius","fahrenheit","kelvin"]}
          },"required":["location"]}}}
        """;

    private const string StockTool = """
        {"type":"function","function":{"name":"lookup_stock_price","parameters":{"type":"object","properties":{
          "ticker":{"type":"string"},"days":{"type":"integer"},"ratio":{"type":"number"},"live":{"type":"boolean"},
          "tags":{"type":"array","items":{"type":"string"}},"options":{"type":"object"},"mode":{"enum":[1,2,3]}}}}}
        """;

    [Theory]
    [InlineData(1L)]
    [InlineData(2L)]
    [InlineData(3L)]
    [InlineData(4L)]
    [InlineData(5L)]
    [InlineData(6L)]
    public async Task Prompt_mentioning_the_tool_calls_it_with_schema_valid_arguments(long seed)
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"What is the weather like in Lisbon this weekend?"}],
             "tools":[{{WeatherTool}}],"seed":{{seed}}}
            """);

        var events = await CollectAsync(Backend(), request);

        var toolEvents = events.OfType<ToolCallDeltaEvent>().ToList();
        Assert.Empty(events.OfType<TextDeltaEvent>());
        Assert.True(toolEvents.Count >= 3, $"only {toolEvents.Count} fragments");

        var first = toolEvents[0];
        Assert.StartsWith("call_", first.Id, StringComparison.Ordinal);
        Assert.Equal(29, first.Id!.Length);
        Assert.Equal("get_weather", first.Name);
        Assert.Equal(string.Empty, first.ArgumentsFragment);
        Assert.All(toolEvents, e => Assert.Equal(0, e.ToolIndex));
        Assert.All(toolEvents.Skip(1), e =>
        {
            Assert.Null(e.Id);
            Assert.Null(e.Name);
            Assert.False(string.IsNullOrEmpty(e.ArgumentsFragment));
        });

        var arguments = string.Concat(toolEvents.Select(e => e.ArgumentsFragment));
        using var document = JsonDocument.Parse(arguments);
        var root = document.RootElement;
        Assert.Equal(["location", "unit"], root.EnumerateObject().Select(p => p.Name));
        Assert.Equal("Lisbon", root.GetProperty("location").GetString());
        Assert.Contains(root.GetProperty("unit").GetString(), new[] { "celsius", "fahrenheit", "kelvin" });

        Assert.Equal(FinishReasons.ToolCalls, Finish(events));
        Assert.IsType<UsageEvent>(events[^1]);
        Assert.IsType<FinishEvent>(events[^2]);
        Assert.Equal(toolEvents.Count, Usage(events).CompletionTokens);
        Assert.Equal(TokenCounter.CountPrompt(request.Messages), Usage(events).PromptTokens);
    }

    [Fact]
    public async Task Tool_call_is_deterministic_for_a_seed()
    {
        var json = $$"""{"messages":[{"role":"user","content":"weather in Oslo?"}],"tools":[{{WeatherTool}}],"seed":99}""";

        var a = (await CollectAsync(Backend(), Parse(json))).OfType<ToolCallDeltaEvent>().Select(e => (e.Id, e.Name, e.ArgumentsFragment)).ToList();
        var b = (await CollectAsync(Backend(), Parse(json))).OfType<ToolCallDeltaEvent>().Select(e => (e.Id, e.Name, e.ArgumentsFragment)).ToList();

        Assert.Equal(a, b);
    }

    [Fact]
    public async Task Arguments_follow_each_schema_type()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"Check the stock price of Contoso"}],"tools":[{{WeatherTool}},{{StockTool}}],"seed":3}
            """);

        var events = await CollectAsync(Backend(), request);

        var calls = events.OfType<ToolCallDeltaEvent>().ToList();
        Assert.Equal("lookup_stock_price", calls[0].Name);
        using var document = JsonDocument.Parse(string.Concat(calls.Select(c => c.ArgumentsFragment)));
        var root = document.RootElement;
        Assert.Equal(JsonValueKind.String, root.GetProperty("ticker").ValueKind);
        Assert.True(root.GetProperty("days").TryGetInt32(out _));
        Assert.Equal(JsonValueKind.Number, root.GetProperty("ratio").ValueKind);
        Assert.Equal(JsonValueKind.True, root.GetProperty("live").ValueKind);
        Assert.Equal(JsonValueKind.String, Assert.Single(root.GetProperty("tags").EnumerateArray()).ValueKind);
        Assert.Equal(JsonValueKind.Object, root.GetProperty("options").ValueKind);
        Assert.Contains(root.GetProperty("mode").GetInt32(), new[] { 1, 2, 3 });
    }

    [Fact]
    public async Task Tool_without_parameters_gets_empty_object()
    {
        var request = Parse("""
            {"messages":[{"role":"user","content":"please refresh_cache now"}],
             "tools":[{"type":"function","function":{"name":"refresh_cache"}}],"seed":1}
            """);

        var calls = (await CollectAsync(Backend(), request)).OfType<ToolCallDeltaEvent>().ToList();

        Assert.Equal("refresh_cache", calls[0].Name);
        Assert.Equal("{}", string.Concat(calls.Select(c => c.ArgumentsFragment)));
    }

    [Fact]
    public async Task Non_ascii_place_names_stay_valid_json()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"weather for Zürich and Kraków"}],"tools":[{{WeatherTool}}],"seed":2}
            """);

        var calls = (await CollectAsync(Backend(), request)).OfType<ToolCallDeltaEvent>().ToList();

        using var document = JsonDocument.Parse(string.Concat(calls.Select(c => c.ArgumentsFragment)));
        Assert.Equal("Zürich", document.RootElement.GetProperty("location").GetString());
    }

    [Fact]
    public async Task Prompt_not_mentioning_any_tool_gets_text_with_auto()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"Write a haiku about autumn"}],"tools":[{{WeatherTool}}],"tool_choice":"auto","max_tokens":20,"seed":1}
            """);

        var events = await CollectAsync(Backend(), request);

        Assert.Empty(events.OfType<ToolCallDeltaEvent>());
        Assert.Equal(20, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, Finish(events));
    }

    [Fact]
    public async Task Tool_choice_none_answers_with_text_even_when_the_tool_is_mentioned()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"What is the weather in Rome?"}],"tools":[{{WeatherTool}}],"tool_choice":"none","max_tokens":15,"seed":1}
            """);

        var events = await CollectAsync(Backend(), request);

        Assert.Empty(events.OfType<ToolCallDeltaEvent>());
        Assert.Equal(15, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, Finish(events));
    }

    [Fact]
    public async Task Tool_choice_required_calls_a_tool_even_when_none_is_mentioned()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"Write a haiku about autumn"}],"tools":[{{WeatherTool}},{{StockTool}}],"tool_choice":"required","seed":1}
            """);

        var events = await CollectAsync(Backend(), request);

        Assert.Empty(events.OfType<TextDeltaEvent>());
        Assert.Equal("get_weather", events.OfType<ToolCallDeltaEvent>().First().Name);
        Assert.Equal(FinishReasons.ToolCalls, Finish(events));
    }

    [Fact]
    public async Task Forced_function_name_is_called_even_when_another_is_mentioned()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"What is the weather in Rome?"}],"tools":[{{WeatherTool}},{{StockTool}}],
             "tool_choice":{"type":"function","function":{"name":"lookup_stock_price"} },"seed":1}
            """);

        var events = await CollectAsync(Backend(), request);

        Assert.Equal("lookup_stock_price", events.OfType<ToolCallDeltaEvent>().First().Name);
        Assert.Equal(FinishReasons.ToolCalls, Finish(events));
    }

    [Fact]
    public async Task Forced_unknown_function_is_a_400_naming_tool_choice()
    {
        var request = Parse($$"""
            {"messages":[{"role":"user","content":"Hi"}],"tools":[{{WeatherTool}}],
             "tool_choice":{"type":"function","function":{"name":"launch_rocket"} } }
            """);

        var (events, error) = await CollectUntilErrorAsync(Backend(), request);

        var ex = Assert.IsType<ChatException>(error);
        Assert.Empty(events);
        Assert.Equal(400, ex.StatusCode);
        Assert.Equal("tool_choice", ex.Error.Param);
        Assert.Contains("launch_rocket", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task After_a_tool_result_the_answer_is_text_about_it()
    {
        var request = Parse($$"""
            {"messages":[
              {"role":"user","content":"What is the weather in Lisbon?"},
              {"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Lisbon\"}"} }]},
              {"role":"tool","tool_call_id":"call_1","content":"Sunshine, twentythree degrees"}
            ],"tools":[{{WeatherTool}}],"tool_choice":"required","max_tokens":100,"seed":4}
            """);

        var events = await CollectAsync(Backend(), request);

        Assert.Empty(events.OfType<ToolCallDeltaEvent>());
        Assert.Equal(100, Deltas(events).Count);
        Assert.Equal(FinishReasons.Length, Finish(events));
        var text = Text(events);
        // The answer talks about what the tool returned.
        Assert.Contains(["sunshine", "twentythree", "degrees"], w => text.Contains(w, StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Tool_call_fragments_reassemble_through_the_accumulator()
    {
        var request = Parse($$"""{"messages":[{"role":"user","content":"weather in Paris?"}],"tools":[{{WeatherTool}}],"seed":8}""");
        var accumulator = new ChatCompletionAccumulator();

        foreach (var e in await CollectAsync(Backend(), request))
        {
            accumulator.Add(e);
        }

        var choice = Assert.Single(accumulator.Choices);
        var call = Assert.Single(choice.ToolCalls);
        Assert.Null(choice.Content);
        Assert.Equal("get_weather", call.Name);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);
        using var document = JsonDocument.Parse(Encoding.UTF8.GetBytes(call.Arguments));
        Assert.Equal("Paris", document.RootElement.GetProperty("location").GetString());
        Assert.Equal(FinishReasons.ToolCalls, choice.FinishReason);
    }
}
