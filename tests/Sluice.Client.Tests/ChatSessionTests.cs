using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Sluice.Client.Tests;

/// <summary>ChatSession over the SDK (real gateway) and over a scripted IChatClient.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ChatSessionTests(GatewayFixture gateway)
{
    [Fact]
    public async Task Over_the_SDK_streamed_replies_join_the_history_and_are_sent_with_the_next_turn()
    {
        var trace = new RecordingTrace();
        using var client = gateway.Client(o => o.Trace = trace);
        var session = new ChatSession(client, "Be brief", new ChatOptions { MaxOutputTokens = 8, Seed = 4 });

        var streamed = new List<string>();
        await foreach (var update in session.StreamAsync("Tell me about rivers"))
        {
            streamed.Add(update.Text);
        }

        var second = await session.SendAsync("And about lakes");

        var first = string.Concat(streamed);
        Assert.Equal(await gateway.CompleteAsync("sim-fast", "Tell me about rivers", 8, 4), first);
        var sent = trace.LastPayload().GetProperty("messages").EnumerateArray()
            .Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString())).ToList();
        Assert.Equal([("system", "Be brief"), ("user", "Tell me about rivers"), ("assistant", first), ("user", "And about lakes")], sent);
        Assert.Equal(4, session.History.Count);
        Assert.Equal(second.Text, session.History[^1].Text);
        Assert.Equal(ChatRole.Assistant, session.History[^1].Role);
        Assert.DoesNotContain(session.History.SelectMany(m => m.Contents), c => c is UsageContent);
    }

    [Fact]
    public async Task Over_the_SDK_a_failed_turn_before_any_text_is_forgotten_and_a_mid_stream_failure_keeps_the_partial_reply_marked()
    {
        using var client = gateway.Client(o => o.MaxRetries = 0);
        var session = new ChatSession(client);

        await Assert.ThrowsAsync<SluiceServerException>(() => session.SendAsync("First", GatewayFixture.Faults(("sim_fail_status", "500"))));
        Assert.Empty(session.History);

        await Assert.ThrowsAsync<SluiceStreamException>(() => session.SendAsync("Second", GatewayFixture.Faults(("sim_fail_after_tokens", "3"))));
        Assert.Equal(2, session.History.Count);
        Assert.Equal("Second", session.History[0].Text);
        var partial = session.History[1];
        Assert.Equal(ChatRole.Assistant, partial.Role);
        Assert.False(string.IsNullOrEmpty(partial.Text));
        Assert.Equal(true, partial.AdditionalProperties?[ChatSession.TruncatedProperty]);
    }

    [Fact]
    public async Task Over_a_test_client_trimming_drops_the_oldest_whole_turns_and_keeps_the_system_prompt()
    {
        var fake = new ScriptedChatClient();
        var session = new ChatSession(fake, "You are a careful assistant") { MaxContextTokens = 60 };

        for (var i = 1; i <= 6; i++)
        {
            await session.SendAsync($"Question number {i} about rivers and lakes");
        }

        var lastRequest = fake.Requests[^1];
        Assert.Equal(ChatRole.System, lastRequest[0].Role);
        Assert.Equal("You are a careful assistant", lastRequest[0].Text);
        Assert.Equal("Question number 6 about rivers and lakes", lastRequest[^1].Text);
        Assert.True(session.DroppedMessageCount > 0);
        Assert.Equal(0, session.DroppedMessageCount % 2);

        // Whole turns: the history still starts with a user message and alternates.
        Assert.Equal(ChatRole.User, lastRequest[1].Role);
        for (var i = 1; i < lastRequest.Count; i++)
        {
            Assert.Equal(i % 2 == 1 ? ChatRole.User : ChatRole.Assistant, lastRequest[i].Role);
        }

        var estimate = 3 + lastRequest.Sum(ChatSession.EstimateTokens);
        Assert.True(estimate <= 60, $"request of ~{estimate} tokens sent with a budget of 60");
        Assert.True(lastRequest.Count < 12);
    }

    [Fact]
    public async Task Over_a_test_client_the_reply_reserve_comes_from_max_output_tokens_and_the_newest_question_is_always_sent()
    {
        var fake = new ScriptedChatClient();
        var session = new ChatSession(fake) { MaxContextTokens = 40 };
        await session.SendAsync("A short first question");
        await session.SendAsync("A second question");

        // With 35 of 40 tokens reserved for the reply, only the newest question fits, and it is sent even so.
        await session.SendAsync("Third", new ChatOptions { MaxOutputTokens = 35 });

        Assert.Equal(["Third"], fake.Requests[^1].Select(m => m.Text));
        Assert.Equal(4, session.DroppedMessageCount);
        Assert.Equal(2, session.History.Count);
    }

    [Fact]
    public async Task Over_a_test_client_tool_calls_and_results_stay_together_when_trimmed()
    {
        var fake = new ScriptedChatClient { CallToolOnFirstTurn = true };
        var session = new ChatSession(fake) { MaxContextTokens = 45 };

        await session.SendAsync("Weather in Paris please");
        session.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent("call_1", "Sunny and warm all week long")]));
        await session.SendAsync("Thanks, and tomorrow in the same place and the day after that?");
        await session.SendAsync("One more question about the weather here");

        var sent = fake.Requests[^1];
        var calls = sent.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Count();
        var results = sent.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Count();
        Assert.Equal(calls, results);
        Assert.Equal(ChatRole.User, sent[0].Role);
    }

    [Fact]
    public async Task Over_a_test_client_a_stream_abandoned_by_the_caller_is_kept_as_truncated_and_Clear_forgets_everything()
    {
        var fake = new ScriptedChatClient();
        var session = new ChatSession(fake, "System");

        await foreach (var update in session.StreamAsync("Hello there"))
        {
            break;
        }

        Assert.Equal(2, session.History.Count);
        Assert.Equal("Answer", session.History[1].Text);
        Assert.Equal(true, session.History[1].AdditionalProperties?[ChatSession.TruncatedProperty]);
        await Assert.ThrowsAsync<ArgumentException>(async () => await session.SendAsync("  "));

        session.Clear();
        Assert.Empty(session.History);
        Assert.Equal("System", session.BuildRequest().Single().Text);
    }

    /// <summary>An IChatClient that answers "Answer 1", "Answer 2"… in two updates and records what it was sent.</summary>
    private sealed class ScriptedChatClient : IChatClient
    {
        public List<List<ChatMessage>> Requests { get; } = [];

        public bool CallToolOnFirstTurn { get; set; }

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
            IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            Requests.Add([.. messages]);
            await Task.Yield();
            if (CallToolOnFirstTurn && Requests.Count == 1)
            {
                var arguments = new Dictionary<string, object?> { ["city"] = JsonDocument.Parse("\"Paris\"").RootElement.Clone() };
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new FunctionCallContent("call_1", "get_weather", arguments)]) { FinishReason = ChatFinishReason.ToolCalls };
                yield break;
            }

            yield return new ChatResponseUpdate(ChatRole.Assistant, "Answer");
            yield return new ChatResponseUpdate(ChatRole.Assistant, $" {Requests.Count}") { FinishReason = ChatFinishReason.Stop };
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(new UsageDetails { OutputTokenCount = 2 })]);
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose()
        {
        }
    }
}
