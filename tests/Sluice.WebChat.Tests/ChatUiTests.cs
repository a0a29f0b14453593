using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;
using Sluice.Gateway.Accounting;

namespace Sluice.WebChat.Tests;

/// <summary>The web chat in headless Chromium against an open gateway (no master key).</summary>
public sealed class ChatUiTests(ChatHarness harness) : IClassFixture<ChatHarness>
{
    private const string SessionStream = "/api/llm/chat/session/stream";

    [Fact]
    public async Task Page_loads_with_no_external_requests_and_fills_the_model_picker_from_the_api()
    {
        await using var chat = await harness.OpenAsync();

        var models = await harness.Http.GetFromJsonAsync<JsonElement>("/v1/models");
        var expected = models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray();
        var shown = await chat.Model.Locator("option").EvaluateAllAsync<string[]>("options => options.map(o => o.value)");
        Assert.Equal(expected, shown);
        Assert.Contains(ChatHarness.PacedModel, shown);
        Assert.True(await chat.Model.IsEnabledAsync());

        // A whole turn too: still nothing but the gateway.
        await chat.SendAsync("Where do the requests go?", "sim-fast");
        await chat.WaitForLastAnswerAsync("done");

        var origin = harness.BaseAddress.GetLeftPart(UriPartial.Authority);
        var requests = chat.Requests.Select(r => r.Url).ToList();
        Assert.Contains(requests, u => u.EndsWith("/v1/models", StringComparison.Ordinal));
        Assert.Contains(requests, u => u.EndsWith("/webchat/markdown.js", StringComparison.Ordinal));
        Assert.Contains(requests, u => u.EndsWith(SessionStream, StringComparison.Ordinal));
        Assert.All(requests, url => Assert.StartsWith(origin + "/", url, StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_answer_grows_while_it_streams_and_shows_live_metrics()
    {
        await using var chat = await harness.OpenAsync();
        await chat.SendAsync("How do rivers form in the mountains?", ChatHarness.PacedModel);

        // Sample the answer bubble until it is done: a streamed answer passes through many lengths.
        var lengths = new List<int>();
        string? liveMeta = null;
        var watch = Stopwatch.StartNew();
        var body = chat.LastAnswer.Locator(".body");
        while (watch.Elapsed < TimeSpan.FromSeconds(15))
        {
            var sample = await chat.LastAnswer.EvaluateAsync<JsonElement>(
                "li => ({ state: li.dataset.state, length: li.querySelector('.body').textContent.length, meta: li.querySelector('.meta').textContent })");
            var state = sample.GetProperty("state").GetString();
            var length = sample.GetProperty("length").GetInt32();
            if (state == "streaming" && sample.GetProperty("meta").GetString() is { } live && live.Contains("tok/s", StringComparison.Ordinal))
            {
                liveMeta = live;
            }

            if (state is "done" or "error" or "stopped")
            {
                Assert.Equal("done", state);
                break;
            }

            if (length > 0 && (lengths.Count == 0 || lengths[^1] != length))
            {
                lengths.Add(length);
            }

            await Task.Delay(40);
        }

        var final = (await body.TextContentAsync())!.Length;
        var intermediate = lengths.Where(l => l < final).ToList();
        Assert.True(intermediate.Count >= 3, $"Expected at least 3 partial states before the end, saw lengths [{string.Join(", ", lengths)}] then {final}.");
        Assert.Equal(intermediate.OrderBy(l => l), intermediate);
        Assert.Equal(intermediate.Count, intermediate.Distinct().Count());

        Assert.NotNull(liveMeta);
        Assert.Matches(@"TTFT \d+ ms · [\d.]+ tok/s · \d+ tokens", liveMeta);
        var meta = await chat.LastAnswer.Locator(".meta").TextContentAsync();
        // The simulation's natural length for a prompt lies between DefaultAnswerTokens (40) and 1.6 times it.
        var match = System.Text.RegularExpressions.Regex.Match(meta!, @"^TTFT \d+ ms · [\d.]+ tok/s · (\d+) tokens$");
        Assert.True(match.Success, meta);
        var tokens = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(tokens, 40, 64);
        Assert.Equal("false", await chat.LastAnswer.GetAttributeAsync("aria-busy"));
    }

    [Fact]
    public async Task Stop_ends_the_answer_in_the_page_and_cancels_the_generation_on_the_server()
    {
        await using var chat = await harness.OpenAsync();
        await chat.SendAsync("Write a long essay about canals.", ChatHarness.LongModel);
        await chat.WaitForLastAnswerAsync("streaming");
        await chat.Page.WaitForFunctionAsync("() => document.querySelector('#messages li.assistant:last-child .body').textContent.length > 30");
        Assert.True(await chat.Stop.IsEnabledAsync());

        await chat.Stop.ClickAsync();
        await chat.WaitForLastAnswerAsync("stopped", 5_000);
        Assert.Equal("Stopped — generation cancelled", (await chat.LastAnswer.Locator(".meta").TextContentAsync())!.Split(" · ")[0]);
        Assert.False(await chat.Stop.IsEnabledAsync());

        var requestId = await chat.LastAnswer.GetAttributeAsync("data-request-id");
        var streamId = await chat.LastAnswer.GetAttributeAsync("data-stream-id");
        Assert.False(string.IsNullOrEmpty(requestId));
        Assert.False(string.IsNullOrEmpty(streamId));
        Assert.Contains(chat.Requests, r => r.Method == "DELETE" && r.Url.EndsWith("/v1/streams/" + streamId, StringComparison.Ordinal));

        // The server stopped generating: the request is recorded as abandoned, far short of its 400 tokens.
        var record = await harness.Usage.WaitForAsync(requestId!);
        Assert.Equal(UsageStatus.Abandoned, record.Status);
        Assert.InRange(record.CompletionTokens, 1, 200);

        // And the page stopped growing.
        var length = await chat.LastAnswer.Locator(".body").EvaluateAsync<int>("b => b.textContent.length");
        await Task.Delay(600);
        Assert.Equal(length, await chat.LastAnswer.Locator(".body").EvaluateAsync<int>("b => b.textContent.length"));

        // The session keeps the partial reply, marked truncated; reopened, the page says it was stopped.
        var reply = (await SessionMessagesAsync(await chat.SessionIdAsync()))[^1];
        Assert.Equal("assistant", reply.GetProperty("role").GetString());
        Assert.True(reply.GetProperty("truncated").GetBoolean());
        await chat.ReloadAsync();
        await chat.WaitForLastAnswerAsync("stopped", 5_000);
        Assert.StartsWith("Stopped", await chat.LastAnswer.Locator(".meta").TextContentAsync(), StringComparison.Ordinal);
        Assert.Equal(await chat.RenderAsync(reply.GetProperty("content").GetString()!), await chat.LastAnswer.Locator(".body").InnerHTMLAsync());
    }

    [Fact]
    public async Task A_dropped_connection_resumes_from_the_last_event_without_losing_or_repeating_text()
    {
        await using var chat = await harness.OpenAsync();
        harness.Dropper.DropNext(SessionStream, TimeSpan.FromMilliseconds(700));
        var dropped = harness.Dropper.Dropped;
        await chat.SendAsync("Explain how locks on a canal raise boats.", ChatHarness.PacedModel);
        await chat.WaitForLastAnswerAsync("done", 20_000);
        Assert.Equal(dropped + 1, harness.Dropper.Dropped);

        var streamId = await chat.LastAnswer.GetAttributeAsync("data-stream-id");
        var resume = chat.Requests.Single(r => r.Method == "GET" && r.Url.EndsWith("/v1/streams/" + streamId, StringComparison.Ordinal));
        var lastEventId = long.Parse(resume.Headers["last-event-id"], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(lastEventId > 0, "The page resumes after the events it has, not from the start.");
        Assert.Contains("resumed 1×", await chat.LastAnswer.Locator(".meta").TextContentAsync(), StringComparison.Ordinal);

        // The whole answer as the server produced it, replayed from the start of the stream.
        var expected = await ReplayTextAsync(streamId!);
        Assert.True(expected.Length > 100, expected);
        Assert.Equal(await chat.RenderAsync(expected), await chat.LastAnswer.Locator(".body").InnerHTMLAsync());

        // The stored reply is the same complete answer (the drop did not interrupt the generation).
        var reply = (await SessionMessagesAsync(await chat.SessionIdAsync()))[^1];
        Assert.Equal(expected, reply.GetProperty("content").GetString());
        Assert.False(reply.GetProperty("truncated").GetBoolean());
    }

    [Fact]
    public async Task Reloading_shows_the_conversation_and_the_session_list()
    {
        await using var chat = await harness.OpenAsync();
        var question = "Tell me about lighthouses " + Guid.NewGuid().ToString("N")[..8];
        await chat.SendAsync(question, "sim-fast");
        await chat.WaitForLastAnswerAsync("done");
        var answerHtml = await chat.LastAnswer.Locator(".body").InnerHTMLAsync();
        Assert.NotEmpty(answerHtml);

        await chat.ReloadAsync();
        await Assertions.Expect(chat.Sessions.Filter(new() { HasText = question })).ToHaveCountAsync(1);
        await Assertions.Expect(chat.Page.Locator("#messages li.user")).ToHaveTextAsync(["You: " + question]);
        Assert.Equal(answerHtml, await chat.LastAnswer.Locator(".body").InnerHTMLAsync());

        // A new chat empties the view; the list opens the conversation again.
        await chat.Page.GetByRole(AriaRole.Button, new() { Name = "New chat" }).ClickAsync();
        await Assertions.Expect(chat.Answers).ToHaveCountAsync(0);
        await chat.Sessions.Filter(new() { HasText = question }).Locator("button.open").ClickAsync();
        await Assertions.Expect(chat.Answers).ToHaveCountAsync(1);
        Assert.Equal(answerHtml, await chat.LastAnswer.Locator(".body").InnerHTMLAsync());
    }

    [Fact]
    public async Task Deleting_a_conversation_removes_it_from_the_list_and_the_server()
    {
        await using var chat = await harness.OpenAsync();
        var question = "Delete me " + Guid.NewGuid().ToString("N")[..8];
        await chat.SendAsync(question, "sim-fast");
        await chat.WaitForLastAnswerAsync("done");
        var item = chat.Sessions.Filter(new() { HasText = question });
        await Assertions.Expect(item).ToHaveCountAsync(1);
        var sessionId = await item.GetAttributeAsync("data-session-id");

        await chat.Page.GetByRole(AriaRole.Button, new() { Name = "Delete conversation: " + question }).ClickAsync();
        await Assertions.Expect(item).ToHaveCountAsync(0);
        await Assertions.Expect(chat.Answers).ToHaveCountAsync(0);
        using var response = await harness.Http.GetAsync("/api/sessions/" + sessionId);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task Enter_sends_and_shift_enter_adds_a_line()
    {
        await using var chat = await harness.OpenAsync();
        await chat.Model.SelectOptionAsync("sim-fast");
        await chat.Prompt.FocusAsync();
        await chat.Page.Keyboard.TypeAsync("first line");
        await chat.Page.Keyboard.PressAsync("Shift+Enter");
        await chat.Page.Keyboard.TypeAsync("second line");
        Assert.Equal("first line\nsecond line", await chat.Prompt.InputValueAsync());
        Assert.Equal(0, await chat.Page.Locator("#messages li").CountAsync());

        await chat.Page.Keyboard.PressAsync("Enter");
        await chat.WaitForLastAnswerAsync("done");
        Assert.Equal("You: first line\nsecond line", await chat.Page.Locator("#messages li.user").TextContentAsync());
        Assert.Equal(string.Empty, await chat.Prompt.InputValueAsync());
        Assert.True(await chat.Prompt.EvaluateAsync<bool>("e => document.activeElement === e"), "Focus returns to the message box.");
    }

    [Fact]
    public async Task A_server_error_is_shown_in_the_answer_with_the_servers_message()
    {
        await using var chat = await harness.OpenAsync();
        // A model the server does not know (as if it was removed after the page loaded).
        await chat.Model.EvaluateAsync("s => { s.add(new Option('no-such-model', 'no-such-model')); }");
        await chat.SendAsync("Hello?", "no-such-model");
        await chat.WaitForLastAnswerAsync("error");

        var error = chat.LastAnswer.Locator(".error");
        await Assertions.Expect(error).ToBeVisibleAsync();
        var text = await error.TextContentAsync();
        Assert.Contains("'no-such-model' does not exist", text, StringComparison.Ordinal);
        Assert.StartsWith("Failed", await chat.LastAnswer.Locator(".meta").TextContentAsync(), StringComparison.Ordinal);
        Assert.True(await chat.Page.GetByRole(AriaRole.Button, new() { Name = "Send" }).IsEnabledAsync());
    }

    [Fact]
    public async Task Markdown_is_rendered_safely()
    {
        await using var chat = await harness.OpenAsync();
        var html = await chat.RenderAsync(string.Join('\n',
            "# Title",
            "Some **bold**, *italic* and `code <b>`.",
            "",
            "- one",
            "- two",
            "",
            "1. first",
            "2. second",
            "",
            "```js",
            "if (a < b) { alert('x'); }",
            "```",
            "[site](https://example.org/a?b=1&c=2) [bad](javascript:alert(1)) [data](data:text/html,x)",
            "<img src=x onerror=alert(1)> <script>alert(1)</script>"));

        Assert.Contains("<h1>Title</h1>", html, StringComparison.Ordinal);
        Assert.Contains("<strong>bold</strong>", html, StringComparison.Ordinal);
        Assert.Contains("<em>italic</em>", html, StringComparison.Ordinal);
        Assert.Contains("<code>code &lt;b&gt;</code>", html, StringComparison.Ordinal);
        Assert.Contains("<ul><li>one</li><li>two</li></ul>", html, StringComparison.Ordinal);
        Assert.Contains("<ol><li>first</li><li>second</li></ol>", html, StringComparison.Ordinal);
        Assert.Contains("<pre><code class=\"language-js\">if (a &lt; b) { alert('x'); }</code></pre>", html, StringComparison.Ordinal);
        Assert.Contains("<a href=\"https://example.org/a?b=1&amp;c=2\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">site</a>", html, StringComparison.Ordinal);
        Assert.Contains("[bad](javascript:alert(1))", html, StringComparison.Ordinal);
        Assert.Contains("[data](data:text/html,x)", html, StringComparison.Ordinal);
        Assert.Contains("&lt;img src=x onerror=alert(1)&gt; &lt;script&gt;alert(1)&lt;/script&gt;", html, StringComparison.Ordinal);
        Assert.Equal(1, CountOf(html, "<a "));
        Assert.DoesNotContain("<img", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Inputs_are_labelled_the_focus_order_is_logical_and_text_contrast_is_at_least_4_5()
    {
        await using var chat = await harness.OpenAsync();
        await Assertions.Expect(chat.Page.GetByLabel("API key")).ToHaveAttributeAsync("type", "password");
        await Assertions.Expect(chat.Model).ToBeVisibleAsync();
        await Assertions.Expect(chat.Prompt).ToBeVisibleAsync();
        Assert.Equal("polite", await chat.Page.Locator("#messages").GetAttributeAsync("aria-live"));

        // Tab from the top: skip link, model, key, new chat, (conversations), message, send.
        var order = new List<string>();
        for (var i = 0; i < 60 && !order.Contains("send"); i++)
        {
            await chat.Page.Keyboard.PressAsync("Tab");
            order.Add(await chat.Page.EvaluateAsync<string>("() => document.activeElement.id || document.activeElement.className"));
        }

        var expected = new[] { "skip", "model", "api-key", "new-chat", "prompt", "send" };
        var positions = expected.Select(id => order.IndexOf(id)).ToArray();
        Assert.True(positions.All(p => p >= 0) && positions.SequenceEqual(positions.Order()), $"Focus order: {string.Join(" → ", order)}");

        // An answer, an error, the notice and a running stream's buttons on screen, then every text's contrast.
        await chat.SendAsync("Contrast check", "sim-fast");
        await chat.WaitForLastAnswerAsync("done");
        await chat.Model.EvaluateAsync("s => { s.add(new Option('missing-model', 'missing-model')); }");
        await chat.SendAsync("Error please", "missing-model");
        await chat.WaitForLastAnswerAsync("error");
        var failures = await chat.Page.EvaluateAsync<string[]>(ContrastScript);
        Assert.Empty(failures);
    }

    private static int CountOf(string text, string part)
    {
        var count = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + 1, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    private async Task<JsonElement[]> SessionMessagesAsync(string? sessionId)
    {
        Assert.False(string.IsNullOrEmpty(sessionId), "The page adopted the session the server created.");
        var session = await harness.Http.GetFromJsonAsync<JsonElement>("/api/sessions/" + sessionId);
        return [.. session.GetProperty("messages").EnumerateArray()];
    }

    /// <summary>Replays a stream from its start and joins its content events.</summary>
    private async Task<string> ReplayTextAsync(string streamId)
    {
        using var response = await harness.Http.GetAsync("/v1/streams/" + streamId);
        response.EnsureSuccessStatusCode();
        var text = new StringBuilder();
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                using var json = JsonDocument.Parse(line["data: ".Length..]);
                if (json.RootElement.TryGetProperty("content", out var content))
                {
                    text.Append(content.GetString());
                }
            }
        }

        return text.ToString();
    }

    /// <summary>WCAG contrast of every visible, enabled element that has its own text, against its effective background.</summary>
    private const string ContrastScript = """
        () => {
          const parse = c => { const m = c.match(/[\d.]+/g).map(Number); return { r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1 }; };
          const lum = ({ r, g, b }) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
          const background = el => { for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor); if (c.a > 0.5) return c; } return { r: 255, g: 255, b: 255, a: 1 }; };
          const failures = [];
          for (const el of document.querySelectorAll('body *')) {
            const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim() !== '');
            const style = getComputedStyle(el);
            if (!own || el.closest('[hidden], .sr-only, :disabled, option') || style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
            const fg = lum(parse(style.color)), bg = lum(background(el));
            const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
            if (ratio < 4.5) failures.push(`${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 30)}": ${ratio.toFixed(2)}`);
          }
          return failures;
        }
        """;
}
