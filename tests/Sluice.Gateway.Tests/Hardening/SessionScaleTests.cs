using System.Net;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Sessions;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Protocol.Sse;
using Sluice.Storage;
using static Sluice.Gateway.Tests.Tenancy.TenancyHost;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Long sessions stay cheap and bounded: <c>GET /api/sessions/{id}</c> is paged, a turn sends (and reads) only the
/// newest messages that fit the context, and a session refuses turns beyond <c>Sessions:MaxMessages</c>.
/// </summary>
public sealed class SessionScaleTests : IAsyncLifetime
{
    private readonly SqliteDatabases _databases = new();
    private TenancyHost _host = null!;

    public async Task InitializeAsync() =>
        _host = await StartAsync(await _databases.CreateAsync(), configure: o => o.Sessions.MaxMessages = 6);

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _databases.DisposeAsync();
    }

    [Fact]
    public async Task Messages_come_a_page_at_a_time_with_a_cursor_to_older_ones()
    {
        var session = await _host.Store.CreateSessionAsync(SessionOwners.Operator, new NewChatSession(4096), CancellationToken.None);
        for (var i = 1; i <= 250; i++)
        {
            await _host.Store.AppendSessionMessageAsync(
                SessionOwners.Operator, session.Id, new NewSessionMessage(i % 2 == 1 ? "user" : "assistant", $"message {i}"), CancellationToken.None);
        }

        // The default page is the newest 100; next_before walks back to the start.
        var first = (await GetAsync(_host.Admin, $"api/sessions/{session.Id}")).AssertStatus(HttpStatusCode.OK).Json;
        Assert.Equal(100, first.GetProperty("messages").GetArrayLength());
        Assert.Equal("message 250", first.GetProperty("messages")[99].GetProperty("content").GetString());
        Assert.Equal(250, first.GetProperty("message_count").GetInt64());
        var seen = new List<string>();
        var page = first;
        while (true)
        {
            seen.InsertRange(0, page.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("content").GetString()!));
            if (!page.GetProperty("has_more").GetBoolean())
            {
                Assert.Equal(JsonValueKind.Null, page.GetProperty("next_before").ValueKind);
                break;
            }

            page = (await GetAsync(_host.Admin, $"api/sessions/{session.Id}?limit=70&before={page.GetProperty("next_before").GetInt64()}")).AssertStatus(HttpStatusCode.OK).Json;
        }

        Assert.Equal(Enumerable.Range(1, 250).Select(i => $"message {i}"), seen);
        (await GetAsync(_host.Admin, $"api/sessions/{session.Id}?limit=0")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await GetAsync(_host.Admin, $"api/sessions/{session.Id}?limit=1001")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
        (await GetAsync(_host.Admin, $"api/sessions/{session.Id}?before=abc")).AssertError(HttpStatusCode.BadRequest, "invalid_request_error");
    }

    [Fact]
    public async Task A_session_at_its_cap_refuses_the_turn_before_the_model_runs_and_keeps_everything()
    {
        string? sessionId = null;
        for (var turn = 1; turn <= 3; turn++)
        {
            var body = sessionId is null ? """{"message": "Tell me about rivers", "max_tokens": 5}""" : $$"""{"session_id": "{{sessionId}}", "message": "And then?", "max_tokens": 5}""";
            var ok = await PostAsync(_host.Admin, "api/llm/chat/session/stream", body);
            ok.AssertStatus(HttpStatusCode.OK);
            sessionId ??= ok.Header(SessionEndpoints.SessionIdHeader);
        }

        // Six messages: the cap. The fourth turn is refused with what to do, and nothing is added.
        var usageBefore = (await GetAsync(_host.Admin, "health")).Json.GetProperty("usage").GetProperty("requests").GetInt64();
        var refused = await PostAsync(_host.Admin, "api/llm/chat/session/stream", $$"""{"session_id": "{{sessionId}}", "message": "One more", "max_tokens": 5}""");
        refused.AssertError(HttpStatusCode.Conflict, "invalid_request_error", "session_full");
        Assert.Equal("session_id", refused.Error.GetProperty("param").GetString());
        var stored = (await GetAsync(_host.Admin, $"api/sessions/{sessionId}")).Json;
        Assert.Equal(6, stored.GetProperty("message_count").GetInt64());
        Assert.Equal(usageBefore, (await GetAsync(_host.Admin, "health")).Json.GetProperty("usage").GetProperty("requests").GetInt64());

        // A new session is the way on.
        (await PostAsync(_host.Admin, "api/llm/chat/session/stream", """{"message": "Fresh start", "max_tokens": 5}""")).AssertStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task The_prompt_of_a_turn_holds_the_window_not_the_whole_history()
    {
        await using var roomy = await StartAsync(await _databases.CreateAsync(), configure: o => o.Sessions.MaxMessages = 10_000);
        var session = await roomy.Store.CreateSessionAsync(SessionOwners.Operator, new NewChatSession(512, Model: "sim-fast"), CancellationToken.None);
        var text = string.Join(' ', Enumerable.Repeat("lake", 27));
        for (var i = 0; i < 600; i++)
        {
            await roomy.Store.AppendSessionMessageAsync(
                SessionOwners.Operator,
                session.Id,
                new NewSessionMessage(i % 2 == 0 ? "user" : "assistant", text, ContextTokens: SessionStage.ContextCost(text)),
                CancellationToken.None);
        }

        var turn = await PostAsync(roomy.Admin, "api/llm/chat/session/stream", $$"""{"session_id": "{{session.Id}}", "message": "Summarise", "max_tokens": 5}""");
        turn.AssertStatus(HttpStatusCode.OK);
        var events = new List<JsonElement>();
        await foreach (var e in SseReader.ReadAsync(new MemoryStream(Encoding.UTF8.GetBytes(turn.Body))))
        {
            events.Add(JsonDocument.Parse(e.Data).RootElement.Clone());
        }

        var done = events.Single(e => e.TryGetProperty("done", out _));
        Assert.True(done.GetProperty("usage").GetProperty("prompt_tokens").GetInt64() <= 512);
        var dropped = done.GetProperty("dropped_turns").GetInt32();
        Assert.InRange(dropped, 600 - 20, 600);
        Assert.Equal(dropped.ToString(System.Globalization.CultureInfo.InvariantCulture), turn.Header(SessionEndpoints.DroppedTurnsHeader));
    }
}
