using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;
using Sluice.Protocol;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary><see cref="ModelOptions.HttpVersion"/>: HTTP/1.1 by default, HTTP/2 (many streams on one connection) when asked.</summary>
public sealed class HttpVersionTests
{
    private const string Head = "data: {\"id\":\"chatcmpl-v\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":";

    private static readonly string Answer =
        Head + "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
        + Head + "{\"content\":\"over \"},\"finish_reason\":null}]}\n\n"
        + Head + "{\"content\":\"the wire\"},\"finish_reason\":null}]}\n\n"
        + Head + "{},\"finish_reason\":\"stop\"}]}\n\n"
        + "data: [DONE]\n\n";

    [Fact]
    public async Task HttpVersion_2_over_http_streams_from_a_server_that_speaks_only_HTTP2_and_shares_one_connection()
    {
        const int Streams = 4;
        var protocols = new ConcurrentBag<string>();
        var arrived = 0;
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await ReplayUpstream.StartHttp2OnlyAsync(async context =>
        {
            protocols.Add(context.Request.Protocol);

            // Every stream is open at once before any is answered: HTTP/1.1 would need a connection for each.
            if (Interlocked.Increment(ref arrived) == Streams)
            {
                all.TrySetResult();
            }

            await all.Task.WaitAsync(TimeSpan.FromSeconds(10), context.RequestAborted);
            await WriteAsync(context, Answer);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, options => options.HttpVersion = "2");

        var answers = await Task.WhenAll(Enumerable.Range(0, Streams).Select(async _ =>
            Assert.Single(UpstreamKit.Assemble(await rig.CollectAsync()).Choices).Content));

        Assert.All(answers, text => Assert.Equal("over the wire", text));
        Assert.Equal(Streams, protocols.Count);
        Assert.All(protocols, protocol => Assert.Equal("HTTP/2", protocol));
        Assert.Single(upstream.Requests.Select(r => r.ConnectionId).Distinct());
    }

    [Fact]
    public async Task Without_HttpVersion_the_upstream_is_asked_in_HTTP11()
    {
        var protocols = new ConcurrentBag<string>();
        await using var upstream = await ReplayUpstream.StartAsync(async context =>
        {
            protocols.Add(context.Request.Protocol);
            await WriteAsync(context, Answer);
        });
        await using var rig = await UpstreamRig.StartAsync("openai", upstream);

        Assert.Equal("over the wire", Assert.Single(UpstreamKit.Assemble(await rig.CollectAsync()).Choices).Content);
        Assert.Equal("HTTP/1.1", Assert.Single(protocols));
    }

    [Fact]
    public async Task HttpVersion_2_against_a_server_without_HTTP2_over_http_is_a_502_that_names_the_setting()
    {
        // Kestrel's default cleartext endpoint speaks HTTP/1.1 only: it cannot take an HTTP/2 connection preface.
        await using var upstream = await ReplayUpstream.StartAsync(context => WriteAsync(context, Answer));
        await using var rig = await UpstreamRig.StartAsync("openai", upstream, options => options.HttpVersion = "2");

        var ex = await Assert.ThrowsAsync<ChatException>(() => rig.CollectAsync());

        Assert.Equal(502, ex.StatusCode);
        Assert.Equal("upstream_unreachable", ex.Error.Code);
        Assert.Contains("HttpVersion \"2\"", ex.Error.Message, StringComparison.Ordinal);
        Assert.Contains("remove HttpVersion", ex.Error.Message, StringComparison.Ordinal);
        Assert.Empty(upstream.Requests);
    }

    [Theory]
    [InlineData("3")]
    [InlineData("2.0")]
    [InlineData("h2")]
    [InlineData("")]
    public void Any_other_HttpVersion_is_refused_naming_the_entry_and_the_choices(string version)
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(
            [new ModelOptions { Name = "gpt", Provider = "openai", BaseUrl = "https://api.openai.com/v1", HttpVersion = version }]));

        Assert.Contains("Models[0] (\"gpt\")", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"HttpVersion \"{version}\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"1.1\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"2\"", ex.Message, StringComparison.Ordinal);
    }

    private static Task WriteAsync(HttpContext context, string text)
    {
        context.Response.ContentType = "text/event-stream";
        return ReplayUpstream.WriteFlushedAsync(context, text);
    }
}
