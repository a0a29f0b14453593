using System.Globalization;
using System.Text.Json;

namespace Sluice.Cli.Client;

/// <summary>
/// Where and how the chat client talks to a gateway. Loaded from the client JSON files (<c>--config</c>, or the
/// default files: the user's <c>~/.config/sluice/client.json</c>, then <c>./sluice-client.json</c>), then overridden
/// by the environment and the command line. <see cref="Sources"/> remembers where each value came from.
/// </summary>
internal sealed class ChatClientSettings
{
    /// <summary>The per-directory client file, read when <c>--config</c> is not given.</summary>
    public const string LocalFileName = "sluice-client.json";

    /// <summary>Where a value that nothing set comes from.</summary>
    public const string BuiltInSource = "built-in default";

    private readonly Dictionary<string, string> _sources = new(StringComparer.Ordinal);

    /// <summary>The URL used when neither the command line nor the file names one.</summary>
    public const string DefaultApiUrl = "http://127.0.0.1:8080";

    /// <summary>Environment variable holding the API key.</summary>
    public const string ApiKeyEnvironmentVariable = "SLUICE_API_KEY";

    /// <summary>The gateway's base URL (with or without <c>/v1</c>), or the full chat-completions URL.</summary>
    public string ApiUrl { get; set; } = DefaultApiUrl;

    /// <summary>Sent as <c>Authorization: Bearer</c> when set.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The model to ask for; null lets the gateway pick its default (its first configured model).</summary>
    public string? Model { get; set; }

    /// <summary>Longest wait for the TCP connection.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait from sending the request to the first token.</summary>
    public TimeSpan FirstTokenTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest silence (no event, not even a keep-alive comment) once tokens flow.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest whole request; <see cref="Timeout.InfiniteTimeSpan"/> for no limit (the default).</summary>
    public TimeSpan TotalTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>Default <c>max_tokens</c> (null: the model's).</summary>
    public int? MaxTokens { get; set; }

    /// <summary>Default sampling temperature (null: the model's).</summary>
    public double? Temperature { get; set; }

    /// <summary>Default system prompt (null: none).</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>Where each setting that was set came from (key: the config key, e.g. <c>ApiUrl</c>); others are built-in defaults.</summary>
    public IReadOnlyDictionary<string, string> Sources => _sources;

    /// <summary>The user's client file: <c>$XDG_CONFIG_HOME/sluice/client.json</c>, else <c>~/.config/sluice/client.json</c>.</summary>
    /// <param name="environment">Reads an environment variable (tests pass their own); null reads the process's.</param>
    public static string? UserFilePath(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (environment("XDG_CONFIG_HOME") is { Length: > 0 } xdg && Path.IsPathRooted(xdg))
        {
            return Path.Combine(xdg, "sluice", "client.json");
        }

        return environment("HOME") is { Length: > 0 } home && Path.IsPathRooted(home)
            ? Path.Combine(home, ".config", "sluice", "client.json")
            : null;
    }

    /// <summary>
    /// The settings from <paramref name="configPath"/> when given (it must exist), else from the default files that
    /// exist: the user's file first, then <c>./sluice-client.json</c> (the more specific wins).
    /// </summary>
    /// <exception cref="ChatClientConfigException">A file is unreadable, not JSON, or has a bad value.</exception>
    public static ChatClientSettings LoadFiles(string? configPath, Func<string, string?>? environment = null)
    {
        var settings = new ChatClientSettings();
        if (configPath is not null)
        {
            settings.ApplyFile(configPath);
            return settings;
        }

        foreach (var candidate in new[] { UserFilePath(environment), Path.Combine(Directory.GetCurrentDirectory(), LocalFileName) })
        {
            if (candidate is not null && File.Exists(candidate))
            {
                settings.ApplyFile(candidate);
            }
        }

        return settings;
    }

    /// <summary>
    /// The files (<see cref="LoadFiles"/>), then <c>SLUICE_API_KEY</c>, then the command line's <c>--url</c>,
    /// <c>--api-key</c> and <c>--model</c> (null: not given), each recorded in <see cref="Sources"/>.
    /// </summary>
    /// <exception cref="ChatClientConfigException">A file is unreadable, not JSON, or has a bad value.</exception>
    public static ChatClientSettings Resolve(string? configPath, string? url, string? apiKey, string? model)
    {
        var settings = LoadFiles(configPath);
        if (Environment.GetEnvironmentVariable(ApiKeyEnvironmentVariable) is { Length: > 0 } fromEnvironment)
        {
            settings.Override("ApiKey", "env " + ApiKeyEnvironmentVariable, s => s.ApiKey = fromEnvironment);
        }

        if (url is not null)
        {
            settings.Override("ApiUrl", "--url", s => s.ApiUrl = url);
        }

        if (apiKey is not null)
        {
            settings.Override("ApiKey", "--api-key", s => s.ApiKey = apiKey);
        }

        if (model is not null)
        {
            settings.Override("Model", "--model", s => s.Model = model);
        }

        return settings;
    }

    /// <summary>Sets a value from the environment or the command line and records <paramref name="source"/> for it.</summary>
    public void Override(string key, string source, Action<ChatClientSettings> apply)
    {
        ArgumentNullException.ThrowIfNull(apply);
        apply(this);
        _sources[key] = source;
    }

    /// <summary>Where <paramref name="key"/> came from.</summary>
    public string SourceOf(string key) => _sources.TryGetValue(key, out var source) ? source : BuiltInSource;

    /// <summary>
    /// The resolved settings as lines for <c>--debug</c>: each value, where it came from, the key masked
    /// (first 4 and last 4 characters of a long key, nothing of a short one).
    /// </summary>
    public IEnumerable<string> Describe()
    {
        yield return Line("ApiUrl", ApiUrl);
        yield return Line("ApiKey", ApiKey is null ? "(none)" : Mask(ApiKey));
        yield return Line("Model", Model ?? "(the gateway's default)");
        yield return Line("MaxTokens", MaxTokens?.ToString(CultureInfo.InvariantCulture) ?? "(the model's)");
        yield return Line("Temperature", Temperature?.ToString(CultureInfo.InvariantCulture) ?? "(the model's)");
        yield return Line("SystemPrompt", SystemPrompt is null ? "(none)" : "\"" + SystemPrompt + "\"");
        yield return Line("ConnectTimeoutSeconds", Describe(ConnectTimeout));
        yield return Line("FirstTokenTimeoutSeconds", Describe(FirstTokenTimeout));
        yield return Line("IdleTimeoutSeconds", Describe(IdleTimeout));
        yield return Line("TotalTimeoutSeconds", TotalTimeout == Timeout.InfiniteTimeSpan ? "no limit" : Describe(TotalTimeout));

        string Line(string key, string value) => $"[config] {key} = {value}  ({SourceOf(key)})";
    }

    /// <summary>A key shown without giving it away.</summary>
    public static string Mask(string key) =>
        key.Length >= 16 ? $"{key[..4]}…{key[^4..]} ({key.Length} characters)" : $"*** ({key.Length} characters)";

    /// <summary>Reads one client JSON file (see <see cref="ApplyFile"/>) over the built-in defaults.</summary>
    /// <exception cref="ChatClientConfigException">The file is missing, not JSON, or has a bad value.</exception>
    public static ChatClientSettings Load(string path)
    {
        var settings = new ChatClientSettings();
        settings.ApplyFile(path);
        return settings;
    }

    /// <summary>
    /// Applies a client JSON file (comments allowed): <c>ApiUrl</c>, <c>ApiKey</c>, <c>Model</c>, <c>MaxTokens</c>,
    /// <c>Temperature</c>, <c>SystemPrompt</c> and the <c>*TimeoutSeconds</c> keys.
    /// </summary>
    /// <exception cref="ChatClientConfigException">The file is missing, not JSON, or has a bad value.</exception>
    private void ApplyFile(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ChatClientConfigException(Sentences.Join($"Cannot read config file '{path}': {ex.Message}", "Check the path passed to --config"));
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            var where = ex.LineNumber is { } line ? $" at line {line + 1}, column {(ex.BytePositionInLine ?? 0) + 1}" : string.Empty;
            throw new ChatClientConfigException(
                $"Config file '{path}' is not valid JSON{where}. Fix it; it holds an object such as {{\"ApiUrl\": \"http://127.0.0.1:8080\", \"Model\": \"sim-realistic\"}} (see sluice-client.example.json).");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new ChatClientConfigException($"Config file '{path}' must hold a JSON object, e.g. {{\"ApiUrl\": \"http://127.0.0.1:8080\"}}.");
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                Apply(path, property);
            }
        }
    }

    private void Apply(string path, JsonProperty property)
    {
        var key = property.Name.ToUpperInvariant() switch
        {
            "APIURL" => "ApiUrl",
            "APIKEY" => "ApiKey",
            "MODEL" => "Model",
            "MAXTOKENS" => "MaxTokens",
            "TEMPERATURE" => "Temperature",
            "SYSTEMPROMPT" => "SystemPrompt",
            "CONNECTTIMEOUTSECONDS" => "ConnectTimeoutSeconds",
            "FIRSTTOKENTIMEOUTSECONDS" => "FirstTokenTimeoutSeconds",
            "IDLETIMEOUTSECONDS" => "IdleTimeoutSeconds",
            "TOTALTIMEOUTSECONDS" => "TotalTimeoutSeconds",
            _ => null,
        };
        if (key is not null)
        {
            _sources[key] = path;
        }

        switch (property.Name.ToUpperInvariant())
        {
            case "APIURL":
                ApiUrl = ReadString(path, property) ?? DefaultApiUrl;
                break;
            case "APIKEY":
                ApiKey = ReadString(path, property);
                break;
            case "MODEL":
                Model = ReadString(path, property);
                break;
            case "CONNECTTIMEOUTSECONDS":
                ConnectTimeout = ReadSeconds(path, property, allowZero: false);
                break;
            case "FIRSTTOKENTIMEOUTSECONDS":
                FirstTokenTimeout = ReadSeconds(path, property, allowZero: false);
                break;
            case "IDLETIMEOUTSECONDS":
                IdleTimeout = ReadSeconds(path, property, allowZero: false);
                break;
            case "TOTALTIMEOUTSECONDS":
                TotalTimeout = ReadSeconds(path, property, allowZero: true);
                break;
            case "MAXTOKENS":
                MaxTokens = property.Value.ValueKind == JsonValueKind.Null ? null
                    : property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetInt32(out var tokens) && tokens >= 1 ? tokens
                    : throw new ChatClientConfigException($"Config file '{path}': MaxTokens must be a whole number of at least 1, or null for the model's default (got {property.Value.GetRawText()}).");
                break;
            case "TEMPERATURE":
                Temperature = property.Value.ValueKind == JsonValueKind.Null ? null
                    : property.Value.ValueKind == JsonValueKind.Number && property.Value.TryGetDouble(out var temperature) && temperature is >= 0 and <= 2 ? temperature
                    : throw new ChatClientConfigException($"Config file '{path}': Temperature must be a number from 0 to 2, or null for the model's default (got {property.Value.GetRawText()}).");
                break;
            case "SYSTEMPROMPT":
                SystemPrompt = ReadString(path, property) is { Length: > 0 } prompt ? prompt : null;
                break;
            default:
                // A misspelt key would silently do nothing; say so instead.
                throw new ChatClientConfigException(
                    $"Config file '{path}' has an unknown key '{property.Name}'. Known keys: ApiUrl, ApiKey, Model, MaxTokens, Temperature, SystemPrompt, ConnectTimeoutSeconds, FirstTokenTimeoutSeconds, IdleTimeoutSeconds, TotalTimeoutSeconds.");
        }
    }

    private static string? ReadString(string path, JsonProperty property) => property.Value.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => property.Value.GetString(),
        _ => throw new ChatClientConfigException($"Config file '{path}': {property.Name} must be a string."),
    };

    private static TimeSpan ReadSeconds(string path, JsonProperty property, bool allowZero)
    {
        if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetDouble(out var seconds)
            || seconds < 0 || (seconds == 0 && !allowZero) || seconds > 86_400)
        {
            var range = allowZero ? "between 0 (no limit) and 86400" : "greater than 0 and at most 86400";
            throw new ChatClientConfigException(
                $"Config file '{path}': {property.Name} must be a number of seconds {range} (got {property.Value.GetRawText()}).");
        }

        return seconds == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(seconds);
    }

    /// <summary>The chat-completions endpoint for <see cref="ApiUrl"/>.</summary>
    /// <exception cref="ChatClientConfigException">The URL is not an absolute http(s) URL.</exception>
    public Uri ResolveEndpoint()
    {
        if (!Uri.TryCreate(ApiUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new ChatClientConfigException(
                $"'{ApiUrl}' is not an http(s) URL. Pass the gateway's address, e.g. --url {DefaultApiUrl}.");
        }

        var path = uri.AbsolutePath.TrimEnd('/');
        if (path.EndsWith("/chat/completions", StringComparison.OrdinalIgnoreCase))
        {
            return uri;
        }

        // Accept both "http://host:8080" and "http://host:8080/v1" (what OpenAI SDKs call the base URL).
        var suffix = path.EndsWith("/v1", StringComparison.OrdinalIgnoreCase) ? "/chat/completions" : "/v1/chat/completions";
        return new UriBuilder(uri) { Path = path + suffix }.Uri;
    }

    /// <summary>A seconds value for messages.</summary>
    public static string Describe(TimeSpan timeout) =>
        timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";
}

/// <summary>The client configuration cannot be used; the message says what to change.</summary>
internal sealed class ChatClientConfigException(string message) : Exception(message);
