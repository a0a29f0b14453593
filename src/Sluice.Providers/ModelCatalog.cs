using System.Collections.Frozen;
using Sluice.Providers.Simulation;

namespace Sluice.Providers;

/// <summary>A model the gateway can serve.</summary>
/// <param name="Name">The name clients use.</param>
/// <param name="Options">Its configuration.</param>
/// <param name="Backend">What produces its answers.</param>
public sealed record ModelEntry(string Name, ModelOptions Options, IChatBackend Backend)
{
    /// <summary>The <c>owned_by</c> value in <c>/v1/models</c>.</summary>
    public string OwnedBy => Options.Provider == SimulatedChatBackend.ProviderName ? "sluice-simulation" : Options.Provider;
}

/// <summary>The models a gateway serves, looked up by name without locks.</summary>
public sealed class ModelCatalog
{
    private readonly FrozenDictionary<string, ModelEntry> _byName;

    /// <summary>Builds the catalog; with no configured models, the built-in simulated ones are offered.</summary>
    /// <exception cref="ModelConfigurationException">An entry is invalid; the message names it and the fix.</exception>
    public ModelCatalog(IReadOnlyList<ModelOptions>? configured)
    {
        var options = configured is { Count: > 0 } ? configured : BuiltInModels.All;
        var entries = new List<ModelEntry>(options.Count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Count; i++)
        {
            var model = options[i];
            if (string.IsNullOrWhiteSpace(model.Name))
            {
                throw new ModelConfigurationException($"Models[{i}] has no Name. Give it the name clients will ask for, e.g. \"Name\": \"my-model\".");
            }

            if (!seen.Add(model.Name))
            {
                throw new ModelConfigurationException($"Models[{i}] repeats the name \"{model.Name}\". Each model needs a unique Name; rename or remove one of them.");
            }

            entries.Add(new ModelEntry(model.Name, model, CreateBackend(model, i)));
        }

        Models = entries;
        _byName = entries.ToFrozenDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>All models, in configuration order.</summary>
    public IReadOnlyList<ModelEntry> Models { get; }

    /// <summary>Finds a model by exact name.</summary>
    public bool TryGet(string name, out ModelEntry entry) => _byName.TryGetValue(name, out entry!);

    private static IChatBackend CreateBackend(ModelOptions model, int index) =>
        model.Provider switch
        {
            SimulatedChatBackend.ProviderName => new SimulatedChatBackend(model),
            _ => throw new ModelConfigurationException(
                $"Models[{index}] (\"{model.Name}\") has unknown Provider \"{model.Provider}\". Use \"sim\" for a simulated model."),
        };
}

/// <summary>The model configuration is invalid; the message names the entry and the fix.</summary>
public sealed class ModelConfigurationException(string message) : Exception(message);
