using Microsoft.Extensions.Configuration;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// Loads gateway configuration with the .NET configuration system: a JSON file, then <c>SLUICE_</c>
/// environment variables, then command-line overrides (later sources win).
/// </summary>
public static class GatewayConfiguration
{
    /// <summary>The file used when <c>--config</c> is not given and it exists in the working directory.</summary>
    public const string DefaultFileName = "sluice.json";

    /// <summary>Environment variable prefix: <c>SLUICE_PORT</c>, <c>SLUICE_Streaming__PingIntervalSeconds</c>, …</summary>
    public const string EnvironmentPrefix = "SLUICE_";

    /// <summary>Builds the configuration.</summary>
    /// <param name="configPath">An explicit file (must exist), or null for <see cref="DefaultFileName"/> if present.</param>
    /// <param name="overrides">Values from the command line, highest precedence.</param>
    /// <exception cref="GatewayConfigurationException">The file is missing or invalid.</exception>
    public static IConfigurationRoot Build(string? configPath, IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var builder = new ConfigurationBuilder();
        var path = configPath;
        if (path is null)
        {
            var candidate = Path.Combine(Directory.GetCurrentDirectory(), DefaultFileName);
            path = File.Exists(candidate) ? candidate : null;
        }
        else if (!File.Exists(path))
        {
            throw new GatewayConfigurationException(
                $"Config file '{path}' does not exist. Check the path, or copy sluice.example.json to start one.");
        }

        if (path is not null)
        {
            builder.AddJsonFile(Path.GetFullPath(path), optional: false, reloadOnChange: false);
        }

        builder.AddEnvironmentVariables(EnvironmentPrefix);
        if (overrides is not null)
        {
            builder.AddInMemoryCollection(overrides.Where(o => o.Value is not null));
        }

        try
        {
            return builder.Build();
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException)
        {
            throw new GatewayConfigurationException(DescribeJsonError(path, ex));
        }
    }

    /// <summary>
    /// One sentence for a file the JSON reader rejected: where (line and column, from the innermost
    /// <see cref="System.Text.Json.JsonException"/>) and what, without the provider's generic wrapper text.
    /// </summary>
    internal static string DescribeJsonError(string? path, Exception ex)
    {
        var inner = ex;
        while (inner.InnerException is not null && inner is not System.Text.Json.JsonException)
        {
            inner = inner.InnerException;
        }

        if (inner is System.Text.Json.JsonException { LineNumber: { } line } json)
        {
            // The reader's message ends with "[Path: $ |] LineNumber: 0 | BytePositionInLine: 13."; say it once, 1-based.
            var what = json.Message;
            foreach (var marker in (ReadOnlySpan<string>)[" Path:", " LineNumber:"])
            {
                var cut = what.IndexOf(marker, StringComparison.Ordinal);
                what = cut > 0 ? what[..cut] : what;
            }

            what = what.Trim().TrimEnd('.');
            var column = (json.BytePositionInLine ?? 0) + 1;
            return $"Config file '{path}' is not valid JSON at line {line + 1}, column {column}: {what}. Fix it, or compare with sluice.example.json.";
        }

        // A duplicate key and similar errors carry no position; their message names the key.
        var message = (inner.Message.Length > 0 ? inner.Message : ex.Message).Trim().TrimEnd('.');
        return $"Config file '{path}' is not valid JSON: {message}. Fix it, or compare with sluice.example.json.";
    }

    /// <summary>Binds and validates <see cref="GatewayOptions"/>.</summary>
    /// <exception cref="GatewayConfigurationException">A value is invalid; the message names the key and the fix.</exception>
    public static GatewayOptions Bind(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var options = new GatewayOptions();
        try
        {
            configuration.Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            throw new GatewayConfigurationException($"Configuration value has the wrong type: {ex.InnerException?.Message ?? ex.Message}");
        }

        // SLUICE_MASTER_KEY arrives as MASTER_KEY through the SLUICE_ prefix.
        if (string.IsNullOrWhiteSpace(options.MasterKey))
        {
            options.MasterKey = configuration["MASTER_KEY"];
        }

        options.MasterKey = string.IsNullOrWhiteSpace(options.MasterKey) ? null : options.MasterKey.Trim();
        if (options.MasterKey is { Length: < 16 })
        {
            throw new GatewayConfigurationException(
                "MasterKey (SLUICE_MASTER_KEY) is shorter than 16 characters; use a long random value, e.g. `openssl rand -hex 24`.");
        }

        if (string.IsNullOrWhiteSpace(options.DataDirectory))
        {
            throw new GatewayConfigurationException("DataDirectory is empty; set it to a writable directory (default: the per-user data directory, ~/.local/share/sluice on Linux) or set Store.");
        }

        if (options.Tenancy.KeyCacheSeconds < 0 || options.Tenancy.UsageQueueCapacity < 1 || options.Tenancy.UsageBatchSize < 1
            || options.Tenancy.StreamLeaseSeconds < 1 || options.Tenancy.UsageFlushDelayMs is < 0 or > 10_000
            || options.Tenancy.OpenJobHours is <= 0 or > 24 * 365)
        {
            throw new GatewayConfigurationException(
                "Tenancy: KeyCacheSeconds must be 0 or more, UsageQueueCapacity and UsageBatchSize at least 1, StreamLeaseSeconds at least 1, UsageFlushDelayMs from 0 to 10000, OpenJobHours above 0 and at most 8760.");
        }

        if (options.Sessions.MaxMessages < 2)
        {
            throw new GatewayConfigurationException("Sessions:MaxMessages must be at least 2 (one turn: the question and its reply); default 2000.");
        }

        if (options.Port is < 0 or > 65535)
        {
            throw new GatewayConfigurationException($"Port {options.Port} is out of range; use 1–65535 (or 0 for any free port).");
        }

        if (options.Streaming.PingIntervalSeconds <= 0)
        {
            throw new GatewayConfigurationException("Streaming:PingIntervalSeconds must be greater than 0 (default 15).");
        }

        if (options.Streaming.ResumeGraceSeconds < 0 || options.Streaming.ReplayTtlSeconds < 0
            || options.Streaming.MaxStreamBufferBytes < 1 || options.Streaming.ReplayBudgetBytes < 1 || options.Streaming.MaxReadersPerStream < 1)
        {
            throw new GatewayConfigurationException(
                "Streaming:ResumeGraceSeconds and Streaming:ReplayTtlSeconds must be 0 or more, Streaming:MaxStreamBufferBytes, Streaming:ReplayBudgetBytes and Streaming:MaxReadersPerStream at least 1 (defaults 30, 300, 1048576, 67108864, 16).");
        }

        if (options.Streaming.SlowClientTimeoutSeconds < 0)
        {
            throw new GatewayConfigurationException("Streaming:SlowClientTimeoutSeconds must be 0 (wait for ever) or more (default 30).");
        }

        var observability = options.Observability;
        if (observability.LogFormat is not ("simple" or "json"))
        {
            throw new GatewayConfigurationException($"Observability:LogFormat must be \"simple\" or \"json\" (got \"{observability.LogFormat}\").");
        }

        if (observability.Metrics.MaxSeriesPerMetric < 1 || observability.Otlp.SampleRatio is < 0 or > 1
            || observability.Otlp.Protocol is not ("grpc" or "http/protobuf"))
        {
            throw new GatewayConfigurationException(
                "Observability: Metrics:MaxSeriesPerMetric must be at least 1, Otlp:SampleRatio from 0 to 1, Otlp:Protocol \"grpc\" or \"http/protobuf\".");
        }

        if (observability.Otlp.Endpoint is { Length: > 0 } endpoint && !Uri.TryCreate(endpoint, UriKind.Absolute, out _))
        {
            throw new GatewayConfigurationException($"Observability:Otlp:Endpoint \"{endpoint}\" is not an absolute URL, e.g. http://127.0.0.1:4317.");
        }

        foreach (var (name, value) in observability.Otlp.Headers)
        {
            // A header name is an HTTP token; a value is one line of visible text (the exporter would otherwise fail at
            // its first export, long after the start).
            if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal)))
            {
                throw new GatewayConfigurationException($"Observability:Otlp:Headers: \"{name}\" is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only).");
            }

            if (value is null || value.Any(c => char.IsControl(c) || c > '\u007e'))
            {
                throw new GatewayConfigurationException($"Observability:Otlp:Headers:{name}: the value must be one line of visible ASCII text (no line breaks or control characters).");
            }
        }

        if (observability.Metrics.ScrapeToken is { } token)
        {
            observability.Metrics.ScrapeToken = string.IsNullOrWhiteSpace(token) ? null : token.Trim();
            if (observability.Metrics.ScrapeToken is { Length: < 16 })
            {
                throw new GatewayConfigurationException("Observability:Metrics:ScrapeToken is shorter than 16 characters; use a long random value, e.g. `openssl rand -hex 24`.");
            }
        }

        if (options.Limits.MaxPromptChars < 1 || options.Limits.MaxRequestBodyBytes < 1024 || options.Limits.RequestHeadersTimeoutSeconds is < 0.1 or > 3600)
        {
            throw new GatewayConfigurationException(
                "Limits:MaxPromptChars must be at least 1, Limits:MaxRequestBodyBytes at least 1024 and Limits:RequestHeadersTimeoutSeconds from 0.1 to 3600 (default 30).");
        }

        if (options.Responses.StoreDays is < 0 or > 36_500)
        {
            throw new GatewayConfigurationException($"Responses:StoreDays must be from 0 (no age limit) to 36500 (got {options.Responses.StoreDays}); the default is 30.");
        }

        if (options.Responses.MaxStoredPerTeam < 1)
        {
            throw new GatewayConfigurationException($"Responses:MaxStoredPerTeam must be at least 1 (got {options.Responses.MaxStoredPerTeam}); the default is 10000.");
        }

        if (options.Sessions.MaxPerTeam < 1)
        {
            throw new GatewayConfigurationException($"Sessions:MaxPerTeam must be at least 1 (got {options.Sessions.MaxPerTeam}); the default is 10000.");
        }

        if (options.Limits.MaxConnections is < 1)
        {
            throw new GatewayConfigurationException(
                $"Limits:MaxConnections must be at least 1 (got {options.Limits.MaxConnections}); leave it out to take the open-file limit less a tenth (at least 512).");
        }

        if (options.Limits.MaxBodyBytesPerClient < options.Limits.MaxRequestBodyBytes || options.Limits.MaxBodyBytes < options.Limits.MaxBodyBytesPerClient)
        {
            throw new GatewayConfigurationException(
                $"Limits:MaxBodyBytesPerClient ({options.Limits.MaxBodyBytesPerClient}) must be at least Limits:MaxRequestBodyBytes ({options.Limits.MaxRequestBodyBytes}), and Limits:MaxBodyBytes ({options.Limits.MaxBodyBytes?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unset"}) at least Limits:MaxBodyBytesPerClient: one request's body must fit in its caller's share.");
        }

        if (options.Limits.MaxConnectionsPerClient is < 0)
        {
            throw new GatewayConfigurationException(
                $"Limits:MaxConnectionsPerClient must be 0 (no limit per address) or more (got {options.Limits.MaxConnectionsPerClient}); leave it out for half of Limits:MaxConnections, at most 10000.");
        }

        if (options.Streaming.IoQueues is < 0 or > 64)
        {
            throw new GatewayConfigurationException(
                $"Streaming:IoQueues must be from 0 to 64 (got {options.Streaming.IoQueues}); 0 hands socket work to the thread pool directly, a number uses that many Kestrel I/O queues, leaving it out keeps Kestrel's default.");
        }

        if (options.Limits.MaxAttachments < 0 || options.Limits.MaxAttachmentBytes < 1)
        {
            throw new GatewayConfigurationException("Limits:MaxAttachments must be 0 or more (0 refuses images and documents) and Limits:MaxAttachmentBytes at least 1.");
        }

        if (options.Mqtt.Enabled)
        {
            options.Mqtt.Validate();
        }

        return options;
    }
}

/// <summary>The configuration cannot be used; the message says what to change.</summary>
public sealed class GatewayConfigurationException(string message) : Exception(message);
