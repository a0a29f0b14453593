using Sluice.Gateway.Tenancy;
using Sluice.Providers;

namespace Sluice.Gateway.Calls;

/// <summary>
/// The one model resolver every entry point uses: configured models, aliases and groups, and groups created through
/// the API on any gateway process sharing the store (<see cref="ModelGroupRegistry"/>). Dialect spellings are
/// normalised here (Ollama's <c>name:latest</c> also finds <c>name</c>), so no transport keeps its own lookup.
/// </summary>
internal sealed class ModelResolver(ModelCatalog catalog, ModelGroupRegistry groups)
{
    private const string LatestTag = ":latest";

    /// <summary>The model for <paramref name="name"/>, or the catalog's first (default) model when it is empty.</summary>
    /// <exception cref="Sluice.Protocol.ChatException">404 <c>model_not_found</c>, naming where the dialect lists models.</exception>
    public async ValueTask<ModelEntry> ResolveAsync(string name, CallDialect dialect, CancellationToken cancellationToken)
    {
        if (name.Length == 0)
        {
            return catalog.Models[0];
        }

        if (await groups.ResolveAsync(name, cancellationToken) is { } entry)
        {
            return entry;
        }

        if (dialect.AcceptsLatestTag && name.EndsWith(LatestTag, StringComparison.Ordinal) && name.Length > LatestTag.Length
            && await groups.ResolveAsync(name[..^LatestTag.Length], cancellationToken) is { } untagged)
        {
            return untagged;
        }

        throw SluiceErrors.ModelNotFound(name, dialect.ModelListing);
    }

    /// <summary>Finds a configured model, alias or group, or a group created through the API, by its exact name.</summary>
    public bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ModelEntry? model)
    {
        if (catalog.TryGet(name, out var entry))
        {
            model = entry;
            return true;
        }

        model = null;
        return false;
    }

    /// <summary>Every model a caller could name now: configured ones first, then groups created through the API.</summary>
    public IEnumerable<ModelEntry> All => catalog.Models.Concat(catalog.RuntimeGroupEntries);

    /// <summary>
    /// The backend that would answer first for <paramref name="model"/> (aliases and groups: their first member, the one
    /// that answers when nothing fails), or null when it cannot be found.
    /// </summary>
    public IChatBackend? FirstSource(ModelEntry model)
    {
        // The catalog rejects cycles; the depth bound only guards against a future catalog that does not.
        for (var depth = 0; depth < 16; depth++)
        {
            if (model.Source is { } source)
            {
                return source;
            }

            if (model.Members.Count == 0 || !catalog.TryGet(model.Members[0], out model))
            {
                return null;
            }
        }

        return null;
    }
}
