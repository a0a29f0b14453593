using System.ClientModel;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

namespace Sluice.Gateway.Tests;

/// <summary>The official OpenAI .NET SDK — a real third-party client — against the gateway.</summary>
public sealed class OpenAISdkTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync();

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    private ChatClient Client(string model) => new(
        model,
        new ApiKeyCredential("sk-test-unused"),
        new OpenAIClientOptions { Endpoint = new Uri(_gateway.BaseAddress, "v1"), NetworkTimeout = TimeSpan.FromSeconds(30) });

    [Fact]
    public async Task Streams_text_and_usage()
    {
#pragma warning disable OPENAI001 // Seed is marked experimental in the SDK.
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 40, Seed = 11 };
#pragma warning restore OPENAI001
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        var ids = new HashSet<string>();
        var updates = 0;
        await foreach (var update in Client("sim-fast").CompleteChatStreamingAsync(
            [new SystemChatMessage("You are terse."), new UserChatMessage("Describe the migration of arctic terns")], options))
        {
            updates++;
            ids.Add(update.CompletionId);
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }

        Assert.True(updates > 40);
        Assert.Single(ids);
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(40, usage.OutputTokenCount);
        Assert.Equal(usage.InputTokenCount + 40, usage.TotalTokenCount);
        Assert.Contains("terns", text.ToString(), StringComparison.OrdinalIgnoreCase);

        ChatCompletion completion = await Client("sim-fast").CompleteChatAsync(
            [new SystemChatMessage("You are terse."), new UserChatMessage("Describe the migration of arctic terns")], options);
        Assert.Equal(text.ToString(), completion.Content[0].Text);
        Assert.Equal(40, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task Streams_a_tool_call_the_sdk_can_assemble()
    {
        var tool = ChatTool.CreateFunctionTool(
            "get_weather",
            "Current weather for a city",
            BinaryData.FromString("""{"type":"object","properties":{"location":{"type":"string"},"days":{"type":"integer"}},"required":["location"]}"""));
        var options = new ChatCompletionOptions { Tools = { tool } };
        string? id = null;
        string? name = null;
        var arguments = new StringBuilder();
        ChatFinishReason? finish = null;
        var fragments = 0;
        await foreach (var update in Client("sim-fast").CompleteChatStreamingAsync([new UserChatMessage("What's the weather in Oslo?")], options))
        {
            foreach (var call in update.ToolCallUpdates)
            {
                Assert.Equal(0, call.Index);
                id ??= call.ToolCallId;
                name ??= call.FunctionName;
                arguments.Append(call.FunctionArgumentsUpdate?.ToString());
                fragments++;
            }

            finish ??= update.FinishReason;
        }

        Assert.StartsWith("call_", id, StringComparison.Ordinal);
        Assert.Equal("get_weather", name);
        Assert.True(fragments > 2);
        var args = JsonDocument.Parse(arguments.ToString()).RootElement;
        Assert.Equal("Oslo", args.GetProperty("location").GetString());
        Assert.Equal(JsonValueKind.Number, args.GetProperty("days").ValueKind);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);

        // The SDK's own non-streaming path sees the same call.
        ChatCompletion completion = await Client("sim-fast").CompleteChatAsync([new UserChatMessage("What's the weather in Oslo?")], options);
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Equal("get_weather", Assert.Single(completion.ToolCalls).FunctionName);
    }

    [Fact]
    public async Task Unknown_model_raises_a_404_with_the_servers_message()
    {
        var ex = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var update in Client("missing-model").CompleteChatStreamingAsync([new UserChatMessage("hi")]))
            {
                Assert.Fail("no update expected");
            }
        });
        Assert.Equal(404, ex.Status);
        Assert.Contains("missing-model", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mid_stream_error_frame_never_looks_like_a_finished_answer()
    {
        // OpenAI .NET SDK 2.15 skips a `data: {"error":…}` frame instead of throwing (the Python SDK raises).
        // What it must never see is a finished answer: no finish reason, and only the tokens before the failure.
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 30 };
        options.Metadata["sim_fail_after_tokens"] = "5";
        await foreach (var update in Client("sim-fast").CompleteChatStreamingAsync([new UserChatMessage("Tell me a story")], options))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }

        Assert.Null(finish);
        Assert.Null(usage);
        Assert.Equal(5, Sluice.Protocol.TokenCounter.Count(text.ToString()));
    }
}
