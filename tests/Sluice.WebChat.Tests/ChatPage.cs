using System.Collections.Concurrent;
using Microsoft.Playwright;

namespace Sluice.WebChat.Tests;

/// <summary>The chat page in a fresh browser context, with every request the page made.</summary>
public sealed class ChatPage : IAsyncDisposable
{
    private readonly ConcurrentQueue<IRequest> _requests = new();

    public ChatPage(IBrowserContext context, IPage page)
    {
        Context = context;
        Page = page;
        context.Request += (_, request) => _requests.Enqueue(request);
    }

    public IBrowserContext Context { get; }

    public IPage Page { get; }

    public IReadOnlyList<IRequest> Requests => [.. _requests];

    public ILocator Prompt => Page.GetByLabel("Message", new() { Exact = true });

    public ILocator Model => Page.GetByLabel("Model", new() { Exact = true });

    public ILocator Stop => Page.GetByRole(AriaRole.Button, new() { Name = "Stop" });

    public ILocator Answers => Page.Locator("#messages li.assistant");

    public ILocator LastAnswer => Answers.Last;

    public ILocator Sessions => Page.Locator("#sessions li");

    /// <summary>Loads a path and waits until the page has loaded its models (and sessions).</summary>
    public async Task GotoAsync(string path)
    {
        await Page.GotoAsync(path);
        await Page.Locator("body[data-ready='true']").WaitForAsync();
    }

    public async Task ReloadAsync()
    {
        await Page.ReloadAsync();
        await Page.Locator("body[data-ready='true']").WaitForAsync();
    }

    /// <summary>Picks a model, types a message and presses Enter.</summary>
    public async Task SendAsync(string text, string? model = null)
    {
        if (model is not null)
        {
            await Model.SelectOptionAsync(model);
        }

        await Prompt.FillAsync(text);
        await Prompt.PressAsync("Enter");
    }

    /// <summary>Waits until the last answer is in <paramref name="state"/> (done, stopped, error, streaming).</summary>
    public Task WaitForLastAnswerAsync(string state, float timeoutMs = 15_000) =>
        Page.Locator($"#messages li.assistant:last-child[data-state='{state}']").WaitForAsync(new() { Timeout = timeoutMs });

    /// <summary>The conversation the page shows (null for a new chat).</summary>
    public Task<string?> SessionIdAsync() => Page.EvaluateAsync<string?>("() => window.sluiceChat.state.sessionId");

    /// <summary>The page's own Markdown rendering of a text (to compare with what it shows).</summary>
    /// <summary>
    /// The page's rendering of <paramref name="markdown"/> as the DOM serializes it (so <c>&amp;#39;</c> reads back as
    /// <c>'</c>, exactly as <c>innerHTML</c> of a rendered message does).
    /// </summary>
    public Task<string> RenderAsync(string markdown) =>
        Page.EvaluateAsync<string>(
            "text => { const box = document.createElement('div'); box.innerHTML = window.sluiceChat.renderMarkdown(text); return box.innerHTML; }",
            markdown);

    public async ValueTask DisposeAsync() => await Context.CloseAsync();
}
