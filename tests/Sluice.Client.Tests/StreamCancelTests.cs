using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using static Sluice.Client.Tests.Streams;

namespace Sluice.Client.Tests;

/// <summary>
/// A caller that leaves a resumable stream before its end tells the server to stop generating
/// (<c>DELETE /v1/streams/{id}</c>) — also when it disposes the client right away.
/// </summary>
public sealed class StreamCancelTests
{
    [Fact]
    public async Task Leaving_a_stream_and_disposing_the_client_at_once_still_stops_the_servers_generation()
    {
        var deletes = new ConcurrentQueue<string>();
        await using var server = await ScriptedServer.StartAsync(app =>
        {
            app.MapPost("/v1/chat/completions", async (HttpContext context) =>
            {
                context.Response.Headers["x-sluice-stream-id"] = "strm_leaving";
                ScriptedServer.StartStream(context);
                await ScriptedServer.WriteEventAsync(context, ScriptedServer.TextChunk("Once"), id: 1);
                try
                {
                    await Task.Delay(Timeout.Infinite, context.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    // The client left.
                }
            });

            // Slow on purpose: the request must have arrived, and been answered, before Dispose returns.
            app.MapDelete("/v1/streams/{id}", async (string id) =>
            {
                deletes.Enqueue(id);
                await Task.Delay(100);
                return Results.Json(new { id, cancelled = true });
            });
        });

        var trace = new RecordingTrace();
        var client = new SluiceChatClient(new SluiceClientOptions { Endpoint = server.Url, Trace = trace });
        await foreach (var update in client.GetStreamingResponseAsync(User("Tell me a story")))
        {
            Assert.Equal("Once", update.Text);
            break;
        }

        client.Dispose();

        // The request arrived and its answer came back before Dispose returned (disposing first would have cut it).
        Assert.Equal(["strm_leaving"], deletes);
        Assert.Equal((HttpMethod.Delete, "/v1/streams/strm_leaving"), (trace.Requests.Last().Method, trace.Requests.Last().Url.AbsolutePath));
        Assert.Equal([200, 200], trace.Statuses);
    }
}
