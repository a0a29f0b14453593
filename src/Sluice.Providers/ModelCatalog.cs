using System.Collections.Frozen;
using Sluice.Providers.Simulation;
using Sluice.Providers.Upstream;

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

/// <summary>
/// The models a gateway serves, looked up by name without locks. Upstream models get their connection pool here,
/// once; dispose the catalog to release them.
/// </summary>
public sealed class ModelCatalog : IDisposable
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

    /// <summary>The <c>Provider</c> values the catalog knows.</summary>
    public static IReadOnlyList<string> Providers { get; } =
    [
        SimulatedChatBackend.ProviderName,
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
            (entry.Backend as IDisposable)?.Dispose();
        }
    }

    private static IChatBackend CreateBackend(ModelOptions model, int index)
    {
        var where = $"Models[{index}] (\"{model.Name}\")";
        if (model.Provider == SimulatedChatBackend.ProviderName)
        {
            return new SimulatedChatBackend(model);
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

        string? apiKey = null;
        if (!string.IsNullOrWhiteSpace(model.ApiKeyEnv))
        {
            // Keys pasted from files often carry a trailing newline, which HTTP headers cannot hold.
            apiKey = Environment.GetEnvironmentVariable(model.ApiKeyEnv)?.Trim();
            if (string.IsNullOrEmpty(apiKey))
            {
                throw new ModelConfigurationException(
                    $"{where} reads its API key from the environment variable {model.ApiKeyEnv}, which is not set. "
                    + $"Export {model.ApiKeyEnv}=<your key> before starting Sluice, or remove ApiKeyEnv if the server needs no key.");
            }

            if (apiKey.Any(char.IsControl))
            {
                throw new ModelConfigurationException(
                    $"{where}: the environment variable {model.ApiKeyEnv} contains control characters (line breaks?), which an HTTP header cannot carry. Set it to the key alone.");
            }
        }

        return model.Provider switch
        {
            OpenAIChatBackend.ProviderName => new OpenAIChatBackend(model, apiKey),
            AnthropicChatBackend.ProviderName => new AnthropicChatBackend(model, apiKey),
            GeminiChatBackend.ProviderName => new GeminiChatBackend(model, apiKey),
            _ => new OllamaChatBackend(model, apiKey),
        };
    }

    private static string ExampleBaseUrl(string provider) => provider switch
    {
        AnthropicChatBackend.ProviderName => "https://api.anthropic.com/v1",
        GeminiChatBackend.ProviderName => "https://generativelanguage.googleapis.com/v1beta",
        OllamaChatBackend.ProviderName => "http://127.0.0.1:11434",
        _ => "https://api.openai.com/v1",
    };
}

/// <summary>The model configuration is invalid; the message names the entry and the fix.</summary>
public sealed class ModelConfigurationException(string message) : Exception(message);
