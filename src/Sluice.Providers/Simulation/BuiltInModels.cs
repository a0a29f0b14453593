namespace Sluice.Providers.Simulation;

/// <summary>The simulated models offered when the configuration declares none.</summary>
public static class BuiltInModels
{
    /// <summary>No delays at all: for load tests and benchmarks.</summary>
    public static ModelOptions Fast => new()
    {
        Name = "sim-fast",
        Provider = SimulatedChatBackend.ProviderName,
        Description = "Simulated model (not a language model): no delays, for load tests.",
    };

    /// <summary>Paced like a hosted model: ~300 ms to first token, ~45 tokens/s with jitter.</summary>
    public static ModelOptions Realistic => new()
    {
        Name = "sim-realistic",
        Provider = SimulatedChatBackend.ProviderName,
        Description = "Simulated model (not a language model): ~300 ms to first token, ~45 tokens/s.",
        TimeToFirstTokenMs = 300,
        TokensPerSecond = 45,
        Jitter = 0.3,
    };

    /// <summary>Slow and thoughtful: 2 s to first token, 12 tokens/s — for testing spinners and pings.</summary>
    public static ModelOptions Slow => new()
    {
        Name = "sim-slow",
        Provider = SimulatedChatBackend.ProviderName,
        Description = "Simulated model (not a language model): 2 s to first token, ~12 tokens/s.",
        TimeToFirstTokenMs = 2_000,
        TokensPerSecond = 12,
        Jitter = 0.2,
    };

    /// <summary>A simulated embedding model: deterministic, unit-length vectors that are close for similar texts.</summary>
    public static ModelOptions Embed => new()
    {
        Name = "sim-embed",
        Provider = SimulatedEmbeddingBackend.ProviderName,
        Description = "Simulated embedding model (not a language model): 256-dimension vectors from hashed words and word pieces, close for similar texts.",
    };

    /// <summary>
    /// All built-ins, fresh instances. The first is the default for requests without <c>model</c>: the paced one, so
    /// a first curl shows the answer streaming rather than arriving at once.
    /// </summary>
    public static IReadOnlyList<ModelOptions> All => [Realistic, Fast, Slow, Embed];
}
