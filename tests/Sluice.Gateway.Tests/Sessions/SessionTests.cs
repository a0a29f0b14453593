using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Http;
using Sluice.Gateway.Sessions;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tests.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Sse;

namespace Sluice.Gateway.Tests.Sessions;

/// <summary>
/// Sessions over a real socket with the master key on a real store (SQLite and PostgreSQL): history across streamed
/// turns, trimming, truncated replies, isolation between teams, validation, WebSocket turns and resume.
/// </summary>
public abstract class SessionTests : TenancyTestBase
{
    private const string Turn = "api/llm/chat/session/stream";

    /// <summary>A turn's streamed events, parsed.</summary>
    private sealed record TurnResult(HttpStatusCode Status, string? SessionId, int? DroppedHeader, List<JsonElement> Events, string Body)
    {
        public string Text => string.Concat(Events.Where(e => e.TryGetProperty("content", out _)).Select(e => e.GetProperty("content").GetString()));

        public JsonElement Last => Events[^1];
    }

    private static async Task<TurnResult> TurnAsync(HttpClient client, string json)
    {
        var response = await TenancyHost.PostAsync(client, Turn, json);
        var events = new List<JsonElement>();
        if (response.Status == HttpStatusCode.OK)
        {
            await foreach (var e in SseReader.ReadAsync(new MemoryStream(Encoding.UTF8.GetBytes(response.Body))))
            {
                events.Add(JsonDocument.Parse(e.Data).RootElement.Clone());
            }
        }

        var dropped = response.Header(SessionEndpoints.DroppedTurnsHeader) is { } d ? int.Parse(d, System.Globalization.CultureInfo.InvariantCulture) : (int?)null;
        return new TurnResult(response.Status, response.Header(SessionEndpoints.SessionIdHeader), dropped, events, response.Body);
    }

    private static async Task<JsonElement> SessionAsync(HttpClient client, string id)
    {
        var response = await TenancyHost.GetAsync(client, $"api/sessions/{id}");
        response.AssertStatus(HttpStatusCode.OK);
        return response.Json;
    }

    [Fact]
    public async Task Streamed_turns_build_a_stored_history_the_model_sees()
    {
        var created = await TenancyHost.PostAsync(
            Host.Admin, "api/sessions", """{"system_prompt": "You are terse.", "model": "sim-fast", "metadata": {"app": "tests"}}""");
        created.AssertStatus(HttpStatusCode.Created);
        var id = created.Json.GetProperty("id").GetString()!;
        Assert.StartsWith("sess_", id, StringComparison.Ordinal);
        Assert.Equal(4096, created.Json.GetProperty("max_context_tokens").GetInt32());

        var first = await TurnAsync(Host.Admin, $$"""{"session_id": "{{id}}", "message": "How do rivers form?", "max_tokens": 12, "seed": 1}""");
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal(id, first.SessionId);
        Assert.True(first.Last.GetProperty("done").GetBoolean(), first.Body);
        Assert.Equal(id, first.Last.GetProperty("session_id").GetString());
        Assert.Equal(0, first.Last.GetProperty("dropped_turns").GetInt32());
        Assert.False(string.IsNullOrEmpty(first.Text));

        var second = await TurnAsync(Host.Admin, $$"""{"session_id": "{{id}}", "message": "And lakes?", "max_tokens": 12, "seed": 2}""");
        Assert.True(second.Last.GetProperty("done").GetBoolean(), second.Body);

        // The second call's prompt was the system prompt, the first exchange and the new message.
        var expectedPrompt = TokenCounter.CountPrompt(
        [
            new ChatMessage("system", "You are terse."),
            new ChatMessage("user", "How do rivers form?"),
            new ChatMessage("assistant", first.Text),
            new ChatMessage("user", "And lakes?"),
        ]);
        Assert.Equal(expectedPrompt, second.Last.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var session = await SessionAsync(Host.Admin, id);
        var messages = session.GetProperty("messages").EnumerateArray().ToList();
        Assert.Equal(["user", "assistant", "user", "assistant"], messages.Select(m => m.GetProperty("role").GetString()));
        Assert.Equal(first.Text, messages[1].GetProperty("content").GetString());
        Assert.Equal(second.Text, messages[3].GetProperty("content").GetString());
        Assert.All(messages, m => Assert.False(m.GetProperty("truncated").GetBoolean()));
        Assert.Contains(messages[1].GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        Assert.Equal(12, messages[1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("How do rivers form?", session.GetProperty("title").GetString());
        Assert.Equal(4, session.GetProperty("message_count").GetInt32());
        Assert.Equal("tests", session.GetProperty("metadata").GetProperty("app").GetString());
    }

    [Fact]
    public async Task A_team_keeps_at_most_its_sessions_and_the_next_is_refused_without_deleting_any()
    {
        var host = await StartGatewayAsync(configure: o => o.Sessions.MaxPerTeam = 2);
        var (_, key) = await host.NewTeamAsync(100);
        using var team = host.NewClient(key);
        (await TenancyHost.PostAsync(team, "api/sessions", "{}")).AssertStatus(HttpStatusCode.Created);
        var second = await TenancyHost.PostAsync(team, "api/sessions", "{}");
        second.AssertStatus(HttpStatusCode.Created);

        // A third, explicitly or by a turn without session_id: 409 with what to do; the two are kept.
        var refused = await TenancyHost.PostAsync(team, "api/sessions", "{}");
        refused.AssertError(HttpStatusCode.Conflict, "invalid_request_error", "too_many_sessions");
        Assert.Contains("DELETE /api/sessions/{id}", refused.Json.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        var byTurn = await TurnAsync(team, """{"message": "Hi", "max_tokens": 2}""");
        Assert.Equal(HttpStatusCode.Conflict, byTurn.Status);
        Assert.Contains("too_many_sessions", byTurn.Body, StringComparison.Ordinal);
        Assert.Equal(2, (await TenancyHost.GetAsync(team, "api/sessions")).Json.GetProperty("data").GetArrayLength());

        // Another team has its own; a deleted session makes room.
        var (_, otherKey) = await host.NewTeamAsync(100);
        using var other = host.NewClient(otherKey);
        (await TenancyHost.PostAsync(other, "api/sessions", "{}")).AssertStatus(HttpStatusCode.Created);
        (await TenancyHost.SendAsync(team, HttpMethod.Delete, $"api/sessions/{second.Json.GetProperty("id").GetString()}")).AssertStatus(HttpStatusCode.OK);
        var turn = await TurnAsync(team, """{"message": "Hi", "max_tokens": 2}""");
        Assert.Equal(HttpStatusCode.OK, turn.Status);
    }

    [Fact]
    public async Task A_turn_without_a_session_creates_one_with_its_system_prompt()
    {
        var turn = await TurnAsync(Host.Admin, """{"message": "Tell me about tides", "system_prompt": "Answer in one line.", "model": "sim-fast", "max_tokens": 6}""");
        Assert.Equal(HttpStatusCode.OK, turn.Status);
        var id = turn.SessionId!;
        Assert.Equal(id, turn.Last.GetProperty("session_id").GetString());

        var session = await SessionAsync(Host.Admin, id);
        Assert.Equal("Answer in one line.", session.GetProperty("system_prompt").GetString());
        Assert.Equal("sim-fast", session.GetProperty("model").GetString());
        Assert.Equal(2, session.GetProperty("messages").GetArrayLength());

        var list = await TenancyHost.GetAsync(Host.Admin, "api/sessions");
        list.AssertStatus(HttpStatusCode.OK);
        var listed = Assert.Single(list.Json.GetProperty("data").EnumerateArray());
        Assert.Equal(id, listed.GetProperty("id").GetString());
        Assert.Equal("Tell me about tides", listed.GetProperty("title").GetString());
        Assert.False(listed.TryGetProperty("messages", out _));
        Assert.False(list.Json.GetProperty("has_more").GetBoolean());

        // The system prompt belongs to the session: changing it within the session is refused, repeating it is fine.
        var changed = await TurnAsync(Host.Admin, $$"""{"session_id": "{{id}}", "message": "More", "system_prompt": "Be verbose."}""");
        Assert.Equal(HttpStatusCode.BadRequest, changed.Status);
        Assert.Equal("system_prompt", JsonDocument.Parse(changed.Body).RootElement.GetProperty("error").GetProperty("param").GetString());
        var same = await TurnAsync(Host.Admin, $$"""{"session_id": "{{id}}", "message": "More", "system_prompt": "Answer in one line.", "max_tokens": 4}""");
        Assert.Equal(HttpStatusCode.OK, same.Status);
    }

    [Fact]
    public async Task Old_turns_are_left_out_to_fit_the_context_but_the_system_prompt_stays()
    {
        var created = await TenancyHost.PostAsync(Host.Admin, "api/sessions", """{"system_prompt": "Keep me.", "model": "sim-fast", "max_context_tokens": 160}""");
        created.AssertStatus(HttpStatusCode.Created);
        var id = created.Json.GetProperty("id").GetString()!;
        var question = string.Join(' ', Enumerable.Repeat("rivers", 20));
        var droppedSeen = new List<int>();
        TurnResult last = null!;
        for (var i = 0; i < 5; i++)
        {
            last = await TurnAsync(Host.Admin, $$"""{"session_id": "{{id}}", "message": "{{question}} {{i}}", "max_tokens": 20, "seed": {{i}}}""");
            Assert.True(last.Last.GetProperty("done").GetBoolean(), last.Body);
            Assert.Equal(last.DroppedHeader, last.Last.GetProperty("dropped_turns").GetInt32());
            droppedSeen.Add(last.DroppedHeader!.Value);
            Assert.True(last.Last.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() <= 160 - 20);
        }

        Assert.Equal(0, droppedSeen[0]);
        Assert.True(droppedSeen[^1] > 0, string.Join(",", droppedSeen));

        // Nothing was deleted: trimming only leaves turns out of the prompt.
        Assert.Equal(10, (await SessionAsync(Host.Admin, id)).GetProperty("messages").GetArrayLength());

        // A message that cannot fit even alone is refused, naming it.
        var huge = await TurnAsync(Host.Admin, $$"""{"session_id": "{{id}}", "message": "{{string.Join(' ', Enumerable.Repeat("word", 200))}}"}""");
        Assert.Equal(HttpStatusCode.BadRequest, huge.Status);
        var error = JsonDocument.Parse(huge.Body).RootElement.GetProperty("error");
        Assert.Equal("message", error.GetProperty("param").GetString());
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_reply_cut_by_the_client_is_stored_truncated_with_what_was_produced()
    {
        var created = await TenancyHost.PostAsync(Host.Admin, "api/sessions", """{"model": "sim-paced"}""");
        var id = created.Json.GetProperty("id").GetString()!;
        using var cutting = Host.NewClient(TenancyHost.MasterKey);
        var response = await cutting.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, Turn) { Content = TenancyHost.Json($$"""{"session_id": "{{id}}", "message": "Tell me a long story", "max_tokens": 300}""") },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var received = new StringBuilder();
        var count = 0;
        await foreach (var e in SseReader.ReadAsync(await response.Content.ReadAsStreamAsync()))
        {
            received.Append(JsonDocument.Parse(e.Data).RootElement.GetProperty("content").GetString());
            if (++count == 3)
            {
                break;
            }
        }

        response.Dispose();
        cutting.Dispose();

        JsonElement reply = default;
        for (var wait = 0; wait < 100; wait++)
        {
            var messages = (await SessionAsync(Host.Admin, id)).GetProperty("messages");
            if (messages.GetArrayLength() == 2)
            {
                reply = messages[1];
                break;
            }

            await Task.Delay(100);
        }

        Assert.Equal(JsonValueKind.Object, reply.ValueKind);
        Assert.True(reply.GetProperty("truncated").GetBoolean());
        var stored = reply.GetProperty("content").GetString()!;
        Assert.StartsWith(received.ToString(), stored, StringComparison.Ordinal);
        Assert.True(TokenCounter.Count(stored) < 300);
        Assert.False(reply.TryGetProperty("finish_reason", out _));
    }

    [Fact]
    public async Task A_reply_that_fails_mid_stream_is_stored_truncated_and_the_error_event_names_the_session()
    {
        var turn = await TurnAsync(
            Host.Admin, """{"message": "Explain tides", "model": "sim-fast", "max_tokens": 40, "metadata": {"sim_fail_after_tokens": "5"}}""");
        Assert.Equal(HttpStatusCode.OK, turn.Status);
        Assert.True(turn.Last.TryGetProperty("error", out _), turn.Body);
        Assert.Equal(turn.SessionId, turn.Last.GetProperty("session_id").GetString());

        // Stored before the error event went out: no waiting needed.
        var reply = (await SessionAsync(Host.Admin, turn.SessionId!)).GetProperty("messages")[1];
        Assert.True(reply.GetProperty("truncated").GetBoolean());
        Assert.Equal(turn.Text, reply.GetProperty("content").GetString());
        Assert.False(string.IsNullOrEmpty(reply.GetProperty("error").GetString()));
    }

    [Fact]
    public async Task Sessions_are_isolated_between_teams()
    {
        var (_, keyA) = await Host.NewTeamAsync(100);
        var (_, keyB) = await Host.NewTeamAsync(100);
        using var a = Host.NewClient(keyA);
        using var b = Host.NewClient(keyB);
        var turn = await TurnAsync(a, """{"message": "Team A's secret question", "model": "sim-fast", "max_tokens": 4}""");
        Assert.Equal(HttpStatusCode.OK, turn.Status);
        var id = turn.SessionId!;

        Assert.Equal(HttpStatusCode.NotFound, (await TenancyHost.GetAsync(b, $"api/sessions/{id}")).Status);
        Assert.Empty((await TenancyHost.GetAsync(b, "api/sessions")).Json.GetProperty("data").EnumerateArray());
        Assert.Equal(HttpStatusCode.NotFound, (await TenancyHost.SendAsync(b, HttpMethod.Delete, $"api/sessions/{id}")).Status);
        var intrusion = await TurnAsync(b, $$"""{"session_id": "{{id}}", "message": "Tell me their secrets", "max_tokens": 4}""");
        Assert.Equal(HttpStatusCode.NotFound, intrusion.Status);
        Assert.Equal("session_not_found", JsonDocument.Parse(intrusion.Body).RootElement.GetProperty("error").GetProperty("code").GetString());

        // The operator's own sessions are a separate scope too.
        Assert.Equal(HttpStatusCode.NotFound, (await TenancyHost.GetAsync(Host.Admin, $"api/sessions/{id}")).Status);

        // Team A still has its session untouched, and may delete it.
        Assert.Equal(2, (await SessionAsync(a, id)).GetProperty("messages").GetArrayLength());
        var deleted = await TenancyHost.SendAsync(a, HttpMethod.Delete, $"api/sessions/{id}");
        deleted.AssertStatus(HttpStatusCode.OK);
        Assert.True(deleted.Json.GetProperty("deleted").GetBoolean());
        Assert.Equal(HttpStatusCode.NotFound, (await TenancyHost.GetAsync(a, $"api/sessions/{id}")).Status);
    }

    [Theory]
    [InlineData("api/sessions", """{"max_context_tokens": 10}""", "max_context_tokens")]
    [InlineData("api/sessions", """{"model": "no-such-model"}""", "model")]
    [InlineData("api/sessions", """{"metadata": {"n": 1}}""", "metadata.n")]
    [InlineData("api/sessions", """{"system_prompt": 5}""", "system_prompt")]
    [InlineData(Turn, """{"model": "sim-fast"}""", "message")]
    [InlineData(Turn, """{"message": "  "}""", "message")]
    [InlineData(Turn, """{"messages": [{"role": "user", "content": "hi"}]}""", "messages")]
    [InlineData(Turn, """{"message": "hi", "temperature": 9}""", "temperature")]
    [InlineData(Turn, """{"message": "hi", "model": "no-such-model"}""", "model")]
    public async Task Bad_input_is_a_400_or_404_naming_the_parameter(string path, string body, string param)
    {
        var response = await TenancyHost.PostAsync(Host.Admin, path, body);
        Assert.True(response.Status is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, response.Body);
        Assert.Equal(param, response.Error.GetProperty("param").GetString());
        Assert.Empty((await TenancyHost.GetAsync(Host.Admin, "api/sessions")).Json.GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task Unknown_sessions_are_404()
    {
        var turn = await TurnAsync(Host.Admin, """{"session_id": "sess_missing", "message": "hi"}""");
        Assert.Equal(HttpStatusCode.NotFound, turn.Status);
        Assert.Equal(HttpStatusCode.NotFound, (await TenancyHost.GetAsync(Host.Admin, "api/sessions/sess_missing")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await TenancyHost.SendAsync(Host.Admin, HttpMethod.Delete, "api/sessions/sess_missing")).Status);
    }

    [Fact]
    public async Task A_WebSocket_turn_uses_and_extends_the_session()
    {
        var created = await TenancyHost.PostAsync(Host.Admin, "api/sessions", """{"model": "sim-fast"}""");
        var id = created.Json.GetProperty("id").GetString()!;
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + TenancyHost.MasterKey);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await socket.ConnectAsync(new UriBuilder(Host.BaseAddress) { Scheme = "ws", Path = "/api/llm/ws" }.Uri, cts.Token);
        await socket.SendAsync(
            Encoding.UTF8.GetBytes($$"""{"type": "chat", "id": "r1", "session_id": "{{id}}", "message": "Describe waterfalls", "max_tokens": 8}"""),
            WebSocketMessageType.Text, true, cts.Token);
        var text = new StringBuilder();
        JsonElement done;
        while (true)
        {
            var buffer = new byte[64 * 1024];
            var result = await socket.ReceiveAsync(buffer, cts.Token);
            var message = JsonDocument.Parse(buffer.AsMemory(0, result.Count)).RootElement.Clone();
            Assert.Equal("r1", message.GetProperty("id").GetString());
            var type = message.GetProperty("type").GetString();
            Assert.NotEqual("error", type);
            if (type == "chunk")
            {
                text.Append(message.GetProperty("content").GetString());
                continue;
            }

            done = message;
            break;
        }

        Assert.Equal(id, done.GetProperty("session_id").GetString());
        Assert.Equal(0, done.GetProperty("dropped_turns").GetInt32());
        var messages = (await SessionAsync(Host.Admin, id)).GetProperty("messages");
        Assert.Equal("Describe waterfalls", messages[0].GetProperty("content").GetString());
        Assert.Equal(text.ToString(), messages[1].GetProperty("content").GetString());
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
    }

    [Fact]
    public async Task A_resumable_turn_can_be_resumed_and_a_cancelled_one_is_stored_truncated()
    {
        var created = await TenancyHost.PostAsync(Host.Admin, "api/sessions", """{"model": "sim-paced"}""");
        var id = created.Json.GetProperty("id").GetString()!;
        using var request = new HttpRequestMessage(HttpMethod.Post, Turn)
        {
            Content = TenancyHost.Json($$"""{"session_id": "{{id}}", "message": "Tell me a long story", "max_tokens": 300}"""),
        };
        request.Headers.Add("x-sluice-resume", "on");
        using var response = await Host.Admin.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var streamId = Assert.Single(response.Headers.GetValues(HttpStreamSink.StreamIdHeader));

        // Another connection catches up from the start and follows the live stream; the first is cancelled.
        using var resume = new HttpRequestMessage(HttpMethod.Get, $"v1/streams/{streamId}?after=0");
        using var resumed = await Host.Admin.SendAsync(resume, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, resumed.StatusCode);
        var reading = Task.Run(async () =>
        {
            var events = new List<JsonElement>();
            await foreach (var e in SseReader.ReadAsync(await resumed.Content.ReadAsStreamAsync()))
            {
                events.Add(JsonDocument.Parse(e.Data).RootElement.Clone());
                if (events.Count == 3)
                {
                    (await TenancyHost.SendAsync(Host.Admin, HttpMethod.Delete, $"v1/streams/{streamId}")).AssertStatus(HttpStatusCode.OK);
                }
            }

            return events;
        });
        var all = await reading.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(all[^1].TryGetProperty("error", out _));
        Assert.Equal(id, all[^1].GetProperty("session_id").GetString());
        var streamed = string.Concat(all.Where(e => e.TryGetProperty("content", out _)).Select(e => e.GetProperty("content").GetString()));

        var reply = (await SessionAsync(Host.Admin, id)).GetProperty("messages")[1];
        Assert.True(reply.GetProperty("truncated").GetBoolean());
        Assert.Equal(streamed, reply.GetProperty("content").GetString());
    }
}

public sealed class SqliteSessionTests : SessionTests
{
    protected override TestDatabases NewDatabases() => new SqliteDatabases();
}

public sealed class PostgresSessionTests : SessionTests
{
    protected override TestDatabases NewDatabases() => new PostgresDatabases();
}
