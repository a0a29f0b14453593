using System.Collections.Frozen;
using Sluice.Providers.Local;
using Sluice.Providers.Routing;
using Sluice.Providers.Simulation;
using Sluice.Providers.Upstream;

namespace Sluice.Providers;

/// <summary>A model (or model group, or alias) the gateway can serve.</summary>
/// <param name="Name">The name clients use.</param>
/// <param name="Options">Its configuration (synthesised for groups).</param>
/// <param name="Backend">What produces its answers, with retries and fallbacks applied.</param>
public sealed record ModelEntry(string Name, ModelOptions Options, IChatBackend Backend)
{
    /// <summary>The <c>Provider</c> value reported for model groups.</summary>
    public const string GroupProvider = "group";

    /// <summary>For a concrete model: its own backend without retries; null for groups and aliases.</summary>
    public IChatBackend? Source { get; init; }

    /// <summary>For groups: the member names in order; for aliases: the target; otherwise empty.</summary>
    public IReadOnlyList<string> Members { get; init; } = [];

    /// <summary>
    /// What makes its embeddings, with retries and fallbacks (for a group or alias: its members that can embed), or null
    /// when it cannot (simulated chat models, Anthropic).
    /// </summary>
    public IEmbeddingBackend? Embeddings { get; init; }

    /// <summary>
    /// Why the model cannot be called (its API key variable is unset, or every member of its group is unavailable),
    /// with what to do; null when it can. Unavailable models are still listed, so clients can see why.
    /// </summary>
    public string? UnavailableReason { get; init; }

    /// <summary>The <c>owned_by</c> value in <c>/v1/models</c>.</summary>
    public string OwnedBy => Options.Provider switch
    {
        SimulatedChatBackend.ProviderName or SimulatedEmbeddingBackend.ProviderName => "sluice-simulation",
        GroupProvider => "sluice-group",
        _ => Options.Provider,
    };
}

/// <summary>
/// The models a gateway serves, looked up by name without locks. Upstream models get their connection pool here,
/// once; dispose the catalog to release them.
/// </summary>
public sealed class ModelCatalog : IDisposable
{
    private readonly FrozenDictionary<string, ModelEntry> _byName;
    private readonly Dictionary<string, (ModelOptions Options, IChatBackend Backend)> _concrete;
    private readonly FrozenDictionary<string, string[]> _resolved;
    private readonly RetryOptions _retry;
    private readonly Action<RetryNotice>? _onRetry;

    // Groups registered at run time (e.g. created through the API): an immutable snapshot replaced atomically,
    // so lookups stay lock-free while a rare writer swaps in a new one.
    private RuntimeGroups _runtime = RuntimeGroups.Empty;

    /// <summary>Builds the catalog; with no configured models, the built-in simulated ones are offered.</summary>
    /// <param name="configured">The <c>Models</c> entries.</param>
    /// <param name="groups">The <c>ModelGroups</c> entries.</param>
    /// <param name="retry">Backoff settings for retries before the first token.</param>
    /// <param name="onRetry">Told about every retry and fallback (for logs).</param>
    /// <exception cref="ModelConfigurationException">An entry is invalid; the message names it and the fix.</exception>
    public ModelCatalog(
        IReadOnlyList<ModelOptions>? configured,
        IReadOnlyList<ModelGroupOptions>? groups = null,
        RetryOptions? retry = null,
        Action<RetryNotice>? onRetry = null)
    {
        retry ??= new RetryOptions();
        _retry = retry;
        _onRetry = onRetry;
        var resolved = new Dictionary<string, string[]>(StringComparer.Ordinal);
        var options = configured is { Count: > 0 } ? configured : BuiltInModels.All;
        groups ??= [];
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Count; i++)
        {
            var model = options[i];
            if (string.IsNullOrWhiteSpace(model.Name))
            {
                throw new ModelConfigurationException($"Models[{i}] has no Name. Give it the name clients will ask for, e.g. \"Name\": \"my-model\".");
            }

            if (!names.Add(model.Name))
            {
                throw new ModelConfigurationException($"Models[{i}] repeats the name \"{model.Name}\". Each model needs a unique Name; rename or remove one of them.");
            }

            if (model.DefaultAnswerTokens < 1 || model.MaxOutputTokens < 1 || model.ContextWindow < 2)
            {
                throw new ModelConfigurationException($"Models[{i}] (\"{model.Name}\") needs DefaultAnswerTokens and MaxOutputTokens of at least 1 and a ContextWindow of at least 2.");
            }
        }

        for (var i = 0; i < groups.Count; i++)
        {
            var group = groups[i];
            if (string.IsNullOrWhiteSpace(group.Name))
            {
                throw new ModelConfigurationException($"ModelGroups[{i}] has no Name. Give it the name clients will ask for.");
            }

            if (!names.Add(group.Name))
            {
                throw new ModelConfigurationException($"ModelGroups[{i}] (\"{group.Name}\") uses a name that a model or another group already has. Names must be unique across Models and ModelGroups.");
            }

            if (group.Models.Count == 0)
            {
                throw new ModelConfigurationException($"ModelGroups[{i}] (\"{group.Name}\") lists no models. Add model names in priority order to its Models list.");
            }
        }

        // Concrete models first: their backends are created once and shared by every route that uses them.
        var concrete = new Dictionary<string, (ModelOptions Options, IChatBackend Backend)>(StringComparer.Ordinal);
        var missingKeys = new List<MissingKey>();
        for (var i = 0; i < options.Count; i++)
        {
            var model = options[i];
            if (model.Target is null)
            {
                var backend = CreateBackend(model, i);

                // A local model is listed with what its file says (context size, description), not the entry's defaults.
                concrete[model.Name] = (backend is LocalChatBackend local ? local.Options : model, backend);
                if (backend is UnavailableChatBackend)
                {
                    missingKeys.Add(new MissingKey(model.Name, MissingVariable(model)!));
                }
            }
        }

        MissingKeys = missingKeys;

        var groupsByName = groups.ToDictionary(g => g.Name, StringComparer.Ordinal);
        var entries = new List<ModelEntry>(options.Count + groups.Count);
        for (var i = 0; i < options.Count; i++)
        {
            var model = options[i];
            if (model.Target is null)
            {
                var (listed, source) = concrete[model.Name];
                entries.Add(new ModelEntry(model.Name, listed, source is UnavailableChatBackend ? source : Route([Candidate(model.Name, concrete)], retry, onRetry))
                {
                    Source = source,
                    UnavailableReason = (source as UnavailableChatBackend)?.Reason,
                    Embeddings = EmbeddingRoute([Candidate(model.Name, concrete)], retry, onRetry),
                });
                resolved[model.Name] = [model.Name];
                continue;
            }

            var members = ResolveTarget(model.Name, model.Target, $"Models[{i}]", concrete, groupsByName, options, [model.Name]);
            resolved[model.Name] = [.. members];
            var (aliasBackend, aliasReason) = RouteAvailable(model.Name, members, concrete, retry, onRetry);
            entries.Add(new ModelEntry(model.Name, model, aliasBackend)
            {
                Members = [model.Target],
                UnavailableReason = aliasReason,
                Embeddings = EmbeddingRoute(members.Select(m => Candidate(m, concrete)).ToList(), retry, onRetry),
            });
        }

        for (var i = 0; i < groups.Count; i++)
        {
            var group = groups[i];
            var members = new List<string>();
            foreach (var member in group.Models)
            {
                members.AddRange(ResolveTarget(group.Name, member, $"ModelGroups[{i}]", concrete, groupsByName, options, [group.Name]));
            }

            resolved[group.Name] = [.. members];
            var first = concrete[members[0]].Options;
            var synthesized = new ModelOptions
            {
                Name = group.Name,
                Provider = ModelEntry.GroupProvider,
                Description = group.Description ?? $"Fallback group: {string.Join(" → ", group.Models)}",
                ContextWindow = first.ContextWindow,
                MaxOutputTokens = first.MaxOutputTokens,
            };
            var (groupBackend, groupReason) = RouteAvailable(group.Name, members, concrete, retry, onRetry);
            entries.Add(new ModelEntry(group.Name, synthesized, groupBackend)
            {
                Members = group.Models,
                UnavailableReason = groupReason,
                Embeddings = EmbeddingRoute(members.Select(m => Candidate(m, concrete)).ToList(), retry, onRetry),
            });
        }

        Models = entries;
        _byName = entries.ToFrozenDictionary(e => e.Name, StringComparer.Ordinal);
        _concrete = concrete;
        _resolved = resolved.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>All configured models, aliases and groups, in configuration order (models first).</summary>
    public IReadOnlyList<ModelEntry> Models { get; }

    /// <summary>
    /// Every model whose API key variable was unset when the catalog was built, in configuration order — so a start-up
    /// message can name all of them at once. Those models (and groups left with no callable member) are unavailable.
    /// </summary>
    public IReadOnlyList<MissingKey> MissingKeys { get; }

    /// <summary>The groups registered at run time with <see cref="AddGroup"/>, oldest first.</summary>
    public IReadOnlyList<ModelEntry> RuntimeGroupEntries => Volatile.Read(ref _runtime).Ordered;

    /// <summary>Finds a model, alias or group (configured or registered at run time) by exact name, without locks.</summary>
    public bool TryGet(string name, out ModelEntry entry) =>
        _byName.TryGetValue(name, out entry!) || Volatile.Read(ref _runtime).Entries.TryGetValue(name, out entry!);

    /// <summary>
    /// Registers a fallback group at run time (a model group created through the API), so requests can name it.
    /// Members may be configured models, aliases or groups, or groups registered earlier. Registering a name
    /// that is already a runtime group returns the existing entry (the first definition wins).
    /// </summary>
    /// <exception cref="ModelConfigurationException">
    /// The name is a configured model, alias or group, or a member names nothing this catalog serves.
    /// </exception>
    public ModelEntry AddGroup(ModelGroupOptions group)
    {
        while (true)
        {
            var current = Volatile.Read(ref _runtime);
            if (group?.Name is { } name && current.Entries.TryGetValue(name, out var existing))
            {
                return existing;
            }

            var (entry, members) = Compose(group!, current);
            if (Interlocked.CompareExchange(ref _runtime, current.With(entry, members), current) == current)
            {
                return entry;
            }
        }
    }

    /// <summary>Checks that <see cref="AddGroup"/> would accept <paramref name="group"/>, without registering it.</summary>
    /// <exception cref="ModelConfigurationException">The group is invalid; the message says why.</exception>
    public void ValidateGroup(ModelGroupOptions group)
    {
        var current = Volatile.Read(ref _runtime);
        if (group?.Name is { } name && current.Entries.ContainsKey(name))
        {
            return;
        }

        Compose(group!, current);
    }

    private (ModelEntry Entry, string[] Members) Compose(ModelGroupOptions group, RuntimeGroups current)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (string.IsNullOrWhiteSpace(group.Name))
        {
            throw new ModelConfigurationException("A model group needs a name: the name clients will ask for.");
        }

        if (_byName.ContainsKey(group.Name))
        {
            throw new ModelConfigurationException(
                $"\"{group.Name}\" is already a configured model, alias or group; choose another name for the model group.");
        }

        if (group.Models.Count == 0)
        {
            throw new ModelConfigurationException($"Model group \"{group.Name}\" lists no models. Give its model names in priority order.");
        }

        var members = new List<string>();
        foreach (var member in group.Models)
        {
            if (_resolved.TryGetValue(member, out var concreteMembers) || current.Resolved.TryGetValue(member, out concreteMembers))
            {
                members.AddRange(concreteMembers);
                continue;
            }

            throw new ModelConfigurationException(
                $"Model group \"{group.Name}\" names \"{member}\", which this gateway does not serve. GET /v1/models lists the models; fix the name.");
        }

        var first = _concrete[members[0]].Options;
        var synthesized = new ModelOptions
        {
            Name = group.Name,
            Provider = ModelEntry.GroupProvider,
            Description = group.Description ?? $"Fallback group: {string.Join(" → ", group.Models)}",
            ContextWindow = first.ContextWindow,
            MaxOutputTokens = first.MaxOutputTokens,
        };
        var (backend, reason) = RouteAvailable(group.Name, members, _concrete, _retry, _onRetry);
        var entry = new ModelEntry(group.Name, synthesized, backend)
        {
            Members = [.. group.Models],
            UnavailableReason = reason,
            Embeddings = EmbeddingRoute(members.Select(m => Candidate(m, _concrete)).ToList(), _retry, _onRetry),
        };
        return (entry, [.. members]);
    }

    /// <summary>An immutable set of runtime groups; <see cref="With"/> returns a copy with one more.</summary>
    private sealed class RuntimeGroups
    {
        public static readonly RuntimeGroups Empty = new([], FrozenDictionary<string, ModelEntry>.Empty, FrozenDictionary<string, string[]>.Empty);

        private RuntimeGroups(ModelEntry[] ordered, FrozenDictionary<string, ModelEntry> entries, FrozenDictionary<string, string[]> resolved)
        {
            Ordered = ordered;
            Entries = entries;
            Resolved = resolved;
        }

        public ModelEntry[] Ordered { get; }

        public FrozenDictionary<string, ModelEntry> Entries { get; }

        public FrozenDictionary<string, string[]> Resolved { get; }

        public RuntimeGroups With(ModelEntry entry, string[] members)
        {
            ModelEntry[] ordered = [.. Ordered, entry];
            var resolved = new Dictionary<string, string[]>(Resolved, StringComparer.Ordinal) { [entry.Name] = members };
            return new RuntimeGroups(
                ordered,
                ordered.ToFrozenDictionary(e => e.Name, StringComparer.Ordinal),
                resolved.ToFrozenDictionary(StringComparer.Ordinal));
        }
    }

    private static RouteCandidate Candidate(string name, Dictionary<string, (ModelOptions Options, IChatBackend Backend)> concrete)
    {
        var (options, backend) = concrete[name];
        var attempts = options.MaxAttempts ?? (options.Provider is SimulatedChatBackend.ProviderName or SimulatedEmbeddingBackend.ProviderName or LocalChatBackend.ProviderName ? 1 : 2);
        return new RouteCandidate(name, backend, Math.Max(1, attempts));
    }

    private static IChatBackend Route(List<RouteCandidate> candidates, RetryOptions retry, Action<RetryNotice>? onRetry) =>
        candidates is [{ Attempts: 1 } only] ? only.Backend : new FallbackChatBackend(candidates, retry, onRetry);

    /// <summary>The candidates that can embed, in order, with the same retries; null when none can.</summary>
    private static IEmbeddingBackend? EmbeddingRoute(List<RouteCandidate> candidates, RetryOptions retry, Action<RetryNotice>? onRetry)
    {
        List<EmbeddingCandidate> embedding = [.. candidates
            .Where(c => c.Backend is IEmbeddingBackend)
            .Select(c => new EmbeddingCandidate(c.Name, (IEmbeddingBackend)c.Backend, c.Attempts))];
        return embedding switch
        {
            [] => null,
            [{ Attempts: 1 } only] => only.Backend,
            _ => new FallbackEmbeddingBackend(embedding, retry, onRetry),
        };
    }

    /// <summary>
    /// The route over the callable members only: an unavailable one would fail every time, and retrying it would only
    /// delay the next. With none callable, the route itself is unavailable and says which keys are missing.
    /// </summary>
    private static (IChatBackend Backend, string? Reason) RouteAvailable(
        string owner,
        List<string> members,
        Dictionary<string, (ModelOptions Options, IChatBackend Backend)> concrete,
        RetryOptions retry,
        Action<RetryNotice>? onRetry)
    {
        var callable = members.Where(m => concrete[m].Backend is not UnavailableChatBackend).ToList();
        if (callable.Count > 0)
        {
            return (Route(callable.Select(m => Candidate(m, concrete)).ToList(), retry, onRetry), null);
        }

        var variables = members.Distinct(StringComparer.Ordinal)
            .Select(m => $"{m} needs {MissingVariable(concrete[m].Options)}")
            .ToList();
        var reason = $"Model \"{owner}\" is unavailable: none of its models can be called ({string.Join(", ", variables)}, unset when the gateway started). "
            + "Export a key variable and restart the gateway, or ask for another model (GET /v1/models).";
        return (new UnavailableChatBackend(reason), reason);
    }

    /// <summary>Resolves a name used by an alias or group to concrete model names, rejecting unknown names and cycles.</summary>
    private static List<string> ResolveTarget(
        string owner,
        string target,
        string where,
        Dictionary<string, (ModelOptions Options, IChatBackend Backend)> concrete,
        Dictionary<string, ModelGroupOptions> groups,
        IReadOnlyList<ModelOptions> models,
        HashSet<string> visiting)
    {
        if (!visiting.Add(target))
        {
            throw new ModelConfigurationException($"{where} (\"{owner}\") leads back to \"{target}\": aliases and groups must not form a cycle.");
        }

        try
        {
            if (concrete.ContainsKey(target))
            {
                return [target];
            }

            if (models.FirstOrDefault(m => m.Name == target) is { Target: { } next })
            {
                return ResolveTarget(owner, next, where, concrete, groups, models, visiting);
            }

            if (groups.TryGetValue(target, out var group))
            {
                return group.Models.SelectMany(m => ResolveTarget(owner, m, where, concrete, groups, models, visiting)).ToList();
            }

            throw new ModelConfigurationException($"{where} (\"{owner}\") names \"{target}\", which is neither a model nor a group. Fix the name or add a Models entry for it.");
        }
        finally
        {
            visiting.Remove(target);
        }
    }

    /// <summary>
    /// Loads what backends must load before they can answer (local models' weights), in configuration order, reporting
    /// progress per model. Hosts call it at start-up, before accepting calls.
    /// </summary>
    /// <param name="report">Told (model name, what is happening) as loading goes on.</param>
    /// <param name="cancellationToken">Stops between models.</param>
    /// <exception cref="ModelConfigurationException">A model cannot load; the message names it, its file and the fix.</exception>
    public async Task PreloadAsync(Action<string, string> report, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(report);
        foreach (var entry in Models)
        {
            if (entry.Source is IPreloadedBackend preloaded)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await preloaded.PreloadAsync(message => report(entry.Name, message), cancellationToken);
            }
        }
    }

    /// <summary>The environment variable an unavailable model waits for: its key variable, or for a local model the one naming its file.</summary>
    private static string? MissingVariable(ModelOptions model) =>
        (model.Provider == LocalChatBackend.ProviderName ? model.ModelPathEnv : model.ApiKeyEnv)?.Trim();

    /// <summary>The <c>Provider</c> values the catalog knows.</summary>
    public static IReadOnlyList<string> Providers { get; } =
    [
        SimulatedChatBackend.ProviderName,
        SimulatedEmbeddingBackend.ProviderName,
        LocalChatBackend.ProviderName,
        OpenAIChatBackend.ProviderName,
        AnthropicChatBackend.ProviderName,
        GeminiChatBackend.ProviderName,
        OllamaChatBackend.ProviderName,
    ];

    /// <summary>Releases the upstream connection pools.</summary>
    public void Dispose()
    {
        foreach (var entry in Models)
        {
            (entry.Source as IDisposable)?.Dispose();
        }
    }

    private static IChatBackend CreateBackend(ModelOptions model, int index)
    {
        var where = $"Models[{index}] (\"{model.Name}\")";
        if (model.Provider == SimulatedChatBackend.ProviderName)
        {
            return new SimulatedChatBackend(model);
        }

        if (model.Provider == SimulatedEmbeddingBackend.ProviderName)
        {
            return new SimulatedEmbeddingBackend(model);
        }

        if (model.Provider == LocalChatBackend.ProviderName)
        {
            return CreateLocal(model, where);
        }

        if (!Providers.Contains(model.Provider, StringComparer.Ordinal))
        {
            throw new ModelConfigurationException(
                $"{where} has unknown Provider \"{model.Provider}\". Use one of: {string.Join(", ", Providers)} (\"openai\" covers every OpenAI-compatible server: vLLM, llama.cpp, Grok, …).");
        }

        if (string.IsNullOrWhiteSpace(model.BaseUrl)
            || !Uri.TryCreate(model.BaseUrl, UriKind.Absolute, out var baseUri)
            || (baseUri.Scheme != Uri.UriSchemeHttp && baseUri.Scheme != Uri.UriSchemeHttps))
        {
            throw new ModelConfigurationException(
                $"{where} needs a BaseUrl: the http(s) address of the provider's API, e.g. \"{ExampleBaseUrl(model.Provider)}\"."
                + (string.IsNullOrWhiteSpace(model.BaseUrl) ? string.Empty : $" \"{model.BaseUrl}\" is not an absolute http(s) URL."));
        }

        if (model.ConnectTimeoutMs < 0 || model.FirstTokenTimeoutMs < 0 || model.IdleTimeoutMs < 0 || model.TotalTimeoutMs < 0)
        {
            throw new ModelConfigurationException(
                $"{where} has a negative timeout. ConnectTimeoutMs, FirstTokenTimeoutMs, IdleTimeoutMs and TotalTimeoutMs are milliseconds; use 0 to disable one.");
        }

        if (model.HttpVersion is not (null or "1.1" or "2"))
        {
            throw new ModelConfigurationException(
                $"{where} has HttpVersion \"{model.HttpVersion}\". Use \"1.1\" (the default) or \"2\" (HTTP/2: negotiated over https, "
                + "spoken without TLS over http, which the server must support).");
        }

        if (model.UpstreamClient is not (null or "sluice" or "dotnet"))
        {
            throw new ModelConfigurationException(
                $"{where} has UpstreamClient \"{model.UpstreamClient}\". Use \"sluice\" (the default: Sluice's own HTTP/1.1 client for http:// "
                + "upstreams without a proxy) or \"dotnet\" (.NET's HttpClient for every upstream).");
        }

        string? apiKey = null;
        if (!string.IsNullOrWhiteSpace(model.ApiKeyEnv))
        {
            // Keys pasted from files often carry a trailing newline, which HTTP headers cannot hold.
            var variable = model.ApiKeyEnv.Trim();
            apiKey = Environment.GetEnvironmentVariable(variable)?.Trim();
            if (string.IsNullOrEmpty(apiKey))
            {
                // Not fatal: the rest of the configuration still serves, and this model says what it lacks when called
                // (the shipped example names five providers; few users have every key).
                return new UnavailableChatBackend(
                    $"Model \"{model.Name}\" is unavailable: its API key is read from the environment variable {variable}, which was not set when the gateway started. "
                    + $"Export {variable}=<your key> and restart the gateway, or ask for another model (GET /v1/models).");
            }

            if (apiKey.Any(char.IsControl))
            {
                throw new ModelConfigurationException(
                    $"{where}: the environment variable {model.ApiKeyEnv} contains control characters (line breaks?), which an HTTP header cannot carry. Set it to the key alone.");
            }
        }

        return model.Provider switch
        {
            OpenAIChatBackend.ProviderName => model.Api?.Trim().ToLowerInvariant() switch
            {
                null or "" or "chat" => new OpenAIChatBackend(model, apiKey),
                OpenAIResponsesBackend.ApiName => new OpenAIResponsesBackend(model, apiKey),
                var api => throw new ModelConfigurationException(
                    $"{where}: Api \"{api}\" is not known; use \"chat\" (POST /chat/completions, the default) or \"responses\" (POST /responses)."),
            },
            AnthropicChatBackend.ProviderName => new AnthropicChatBackend(model, apiKey),
            GeminiChatBackend.ProviderName => new GeminiChatBackend(model, apiKey),
            _ => new OllamaChatBackend(model, apiKey),
        };
    }

    /// <summary>
    /// A local model: its file is checked now (a configured path that does not work stops the start, naming it); the
    /// weights load in <see cref="PreloadAsync"/>. A path read from an unset variable leaves the model unavailable instead,
    /// as an unset key variable does.
    /// </summary>
    private static IChatBackend CreateLocal(ModelOptions model, string where)
    {
        var path = model.ModelPath;
        if (string.IsNullOrWhiteSpace(path))
        {
            if (string.IsNullOrWhiteSpace(model.ModelPathEnv))
            {
                throw new ModelConfigurationException(
                    $"{where} needs a ModelPath: the GGUF file to run, e.g. \"ModelPath\": \"models/qwen2.5-0.5b-instruct-q4_k_m.gguf\" (or ModelPathEnv: the name of an environment variable holding the path).");
            }

            var variable = model.ModelPathEnv.Trim();
            path = Environment.GetEnvironmentVariable(variable)?.Trim();
            if (string.IsNullOrEmpty(path))
            {
                return new UnavailableChatBackend(
                    $"Model \"{model.Name}\" is unavailable: its model file is read from the environment variable {variable}, which was not set when the gateway started. "
                    + $"Export {variable}=/path/to/model.gguf and restart the gateway, or ask for another model (GET /v1/models).");
            }
        }

        return LocalChatBackend.Create(model, path, where);
    }

    private static string ExampleBaseUrl(string provider) => provider switch
    {
        AnthropicChatBackend.ProviderName => "https://api.anthropic.com/v1",
        GeminiChatBackend.ProviderName => "https://generativelanguage.googleapis.com/v1beta",
        OllamaChatBackend.ProviderName => "http://127.0.0.1:11434",
        _ => "https://api.openai.com/v1",
    };
}

/// <summary>A model whose API key variable was unset when the catalog was built.</summary>
/// <param name="Model">The model's name.</param>
/// <param name="Variable">The environment variable it reads its key from.</param>
public sealed record MissingKey(string Model, string Variable);

/// <summary>The model configuration is invalid; the message names the entry and the fix.</summary>
public sealed class ModelConfigurationException(string message) : Exception(message);
