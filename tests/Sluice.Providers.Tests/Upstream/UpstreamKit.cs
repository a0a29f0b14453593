using System.Text;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Protocol.Sse;
using Sluice.Testing;

namespace Sluice.Providers.Tests.Upstream;

/// <summary>A fake upstream plus a catalog whose one model points at it.</summary>
internal sealed class UpstreamRig : IAsyncDisposable
{
    private UpstreamRig(ReplayUpstream upstream, ModelCatalog catalog)
    {
        Upstream = upstream;
        Catalog = catalog;
    }

    public ReplayUpstream Upstream { get; }

    public ModelCatalog Catalog { get; }

    public IChatBackend Backend => Catalog.Models[0].Backend;

    public ModelOptions Options => Catalog.Models[0].Options;

    public static async Task<UpstreamRig> StartAsync(string provider, ReplayUpstream upstream, Action<ModelOptions>? configure = null)
    {
        var options = new ModelOptions
        {
            Name = "test-model",
            Provider = provider,
            BaseUrl = provider == "ollama" ? upstream.BaseUrl : upstream.BaseUrl + "/v1",
            UpstreamModel = "upstream-model",
            FirstTokenTimeoutMs = 10_000,
            IdleTimeoutMs = 10_000,
            TotalTimeoutMs = 30_000,
        };
        configure?.Invoke(options);
        try
        {
            return new UpstreamRig(upstream, new ModelCatalog([options]));
        }
        catch
        {
            await upstream.DisposeAsync();
            throw;
        }
    }

    public static async Task<UpstreamRig> ReplayAsync(
        string provider,
        string fixture,
        ReplayChunking chunking = ReplayChunking.PerEvent,
        int status = 200,
        Action<ModelOptions>? configure = null) =>
        await StartAsync(provider, await ReplayUpstream.StartAsync(Fixtures.Read(fixture), status: status, chunking: chunking), configure);

    public Task<List<ChatStreamEvent>> CollectAsync(ChatRequest? request = null) =>
        UpstreamKit.CollectAsync(Backend, request ?? UpstreamKit.Request(UpstreamKit.SimpleRequest));

    public async ValueTask DisposeAsync()
    {
        Catalog.Dispose();
        await Upstream.DisposeAsync();
    }
}

internal static class UpstreamKit
{
    public const string SimpleRequest = """{"model":"test-model","messages":[{"role":"user","content":"Hello"}],"stream":true}""";

    public static ChatRequest Request(string json) => ChatRequestParser.Parse(Encoding.UTF8.GetBytes(json));

    /// <summary>Runs a backend stream to its end (bounded at 20 s, so a hang fails instead of blocking).</summary>
    public static async Task<List<ChatStreamEvent>> CollectAsync(IChatBackend backend, ChatRequest request, ChatCallOptions? options = null)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var events = new List<ChatStreamEvent>();
        await foreach (var e in backend.StreamAsync(request, options, timeout.Token))
        {
            events.Add(e);
        }

        return events;
    }

    /// <summary>Collects events until the stream fails; returns them with the failure (null if it ended normally).</summary>
    public static async Task<(List<ChatStreamEvent> Events, Exception? Failure)> CollectUntilFailureAsync(IChatBackend backend, ChatRequest request)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var events = new List<ChatStreamEvent>();
        try
        {
            await foreach (var e in backend.StreamAsync(request, timeout.Token))
            {
                events.Add(e);
            }
        }
        catch (Exception ex) when (!timeout.IsCancellationRequested)
        {
            return (events, ex);
        }

        return (events, null);
    }

    public static ChatCompletionAccumulator Assemble(IEnumerable<ChatStreamEvent> events)
    {
        var accumulator = new ChatCompletionAccumulator();
        foreach (var e in events)
        {
            accumulator.Add(e);
        }

        return accumulator;
    }

    /// <summary>
    /// The data values of a recording's SSE events, parsed by Sluice's browser-side SSE parser. With
    /// <paramref name="includeUnterminated"/>, a last event the recording did not end with a blank line counts too.
    /// </summary>
    public static List<byte[]> DataPayloads(byte[] recording, bool includeUnterminated = false)
    {
        var parser = new SseParser();
        var events = new List<SseEvent>();
        parser.Feed(recording, events);
        if (includeUnterminated)
        {
            parser.Feed("\n\n"u8, events);
        }

        parser.Complete(events);
        return [.. events.Select(e => e.Data.ToArray())];
    }

    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}
