using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Sluice.Gateway.Accounting;
using Sluice.Protocol.Sse;
using static Sluice.Client.Tests.Streams;

namespace Sluice.Client.Tests;

/// <summary>
/// <see cref="SluiceChatClient"/> resuming against the REAL gateway's <c>GET /v1/streams/{id}</c>, through a proxy
/// that forwards the gateway's bytes and resets the client's connection mid-answer (and drops its own upstream
/// connection, so the gateway really loses its client).
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class GatewayResumeTests(GatewayFixture gateway)
{
    [Fact]
    public async Task A_cut_stream_resumes_on_the_real_gateway_with_the_same_text_and_is_billed_once()
    {
        const string prompt = "Tell me a long story about rivers";
        var expected = await gateway.CompleteAsync(GatewayFixture.BriskModel, prompt, 40, 23);
        var totals = gateway.Gateway.GetRequiredService<UsageTotals>();
        await using var proxy = await CuttingProxy.StartAsync(gateway.Url, cutAfter: 6);
        using var client = new SluiceChatClient(new SluiceClientOptions
        {
            Endpoint = proxy.Url,
            DefaultModel = GatewayFixture.BriskModel,
            RetryDelay = TimeSpan.FromMilliseconds(20),
        });
        var before = totals.Requests;

        var updates = await CollectAsync(client.GetStreamingResponseAsync(User(prompt), new ChatOptions { MaxOutputTokens = 40, Seed = 23 }));

        Assert.Equal(expected, Text(updates));
        Assert.Equal(["6"], proxy.ResumedFrom);
        Assert.Single(updates, u => u.FinishReason == ChatFinishReason.Length);
        await Task.Delay(200);
        Assert.Equal(before + 1, totals.Requests);
    }

    /// <summary>Forwards to the gateway event by event; resets the first POST's connection after N events.</summary>
    private sealed class CuttingProxy : IAsyncDisposable
    {
        private readonly Uri _gateway;
        private readonly int _cutAfter;
        private readonly HttpClient _http = new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { Timeout = TimeSpan.FromSeconds(30) };
        private ScriptedServer? _server;

        private CuttingProxy(Uri gateway, int cutAfter)
        {
            _gateway = gateway;
            _cutAfter = cutAfter;
        }

        public Uri Url => _server!.Url;

        public List<string?> ResumedFrom { get; } = [];

        public static async Task<CuttingProxy> StartAsync(Uri gateway, int cutAfter)
        {
            var proxy = new CuttingProxy(gateway, cutAfter);
            proxy._server = await ScriptedServer.StartAsync(app =>
            {
                app.MapPost("/v1/chat/completions", proxy.ChatAsync);
                app.MapGet("/v1/streams/{id}", proxy.ResumeAsync);
            });
            return proxy;
        }

        public async ValueTask DisposeAsync()
        {
            _http.Dispose();
            if (_server is not null)
            {
                await _server.DisposeAsync();
            }
        }

        private async Task ChatAsync(HttpContext context)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_gateway, "v1/chat/completions"))
            {
                Content = new StreamContent(context.Request.Body),
            };
            request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");

            // The client's opt-in to resume must reach the gateway, or the gateway stops generating when we cut.
            Assert.Equal("on", context.Request.Headers[SluiceClientOptions.ResumeHeader].ToString());
            request.Headers.TryAddWithoutValidation(SluiceClientOptions.ResumeHeader, context.Request.Headers[SluiceClientOptions.ResumeHeader].ToString());
            await ForwardAsync(context, request, _cutAfter);
        }

        private async Task ResumeAsync(HttpContext context, string id)
        {
            var lastEventId = context.Request.Headers["Last-Event-ID"].FirstOrDefault();
            lock (ResumedFrom)
            {
                ResumedFrom.Add(lastEventId);
            }

            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_gateway, $"v1/streams/{id}"));
            if (lastEventId is not null)
            {
                request.Headers.TryAddWithoutValidation("Last-Event-ID", lastEventId);
            }

            await ForwardAsync(context, request, int.MaxValue);
        }

        private async Task ForwardAsync(HttpContext context, HttpRequestMessage request, int cutAfter)
        {
            var upstream = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted);
            try
            {
                if (upstream.StatusCode != HttpStatusCode.OK)
                {
                    context.Response.StatusCode = (int)upstream.StatusCode;
                    context.Response.ContentType = "application/json";
                    await context.Response.WriteAsync(await upstream.Content.ReadAsStringAsync(context.RequestAborted), context.RequestAborted);
                    return;
                }

                context.Response.Headers["x-sluice-stream-id"] = upstream.Headers.GetValues("x-sluice-stream-id").Single();
                ScriptedServer.StartStream(context);
                var sent = 0;
                await foreach (var e in SseReader.ReadAsync(await upstream.Content.ReadAsStreamAsync(context.RequestAborted), cancellationToken: context.RequestAborted))
                {
                    await ScriptedServer.WriteEventAsync(context, e.DataText, e.LastEventId is null ? -1 : long.Parse(e.LastEventId, System.Globalization.CultureInfo.InvariantCulture));
                    if (++sent == cutAfter)
                    {
                        // Both legs break: the gateway loses its client and the client its connection.
                        upstream.Dispose();
                        await Task.Delay(150, context.RequestAborted);
                        context.Abort();
                        return;
                    }
                }
            }
            finally
            {
                upstream.Dispose();
            }
        }
    }
}
