namespace Sluice.Cli.Bench;

/// <summary>What <c>sluice bench</c> runs.</summary>
internal sealed record BenchSettings
{
    /// <summary>The server's base URL; <c>/v1/chat/completions</c> is appended (a trailing <c>/v1</c> is understood).</summary>
    public Uri BaseUrl { get; init; } = new("http://127.0.0.1:8080/");

    public string Model { get; init; } = "sim-fast";

    /// <summary>Workers, each with at most one stream open at a time.</summary>
    public int Concurrency { get; init; } = 8;

    /// <summary>Measured requests in total (warm-up not included).</summary>
    public int Requests { get; init; } = 1_000;

    /// <summary>Upper bound on the whole run, warm-up included; streams still open then are cut and counted as such.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);

    public int MaxTokens { get; init; } = 64;

    public string Prompt { get; init; } = "Write a short note about load testing streaming gateways.";

    public string? ApiKey { get; init; }

    /// <summary>Requests run (at the same concurrency) before measuring, so JIT and connection set-up are not measured.</summary>
    public int Warmup { get; init; }

    /// <summary>How often the progress line is refreshed.</summary>
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The chat completions endpoint for <see cref="BaseUrl"/>.</summary>
    public Uri Endpoint
    {
        get
        {
            var text = BaseUrl.GetLeftPart(UriPartial.Path).TrimEnd('/');
            return new Uri(text.EndsWith("/v1", StringComparison.Ordinal) ? text + "/chat/completions" : text + "/v1/chat/completions");
        }
    }

    /// <summary>Returns an explanation of the first invalid value, or null when all are usable.</summary>
    public string? Validate()
    {
        if (BaseUrl.Scheme is not ("http" or "https"))
        {
            return $"--url must be an http:// or https:// URL, not '{BaseUrl}'.";
        }

        if (Concurrency is < 1 or > 100_000)
        {
            return $"--concurrency {Concurrency} is out of range; use 1–100000.";
        }

        if (Requests < 1)
        {
            return $"--requests {Requests} must be at least 1.";
        }

        if (Duration <= TimeSpan.Zero || Duration > TimeSpan.FromDays(1))
        {
            return "--duration must be more than 0 and at most 86400 seconds.";
        }

        if (MaxTokens < 1)
        {
            return $"--max-tokens {MaxTokens} must be at least 1.";
        }

        if (Warmup < 0)
        {
            return $"--warmup {Warmup} must be 0 or more.";
        }

        return string.IsNullOrEmpty(Prompt) ? "--prompt must not be empty." : null;
    }
}
