using Microsoft.Extensions.AI;
using Sluice.Client;

namespace Sluice.Samples;

/// <summary>
/// What every example gets: where the gateway is, the model, and where to write. Tests fill in a seed, fault
/// switches and tighter limits; from the command line they stay unset.
/// </summary>
public sealed class SampleContext
{
    /// <summary>The gateway, e.g. <c>http://127.0.0.1:8080</c>.</summary>
    public Uri Endpoint { get; init; } = new("http://127.0.0.1:8080");

    /// <summary>The team's virtual key, when the gateway requires one.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The model; null for the gateway's default.</summary>
    public string? Model { get; init; }

    /// <summary>Where answers go.</summary>
    public TextWriter Output { get; init; } = Console.Out;

    /// <summary>Where the interactive example reads from.</summary>
    public TextReader Input { get; init; } = Console.In;

    /// <summary>Makes simulated answers reproducible (tests).</summary>
    public long? Seed { get; init; }

    /// <summary>Request metadata, e.g. the simulation's fault switches (tests).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Applied after an example's own client settings (tests shorten limits with it).</summary>
    public Action<SluiceClientOptions>? ConfigureClient { get; init; }

    /// <summary>
    /// Whether the examples follow the SaaS flow (a job per run, credits at the end): when the key is a team's virtual
    /// key, <c>sk-sluice-…</c> — what <c>init</c> prints.
    /// </summary>
    public bool UsesJobs => ApiKey?.StartsWith("sk-sluice-", StringComparison.Ordinal) == true;

    /// <summary>A client for the gateway; <paramref name="configure"/> is the example's own settings.</summary>
    public SluiceChatClient CreateClient(Action<SluiceClientOptions>? configure = null) => new(ClientOptions(configure));

    /// <summary>The client options: endpoint, key and model, then the example's settings, then the tests'.</summary>
    public SluiceClientOptions ClientOptions(Action<SluiceClientOptions>? configure = null)
    {
        var options = new SluiceClientOptions { Endpoint = Endpoint, ApiKey = ApiKey, DefaultModel = Model };
        configure?.Invoke(options);
        ConfigureClient?.Invoke(options);
        return options;
    }

    /// <summary>Chat options with the model, seed and metadata filled in.</summary>
    public ChatOptions NewOptions(int? maxOutputTokens = null)
    {
        var options = new ChatOptions { ModelId = Model, Seed = Seed, MaxOutputTokens = maxOutputTokens };
        if (Metadata is { Count: > 0 })
        {
            options.AdditionalProperties = new AdditionalPropertiesDictionary { ["metadata"] = new Dictionary<string, string>(Metadata) };
        }

        return options;
    }
}
