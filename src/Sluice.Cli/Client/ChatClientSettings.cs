using System.Globalization;
using System.Text.Json;

namespace Sluice.Cli.Client;

/// <summary>
/// Where and how the chat client talks to a gateway. Loaded from a client JSON file (<c>--config</c>), then
/// overridden by the environment and the command line.
/// </summary>
internal sealed class ChatClientSettings
{
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

    /// <summary>Reads a client JSON file: <c>ApiUrl</c>, <c>ApiKey</c>, <c>Model</c> and the <c>*TimeoutSeconds</c> keys.</summary>
    /// <exception cref="ChatClientConfigException">The file is missing, not JSON, or has a bad value.</exception>
    public static ChatClientSettings Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ChatClientConfigException($"Cannot read config file '{path}': {ex.Message}. Check the path passed to --config.");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new ChatClientConfigException($"Config file '{path}' is not valid JSON ({ex.Message}). Fix it; it holds an object such as {{\"ApiUrl\": \"http://127.0.0.1:8080\", \"Model\": \"sim-fast\"}}.");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new ChatClientConfigException($"Config file '{path}' must hold a JSON object, e.g. {{\"ApiUrl\": \"http://127.0.0.1:8080\"}}.");
            }

            var settings = new ChatClientSettings();
            foreach (var property in document.RootElement.EnumerateObject())
            {
                settings.Apply(path, property);
            }

            return settings;
        }
    }

    private void Apply(string path, JsonProperty property)
    {
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
            default:
                // A misspelt key would silently do nothing; say so instead.
                throw new ChatClientConfigException(
                    $"Config file '{path}' has an unknown key '{property.Name}'. Known keys: ApiUrl, ApiKey, Model, ConnectTimeoutSeconds, FirstTokenTimeoutSeconds, IdleTimeoutSeconds, TotalTimeoutSeconds.");
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
