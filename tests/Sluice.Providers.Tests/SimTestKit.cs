using System.Text;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers.Simulation;

namespace Sluice.Providers.Tests;

/// <summary>Builds requests for the simulated model and drains its streams, bounded in time.</summary>
internal static class SimTestKit
{
    /// <summary>Generous upper bound for anything that should finish at once.</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    public static SimulatedChatBackend Backend(Action<ModelOptions>? configure = null)
    {
        var options = BuiltInModels.Fast;
        configure?.Invoke(options);
        return new SimulatedChatBackend(options);
    }

    public static ChatRequest Request(
        string prompt,
        int? maxTokens = null,
        long? seed = null,
        IReadOnlyList<string>? stop = null,
        IReadOnlyDictionary<string, string>? metadata = null) => new()
        {
            Model = "sim-fast",
            Messages = [new ChatMessage(ChatRoles.User, prompt)],
            MaxTokens = maxTokens,
            Seed = seed,
            Stop = stop,
            Metadata = metadata,
        };

    /// <summary>Parses a JSON body, for requests with tools.</summary>
    public static ChatRequest Parse(string json) => ChatRequestParser.Parse(Encoding.UTF8.GetBytes(json));

    public static async Task<List<ChatStreamEvent>> CollectAsync(IChatBackend backend, ChatRequest request, CancellationToken cancellationToken = default)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(Bound);
        var events = new List<ChatStreamEvent>();
        await foreach (var e in backend.StreamAsync(request, bound.Token))
        {
            events.Add(e);
        }

        return events;
    }

    /// <summary>Drains the stream until it ends or throws; returns what arrived and the exception.</summary>
    public static async Task<(List<ChatStreamEvent> Events, Exception? Error)> CollectUntilErrorAsync(IChatBackend backend, ChatRequest request)
    {
        using var bound = new CancellationTokenSource(Bound);
        var events = new List<ChatStreamEvent>();
        try
        {
            await foreach (var e in backend.StreamAsync(request, bound.Token))
            {
                events.Add(e);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !bound.IsCancellationRequested)
        {
            return (events, ex);
        }

        return (events, null);
    }

    public static List<string> Deltas(IEnumerable<ChatStreamEvent> events) =>
        events.OfType<TextDeltaEvent>().Select(e => e.Text).ToList();

    public static string Text(IEnumerable<ChatStreamEvent> events) => string.Concat(Deltas(events));

    public static ChatUsage Usage(IEnumerable<ChatStreamEvent> events) => Assert.Single(events.OfType<UsageEvent>()).Usage;

    public static string Finish(IEnumerable<ChatStreamEvent> events) => Assert.Single(events.OfType<FinishEvent>()).Reason;
}
