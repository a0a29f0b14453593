using System.Text;
using System.Text.Json;

namespace Sluice.WebChat.Tests;

/// <summary>A real browser <c>EventSource</c> on <c>GET /v1/streams/{id}</c>.</summary>
public sealed class EventSourceTests(ChatHarness harness) : IClassFixture<ChatHarness>
{
    [Fact]
    public async Task EventSource_reads_a_finished_stream_once_then_stops_reconnecting_on_the_204()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent("""{"model": "sim-fast", "prompt": "Tell me about lighthouses", "stream": true, "max_tokens": 5}""", Encoding.UTF8, "application/json"),
        };
        using var response = await harness.Http.SendAsync(request);
        var streamId = response.Headers.GetValues("x-sluice-stream-id").Single();
        var frames = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Count(f => f.StartsWith("id: ", StringComparison.Ordinal));

        await using var chat = await harness.OpenAsync();

        // The browser reconnects about 3 s after the replay ends, with Last-Event-ID = the last id: the 204 closes it.
        // Watched for 9 s: a 200 with an empty body would have it reconnecting (and opening) again and again.
        var seen = await chat.Page.EvaluateAsync<JsonElement>(
            """
            (url) => new Promise(resolve => {
              const es = new EventSource(url);
              const seen = { opens: 0, messages: 0, closed: false, lastEventId: '' };
              es.onopen = () => seen.opens++;
              es.onmessage = e => { seen.messages++; seen.lastEventId = e.lastEventId; };
              es.onerror = () => { if (es.readyState === EventSource.CLOSED) { seen.closed = true; resolve(seen); } };
              setTimeout(() => { es.close(); resolve(seen); }, 9000);
            })
            """,
            $"/v1/streams/{streamId}");

        Assert.True(seen.GetProperty("closed").GetBoolean(), $"EventSource did not stop: {seen}");
        Assert.Equal(1, seen.GetProperty("opens").GetInt32());
        Assert.Equal(frames, seen.GetProperty("messages").GetInt32());
        Assert.Equal(frames.ToString(System.Globalization.CultureInfo.InvariantCulture), seen.GetProperty("lastEventId").GetString());
    }
}
