using System.Text.Json;
using Sluice.Protocol.Sse;

namespace Sluice.Testing;

/// <summary>Reads a whole SSE response in tests, keeping comments and arrival times.</summary>
public static class SseTestClient
{
    /// <summary>Reads every event and comment from <paramref name="response"/>.</summary>
    public static async Task<List<SseEvent>> ReadAllAsync(HttpResponseMessage response, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var events = new List<SseEvent>();
        await foreach (var e in SseReader.ReadAsync(stream, surfaceComments: true, cancellationToken))
        {
            events.Add(e);
        }

        return events;
    }

    /// <summary>Parses an event's data as JSON.</summary>
    public static JsonElement Json(this SseEvent sseEvent)
    {
        ArgumentNullException.ThrowIfNull(sseEvent);
        using var document = JsonDocument.Parse(sseEvent.Data);
        return document.RootElement.Clone();
    }
}
