using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Sluice.Testing;

namespace Sluice.Cli.Tests;

/// <summary>
/// <c>sluice chat</c> against a scripted server that misbehaves in ways the gateway never does (and that shows
/// what the client sent), chosen by the requested model name.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ChatAgainstScriptedServerTests : IAsyncLifetime
{
    private WebApplication? _app;
    private string _url = string.Empty;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        _app.MapPost("/v1/chat/completions", HandleAsync);
        await _app.StartAsync();
        _url = _app.Urls.First();
    }

    public async Task DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public async Task Api_key_option_is_sent_as_a_bearer_token()
    {
        var result = await CliProcess.RunAsync(["chat", "Hi", "--url", _url, "--model", "echo-auth", "--api-key", "key-from-option"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("Bearer key-from-option\n", result.Stdout);
    }

    [Fact]
    public async Task Api_key_comes_from_SLUICE_API_KEY_when_no_option_is_given()
    {
        var result = await CliProcess.RunAsync(
            ["chat", "Hi", "--url", _url, "--model", "echo-auth"],
            environment: new Dictionary<string, string> { ["SLUICE_API_KEY"] = "key-from-env" });

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("Bearer key-from-env\n", result.Stdout);
    }

    [Fact]
    public async Task Stream_that_ends_without_done_exits_13_and_counts_deltas_without_usage()
    {
        var result = await CliProcess.RunAsync(["chat", "Hi", "--url", _url, "--model", "no-done", "--json"]);

        Assert.Equal(13, result.ExitCode);
        Assert.Equal("Half an answer\n", result.Stdout);
        using var stats = JsonDocument.Parse(Assert.Single(result.StderrLines));
        Assert.Equal(3, stats.RootElement.GetProperty("tokens").GetInt32());
        Assert.Equal("deltas", stats.RootElement.GetProperty("tokens_source").GetString());
        Assert.Equal("mid_stream", stats.RootElement.GetProperty("error").GetProperty("kind").GetString());
        Assert.Contains("[DONE]", stats.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Response_that_is_not_an_event_stream_exits_12()
    {
        var result = await CliProcess.RunAsync(["chat", "Hi", "--url", _url, "--model", "not-sse"]);

        Assert.Equal(12, result.ExitCode);
        Assert.Contains("instead of an event stream", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Silence_after_the_first_token_longer_than_the_idle_timeout_exits_14()
    {
        var config = Path.Combine(Path.GetTempPath(), $"sluice-chat-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(config, """{ "IdleTimeoutSeconds": 0.5 }""");
        try
        {
            var result = await CliProcess.RunAsync(["chat", "Hi", "--url", _url, "--model", "goes-silent", "--config", config]);

            Assert.Equal(14, result.ExitCode);
            Assert.Equal("Hello\n", result.Stdout);
            Assert.Contains("went silent for 0.5 s (IdleTimeoutSeconds)", result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Keep_alive_comments_count_as_life_for_the_idle_timeout_and_show_in_debug()
    {
        var config = Path.Combine(Path.GetTempPath(), $"sluice-chat-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(config, """{ "IdleTimeoutSeconds": 1.5 }""");
        try
        {
            // 2.5 s without tokens, but a ping every 0.2 s: the stream is alive, not idle — with or without --debug.
            var plain = await CliProcess.RunAsync(["chat", "Hi", "--url", _url, "--model", "pings", "--config", config]);
            var debug = await CliProcess.RunAsync(["chat", "Hi", "--url", _url, "--model", "pings", "--config", config, "--debug"]);

            Assert.True(plain.ExitCode == 0, plain.ToString());
            Assert.Equal("Hello world\n", plain.Stdout);
            Assert.True(debug.ExitCode == 0, debug.ToString());
            Assert.Equal(12, debug.StderrLines.Count(l => l == "[sse] : ping"));
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Empty_prompt_exits_2_without_sending_anything()
    {
        var result = await CliProcess.RunAsync(["chat", "   ", "--url", _url, "--debug"]);

        Assert.Equal(2, result.ExitCode);
        Assert.DoesNotContain("[http]", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("the prompt is empty", result.Stderr, StringComparison.Ordinal);
    }

    private static async Task HandleAsync(HttpContext context)
    {
        using var request = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        var model = request.RootElement.GetProperty("model").GetString();
        var response = context.Response;
        if (model == "not-sse")
        {
            response.ContentType = "application/json";
            await response.WriteAsync("{}", context.RequestAborted);
            return;
        }

        response.ContentType = "text/event-stream";
        switch (model)
        {
            case "echo-auth":
                await WriteChunkAsync(context, context.Request.Headers.Authorization.ToString());
                await ReplayUpstream.WriteFlushedAsync(context, "data: [DONE]\n\n");
                break;
            case "no-done":
                await WriteChunkAsync(context, "Half");
                await WriteChunkAsync(context, " an");
                await WriteChunkAsync(context, " answer");
                break;
            case "pings":
                await WriteChunkAsync(context, "Hello");
                for (var i = 0; i < 12; i++)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(200), context.RequestAborted);
                    await ReplayUpstream.WriteFlushedAsync(context, ": ping\n\n");
                }

                await WriteChunkAsync(context, " world");
                await ReplayUpstream.WriteFlushedAsync(context, "data: [DONE]\n\n");
                break;
            case "goes-silent":
                await WriteChunkAsync(context, "Hello");
                await Task.Delay(TimeSpan.FromSeconds(20), context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                break;
        }
    }

    private static Task WriteChunkAsync(HttpContext context, string content) =>
        ReplayUpstream.WriteFlushedAsync(context, "data: " + JsonSerializer.Serialize(new { model = "scripted", choices = new[] { new { index = 0, delta = new { content } } } }) + "\n\n");

}
