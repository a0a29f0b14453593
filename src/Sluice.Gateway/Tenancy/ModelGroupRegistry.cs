using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Sluice.Providers;
using Sluice.Providers.Routing;
using Sluice.Storage;

namespace Sluice.Gateway.Tenancy;

/// <summary>
/// Makes model groups created through the API routable: stored groups are registered in the
/// <see cref="ModelCatalog"/> at start-up and when created here; a name the catalog does not know is looked up
/// in the store once (so a group created through another gateway process works here too), and misses are
/// remembered for a few seconds so unknown names do not each cost a query — on PostgreSQL a group created anywhere
/// clears its miss at once (change notifications, <see cref="Cluster.ClusterNode"/>).
/// </summary>
internal sealed partial class ModelGroupRegistry(ModelCatalog catalog, TenancyRuntime runtime, ILogger<ModelGroupRegistry> logger)
{
    private const long MissMemoryMs = 5_000;
    private const int MaxMisses = 10_000;
    private readonly ConcurrentDictionary<string, long> _misses = new(StringComparer.Ordinal);

    /// <summary>Registers every stored group (a group whose models are no longer served is skipped with a warning).</summary>
    public async Task LoadAllAsync(CancellationToken cancellationToken)
    {
        foreach (var group in await runtime.Store.ListModelGroupsAsync(cancellationToken))
        {
            TryRegister(group);
        }
    }

    /// <summary>The model, alias or group with this name, configured or stored; <see langword="null"/> when there is none.</summary>
    public async ValueTask<ModelEntry?> ResolveAsync(string name, CancellationToken cancellationToken)
    {
        if (catalog.TryGet(name, out var entry))
        {
            return entry;
        }

        var now = Environment.TickCount64;
        if (_misses.TryGetValue(name, out var until) && until > now)
        {
            return null;
        }

        var group = await runtime.Store.GetModelGroupAsync(name, cancellationToken);
        if (group is not null && TryRegister(group) is { } registered)
        {
            _misses.TryRemove(name, out _);
            return registered;
        }

        if (_misses.Count >= MaxMisses)
        {
            _misses.Clear();
        }

        _misses[name] = now + MissMemoryMs;
        return null;
    }

    /// <summary>Forgets that <paramref name="name"/> was unknown (a group of that name was created, maybe elsewhere).</summary>
    public void ForgetMiss(string name) => _misses.TryRemove(name, out _);

    /// <summary>Forgets every remembered unknown name.</summary>
    public void ForgetMisses() => _misses.Clear();

    /// <summary>Checks a new group against the catalog without registering it (throws <see cref="ModelConfigurationException"/>).</summary>
    public void Validate(NewModelGroup group) => catalog.ValidateGroup(ToOptions(group.Name, group.Models, group.Description));

    /// <summary>Registers a group just stored.</summary>
    public ModelEntry Register(ModelGroup group)
    {
        _misses.TryRemove(group.Name, out _);
        return catalog.AddGroup(ToOptions(group.Name, group.Models, group.Description));
    }

    private ModelEntry? TryRegister(ModelGroup group)
    {
        try
        {
            return catalog.AddGroup(ToOptions(group.Name, group.Models, group.Description));
        }
        catch (ModelConfigurationException ex)
        {
            LogSkipped(logger, group.Name, ex.Message);
            return null;
        }
    }

    private static ModelGroupOptions ToOptions(string name, IReadOnlyList<string> models, string? description) =>
        new() { Name = name, Models = [.. models], Description = description };

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stored model group {Group} cannot be served: {Reason}")]
    private static partial void LogSkipped(ILogger logger, string group, string reason);
}
