using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Sluice.Client.Sessions;
using Sluice.Gateway.Hosting;
using Sluice.Providers;
using Sluice.Providers.Simulation;

namespace Sluice.Client.Tests;

/// <summary>SluiceSessionsClient against the real gateway and store, with a team's virtual key.</summary>
public sealed class SessionsAgainstGatewayTests : IAsyncLifetime
{
    private const string MasterKey = "sk-master-sessions-client-tests";
    private readonly DirectoryInfo _data = Directory.CreateTempSubdirectory("sluice-sessions-client-");
    private RunningGateway _gateway = null!;
    private SluiceSessionsClient _sessions = null!;

    public async Task InitializeAsync()
    {
        _gateway = await SluiceGateway.StartAsync(
            new GatewayOptions
            {
                Port = 0,
                MasterKey = MasterKey,
                DataDirectory = _data.FullName,
                Models = [.. BuiltInModels.All, new ModelOptions { Name = "sim-paced", Provider = "sim", TokensPerSecond = 20 }],
            },
            configureLogging: logging => logging.SetMinimumLevel(LogLevel.Warning));
        using var http = new HttpClient { BaseAddress = _gateway.BaseAddress };
        var org = await AdminPostAsync(http, "api/organizations/create", """{"name": "sessions-client"}""");
        var team = await AdminPostAsync(
            http,
            "api/teams/create",
            $$"""{"organization_id": "{{org.GetProperty("organization_id").GetString()}}", "team_alias": "sessions", "credits_allocated": 50}""");
        _sessions = new SluiceSessionsClient(new SluiceClientOptions
        {
            Endpoint = _gateway.BaseAddress,
            ApiKey = team.GetProperty("virtual_key").GetString(),
            DefaultModel = "sim-fast",
        });
    }

    public async Task DisposeAsync()
    {
        _sessions.Dispose();
        await _gateway.DisposeAsync();
        _data.Delete(recursive: true);
    }

    [Fact]
    public async Task Turns_stream_into_a_stored_session_the_client_can_read_list_and_delete()
    {
        var session = await _sessions.CreateSessionAsync(new CreateSessionRequest
        {
            SystemPrompt = "Be brief.",
            Model = "sim-fast",
            MaxContextTokens = 2048,
            Metadata = new Dictionary<string, string> { ["app"] = "sdk-tests" },
        });
        Assert.StartsWith("sess_", session.Id, StringComparison.Ordinal);
        Assert.Equal(2048, session.MaxContextTokens);

        var text = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in _sessions.StreamTurnAsync(session.Id, "How do glaciers move?", new ChatOptions { MaxOutputTokens = 10 }))
        {
            updates.Add(update);
            text.Append(update.Text);
        }

        Assert.True(updates.Count > 3);
        Assert.All(updates, u => Assert.Equal(session.Id, u.ConversationId));
        var last = updates[^1];
        Assert.NotNull(last.FinishReason);
        Assert.Equal(10, Assert.Single(last.Contents.OfType<UsageContent>()).Details.OutputTokenCount);
        Assert.Equal(0, last.AdditionalProperties![SluiceSessionsClient.DroppedTurnsProperty]);

        await foreach (var update in _sessions.StreamTurnAsync(session.Id, "Why?", new ChatOptions { MaxOutputTokens = 6 }))
        {
            Assert.Equal(session.Id, update.ConversationId);
        }

        var stored = await _sessions.GetSessionAsync(session.Id);
        Assert.Equal(["user", "assistant", "user", "assistant"], stored.Messages.Select(m => m.Role));
        Assert.Equal(text.ToString(), stored.Messages[1].Content);
        Assert.False(stored.Messages[1].Truncated);
        Assert.Equal(10, stored.Messages[1].CompletionTokens);
        Assert.Equal("sdk-tests", stored.Metadata["app"]);
        Assert.Equal("Be brief.", stored.SystemPrompt);

        var page = await _sessions.ListSessionsAsync(limit: 10);
        Assert.Contains(page.Sessions, s => s.Id == session.Id && s.Title == "How do glaciers move?");
        Assert.False(page.HasMore);

        await _sessions.DeleteSessionAsync(session.Id);
        await Assert.ThrowsAsync<SluiceNotFoundException>(() => _sessions.GetSessionAsync(session.Id));
        await Assert.ThrowsAsync<SluiceNotFoundException>(() => _sessions.DeleteSessionAsync(session.Id));
    }

    [Fact]
    public async Task As_an_IChatClient_the_conversation_id_is_the_session()
    {
        IChatClient chat = _sessions.AsChatClient();
        var first = await chat.GetResponseAsync(
            [new ChatMessage(ChatRole.System, "Answer in one line."), new ChatMessage(ChatRole.User, "Describe a delta")],
            new ChatOptions { MaxOutputTokens = 8 });
        var sessionId = first.ConversationId;
        Assert.NotNull(sessionId);
        Assert.False(string.IsNullOrEmpty(first.Text));
        Assert.Equal(8, first.Usage?.OutputTokenCount);

        // Only the new message is sent: the session has the rest.
        var second = await chat.GetResponseAsync([new ChatMessage(ChatRole.User, "And an estuary?")], new ChatOptions { ConversationId = sessionId, MaxOutputTokens = 8 });
        Assert.Equal(sessionId, second.ConversationId);

        var stored = await _sessions.GetSessionAsync(sessionId!);
        Assert.Equal("Answer in one line.", stored.SystemPrompt);
        Assert.Equal(4, stored.Messages.Count);
        Assert.Equal(first.Text, stored.Messages[1].Content);
        Assert.Equal(second.Text, stored.Messages[3].Content);
    }

    [Fact]
    public async Task Stopping_a_turn_cancels_it_on_the_server_and_the_reply_is_kept_as_truncated()
    {
        var session = await _sessions.CreateSessionAsync(new CreateSessionRequest { Model = "sim-paced" });
        var received = new StringBuilder();
        using var stop = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in _sessions.StreamTurnAsync(session.Id, "Tell me a long story", new ChatOptions { MaxOutputTokens = 400 }, cancellationToken: stop.Token))
            {
                received.Append(update.Text);
                if (received.Length > 20)
                {
                    await stop.CancelAsync();
                }
            }
        });

        SluiceSessionMessage? reply = null;
        for (var wait = 0; wait < 100 && reply is null; wait++)
        {
            var stored = await _sessions.GetSessionAsync(session.Id);
            reply = stored.Messages.Count == 2 ? stored.Messages[1] : null;
            if (reply is null)
            {
                await Task.Delay(100);
            }
        }

        Assert.NotNull(reply);
        Assert.True(reply.Truncated);
        Assert.StartsWith(received.ToString(), reply.Content, StringComparison.Ordinal);
        Assert.True(reply.CompletionTokens < 400);
    }

    [Fact]
    public async Task Bad_input_and_unknown_sessions_raise_typed_errors()
    {
        var bad = await Assert.ThrowsAsync<SluiceBadRequestException>(() => _sessions.CreateSessionAsync(new CreateSessionRequest { MaxContextTokens = 5 }));
        Assert.Contains("max_context_tokens", bad.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<SluiceNotFoundException>(async () =>
        {
            await foreach (var update in _sessions.StreamTurnAsync("sess_missing", "hello"))
            {
                Assert.Fail("no update expected: " + update.Text);
            }
        });
    }

    private static async Task<JsonElement> AdminPostAsync(HttpClient http, string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", MasterKey);
        using var response = await http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.Clone();
    }
}
