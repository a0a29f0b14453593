using System.ComponentModel;
using System.Text.Json;
using Microsoft.Extensions.AI;
using static Sluice.Client.Tests.Streams;

namespace Sluice.Client.Tests;

/// <summary>SluiceChatClient against a real gateway: text, usage, identity, tool calls, options.</summary>
[Collection(GatewayCollection.Name)]
public sealed class StreamingTests(GatewayFixture gateway)
{
    private const string Prompt = "Tell me about rivers and lakes";

    [Fact]
    public async Task Streams_the_same_text_as_a_direct_request_in_several_updates_with_usage_and_identity()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, maxTokens: 30, seed: 7);
        using var client = gateway.Client();

        var updates = await CollectAsync(client.GetStreamingResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 30, Seed = 7 }));

        Assert.Equal(expected, Text(updates));
        Assert.Equal(30, updates.Count(u => u.Text.Length > 0));
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.All(updates, u => Assert.Equal("sim-fast", u.ModelId));
        var responseId = updates[0].ResponseId;
        Assert.StartsWith("chatcmpl-", responseId, StringComparison.Ordinal);
        Assert.All(updates, u => Assert.Equal(responseId, u.ResponseId));
        Assert.Equal(ChatFinishReason.Length, Assert.Single(updates, u => u.FinishReason is not null).FinishReason);

        var usage = Assert.Single(updates.SelectMany(u => u.Contents).OfType<UsageContent>()).Details;
        Assert.Equal(30, usage.OutputTokenCount);
        Assert.True(usage.InputTokenCount > 0);
        Assert.Equal(usage.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);

        // Usage comes last, after the finish reason.
        Assert.IsType<UsageContent>(Assert.Single(updates[^1].Contents));
    }

    [Fact]
    public async Task GetResponseAsync_assembles_text_finish_reason_usage_and_model()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, maxTokens: 12, seed: 3);
        using var client = gateway.Client();

        var response = await client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 12, Seed = 3 });

        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal("sim-fast", response.ModelId);
        Assert.Equal(12, response.Usage?.OutputTokenCount);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
    }

    [Fact]
    public async Task Max_output_tokens_limit_reports_the_server_finish_reason_and_stop_sequences_cut_the_text()
    {
        var full = await gateway.CompleteAsync("sim-fast", Prompt, maxTokens: 40, seed: 11);
        var stop = full.Split(' ')[4];
        using var client = gateway.Client();

        var response = await client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 40, Seed = 11, StopSequences = [stop] });

        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], response.Text);
    }

    [Fact]
    public async Task Options_are_sent_as_OpenAI_fields_and_additional_properties_as_extra_fields()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        var options = new ChatOptions
        {
            ModelId = "sim-realistic",
            Instructions = "Be brief",
            Temperature = 0.7f,
            TopP = 0.9f,
            MaxOutputTokens = 5,
            Seed = 42,
            StopSequences = ["zzz"],
            AdditionalProperties = new() { ["user"] = "alice", ["metadata"] = new Dictionary<string, string> { ["trace"] = "t1" } },
        };

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.System, "Sys"), new ChatMessage(ChatRole.User, "Hi there")], options);

        Assert.Equal("sim-realistic", response.ModelId);
        var payload = trace.LastPayload();
        Assert.Equal("sim-realistic", payload.GetProperty("model").GetString());
        Assert.Equal(0.7, payload.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, payload.GetProperty("top_p").GetDouble());
        Assert.Equal(5, payload.GetProperty("max_tokens").GetInt32());
        Assert.Equal(42, payload.GetProperty("seed").GetInt64());
        Assert.Equal("zzz", payload.GetProperty("stop")[0].GetString());
        Assert.True(payload.GetProperty("stream").GetBoolean());
        Assert.True(payload.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.Equal("alice", payload.GetProperty("user").GetString());
        Assert.Equal("t1", payload.GetProperty("metadata").GetProperty("trace").GetString());
        var roles = payload.GetProperty("messages").EnumerateArray().Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString())).ToList();
        Assert.Equal([("system", "Be brief"), ("system", "Sys"), ("user", "Hi there")], roles);
    }

    [Fact]
    public async Task Tool_calls_arrive_assembled_with_parsed_arguments_and_the_result_round_trips()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        var weather = AIFunctionFactory.Create(
            ([Description("The city")] string city, [Description("Days ahead")] int days) => $"Sunny in {city} for {days} days",
            "get_weather",
            "Gets the weather forecast for a city");
        var options = new ChatOptions { Tools = [weather], Seed = 5 };
        List<ChatMessage> messages = [new(ChatRole.User, "What is the weather in Paris?")];

        var updates = await CollectAsync(client.GetStreamingResponseAsync(messages, options));

        // Fragments are not surfaced: exactly one update carries the whole call, together with the finish reason.
        var callUpdate = Assert.Single(updates, u => u.Contents.OfType<FunctionCallContent>().Any());
        Assert.Equal(ChatFinishReason.ToolCalls, callUpdate.FinishReason);
        var call = Assert.Single(callUpdate.Contents.OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.StartsWith("call_", call.CallId, StringComparison.Ordinal);
        Assert.Null(call.Exception);
        Assert.Equal(JsonValueKind.String, Assert.IsType<JsonElement>(call.Arguments!["city"]).ValueKind);
        Assert.Equal(JsonValueKind.Number, Assert.IsType<JsonElement>(call.Arguments!["days"]).ValueKind);
        Assert.Equal(string.Empty, Text(updates));

        var sentTools = trace.LastPayload().GetProperty("tools");
        Assert.Equal("get_weather", sentTools[0].GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("object", sentTools[0].GetProperty("function").GetProperty("parameters").GetProperty("type").GetString());

        // Run the tool and send its result back: the model answers in text about it.
        var result = await weather.InvokeAsync(new AIFunctionArguments(call.Arguments));
        messages.AddMessages(updates);
        messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, result)]));
        var answer = await client.GetResponseAsync(messages, options);

        Assert.Equal(ChatFinishReason.Stop, answer.FinishReason);
        Assert.False(string.IsNullOrWhiteSpace(answer.Text));
        var sent = trace.LastPayload().GetProperty("messages");
        Assert.Equal("assistant", sent[1].GetProperty("role").GetString());
        Assert.Equal(call.CallId, sent[1].GetProperty("tool_calls")[0].GetProperty("id").GetString());
        Assert.Equal("tool", sent[2].GetProperty("role").GetString());
        Assert.Equal(call.CallId, sent[2].GetProperty("tool_call_id").GetString());
        Assert.StartsWith("Sunny in ", sent[2].GetProperty("content").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tool_mode_is_sent_as_tool_choice_and_none_suppresses_the_call()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        var lookup = AIFunctionFactory.CreateDeclaration("lookup_order", "Looks up an order", JsonDocument.Parse("""{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}""").RootElement);

        var forced = await client.GetResponseAsync(User("Hello"), new ChatOptions { Tools = [lookup], ToolMode = ChatToolMode.RequireSpecific("lookup_order") });
        var forcedChoice = trace.LastPayload().GetProperty("tool_choice");
        var none = await client.GetResponseAsync(User("Please lookup order 12"), new ChatOptions { Tools = [lookup], ToolMode = ChatToolMode.None, MaxOutputTokens = 5 });

        Assert.Equal("lookup_order", Assert.Single(forced.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>()).Name);
        Assert.Equal("lookup_order", forcedChoice.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("none", trace.LastPayload().GetProperty("tool_choice").GetString());
        Assert.Empty(none.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.False(string.IsNullOrWhiteSpace(none.Text));
    }

    [Fact]
    public async Task GetService_returns_metadata_and_the_client_and_models_are_listed()
    {
        using var client = gateway.Client();

        var metadata = Assert.IsType<ChatClientMetadata>(client.GetService(typeof(ChatClientMetadata)));
        var models = await client.ListModelsAsync();

        Assert.Equal("sluice", metadata.ProviderName);
        Assert.Equal("sim-fast", metadata.DefaultModelId);
        Assert.Equal(gateway.Url.GetLeftPart(UriPartial.Authority) + "/", metadata.ProviderUri!.ToString());
        Assert.Same(client, client.GetService(typeof(SluiceChatClient)));
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Null(client.GetService(typeof(ChatClientMetadata), "key"));
        Assert.Null(client.GetService(typeof(string)));
        Assert.Contains(models, m => m.Id == "sim-fast" && m.OwnedBy is not null && m.ContextWindow > 0);
        Assert.Contains(models, m => m.Id == GatewayFixture.PacedModel);
    }

    [Fact]
    public async Task Endpoint_may_be_given_with_v1_or_as_the_full_chat_url()
    {
        var expected = await gateway.CompleteAsync("sim-fast", Prompt, maxTokens: 4, seed: 1);
        var root = gateway.Url.GetLeftPart(UriPartial.Authority);

        foreach (var endpoint in new[] { root, root + "/v1", root + "/v1/", root + "/v1/chat/completions" })
        {
            using var client = new SluiceChatClient(new Uri(endpoint), defaultModel: "sim-fast");
            var response = await client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = 4, Seed = 1 });
            Assert.Equal(expected, response.Text);
            Assert.Equal(new Uri(root + "/v1/chat/completions"), client.ChatCompletionsUrl);
        }
    }

    [Fact]
    public async Task An_injected_HttpClient_is_used_and_not_disposed()
    {
        using var http = new HttpClient(SluiceChatClient.CreateHttpHandler(new SluiceClientOptions())) { Timeout = Timeout.InfiniteTimeSpan };
        using (var client = new SluiceChatClient(new SluiceClientOptions { Endpoint = gateway.Url }, http))
        {
            Assert.False(string.IsNullOrEmpty((await client.GetResponseAsync(User("Hi"), new ChatOptions { MaxOutputTokens = 3 })).Text));
        }

        using var health = await http.GetAsync(new Uri(gateway.Url, "/health"));
        Assert.True(health.IsSuccessStatusCode);
    }

    [Fact]
    public async Task Media_content_is_refused_with_a_clear_message_before_anything_is_sent()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        var message = new ChatMessage(ChatRole.User, [new TextContent("Look"), new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([message]));

        Assert.Contains("DataContent", ex.Message, StringComparison.Ordinal);
        Assert.Empty(trace.Requests);
    }
}
