using System.Net;
using Microsoft.Playwright;

namespace Sluice.WebChat.Tests;

/// <summary>The web chat against a gateway with a master key: the page is public, the API needs the key.</summary>
public sealed class MasterKeyTests(MasterKeyHarness harness) : IClassFixture<MasterKeyHarness>
{
    [Fact]
    public async Task The_page_is_outside_the_key_guard_but_the_api_is_not()
    {
        using var page = await harness.Http.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        using var script = await harness.Http.GetAsync("/webchat/app.js");
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        using var models = await harness.Http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
    }

    [Fact]
    public async Task Without_a_key_the_page_says_what_is_missing()
    {
        await using var chat = await harness.OpenAsync();
        var notice = chat.Page.Locator("#notice");
        await Assertions.Expect(notice).ToBeVisibleAsync();
        await Assertions.Expect(notice).ToContainTextAsync("requires an API key");
        Assert.False(await chat.Model.IsEnabledAsync());
    }

    [Fact]
    public async Task A_bad_key_is_reported_in_place_and_the_right_key_is_kept_in_the_browser_and_sent_as_bearer()
    {
        await using var chat = await harness.OpenAsync(apiKey: "sk-wrong");
        await Assertions.Expect(chat.Page.Locator("#notice")).ToContainTextAsync("The API key is not valid");

        // Sending anyway: the server's 401 message lands in the answer bubble.
        await chat.SendAsync("Hello?");
        await chat.WaitForLastAnswerAsync("error");
        await Assertions.Expect(chat.LastAnswer.Locator(".error")).ToContainTextAsync("The API key is not valid");

        // The right key: models load, it is stored in localStorage only, and every API call carries it.
        var key = chat.Page.GetByLabel("API key");
        await key.FillAsync(MasterKeyHarness.Key);
        await key.PressAsync("Tab");
        await Assertions.Expect(chat.Model).ToBeEnabledAsync();
        await Assertions.Expect(chat.Page.Locator("#notice")).ToBeHiddenAsync();
        Assert.Equal(MasterKeyHarness.Key, await chat.Page.EvaluateAsync<string>("() => localStorage.getItem('sluice.apiKey')"));

        await chat.SendAsync("Hello again", "sim-fast");
        await chat.WaitForLastAnswerAsync("done");
        var stream = chat.Requests.Last(r => r.Url.EndsWith("/api/llm/chat/session/stream", StringComparison.Ordinal));
        Assert.Equal("Bearer " + MasterKeyHarness.Key, stream.Headers["authorization"]);

        // A reload keeps the key; the page itself is fetched without it.
        await chat.ReloadAsync();
        Assert.Equal(MasterKeyHarness.Key, await key.InputValueAsync());
        await Assertions.Expect(chat.Model).ToBeEnabledAsync();
        Assert.All(
            chat.Requests.Where(r => !new Uri(r.Url).AbsolutePath.StartsWith("/v1/", StringComparison.Ordinal) && !new Uri(r.Url).AbsolutePath.StartsWith("/api/", StringComparison.Ordinal)),
            r => Assert.False(r.Headers.ContainsKey("authorization"), r.Url));
    }
}
