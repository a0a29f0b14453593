using Sluice.Providers.Simulation;

namespace Sluice.Providers.Tests;

public sealed class ModelCatalogTests
{
    [Fact]
    public void Built_in_models_are_offered_when_none_are_configured()
    {
        foreach (var catalog in new[] { new ModelCatalog(null), new ModelCatalog([]) })
        {
            Assert.Equal(["sim-realistic", "sim-fast", "sim-slow", "sim-embed"], catalog.Models.Select(m => m.Name));
            Assert.All(catalog.Models, m =>
            {
                Assert.IsType(m.Name == "sim-embed" ? typeof(SimulatedEmbeddingBackend) : typeof(SimulatedChatBackend), m.Backend);
                Assert.Equal(m.Name == "sim-embed", m.Embeddings is not null);
                Assert.Equal("sluice-simulation", m.OwnedBy);
                Assert.False(string.IsNullOrWhiteSpace(m.Options.Description));
            });
            Assert.True(catalog.TryGet("sim-realistic", out var entry));
            Assert.Equal(300, entry.Options.TimeToFirstTokenMs);
        }
    }

    [Fact]
    public void Lookup_is_exact()
    {
        var catalog = new ModelCatalog(null);

        Assert.False(catalog.TryGet("SIM-FAST", out _));
        Assert.False(catalog.TryGet("sim", out _));
        Assert.False(catalog.TryGet(string.Empty, out _));
    }

    [Fact]
    public void Configured_models_replace_the_built_ins_in_order()
    {
        var catalog = new ModelCatalog([
            new ModelOptions { Name = "zeta", TokensPerSecond = 10 },
            new ModelOptions { Name = "alpha" },
        ]);

        Assert.Equal(["zeta", "alpha"], catalog.Models.Select(m => m.Name));
        Assert.False(catalog.TryGet("sim-fast", out _));
        Assert.True(catalog.TryGet("zeta", out var zeta));
        Assert.Equal(10, zeta.Options.TokensPerSecond);
    }

    [Fact]
    public void Built_in_options_are_fresh_instances()
    {
        var a = BuiltInModels.Fast;
        a.Name = "changed";

        Assert.Equal("sim-fast", BuiltInModels.Fast.Name);
        // The first built-in is the default model: the paced one, so an answer visibly streams.
        Assert.Equal("sim-realistic", new ModelCatalog(null).Models[0].Name);
    }

    [Fact]
    public void Duplicate_name_names_the_entry()
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog([
            new ModelOptions { Name = "a" },
            new ModelOptions { Name = "b" },
            new ModelOptions { Name = "a" },
        ]));

        Assert.Contains("Models[2]", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"a\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("unique", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Names_differing_only_in_case_are_distinct()
    {
        var catalog = new ModelCatalog([new ModelOptions { Name = "model" }, new ModelOptions { Name = "Model" }]);

        Assert.Equal(2, catalog.Models.Count);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void Missing_name_names_the_entry(string name)
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog([
            new ModelOptions { Name = "ok" },
            new ModelOptions { Name = name },
        ]));

        Assert.Contains("Models[1]", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Name", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_provider_names_the_entry_and_the_provider()
    {
        var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog([
            new ModelOptions { Name = "ok" },
            new ModelOptions { Name = "gpt", Provider = "openia" },
        ]));

        Assert.Contains("Models[1]", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"gpt\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("\"openia\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains("sim, sim-embed, local, openai", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_options_defaults_describe_a_simulated_model()
    {
        var options = new ModelOptions();

        Assert.Equal("sim", options.Provider);
        Assert.True(options.ContextWindow > options.MaxOutputTokens);
        Assert.True(options.DefaultAnswerTokens <= options.MaxOutputTokens);
        Assert.Null(options.FailStatus);
        Assert.Equal(0, options.TimeToFirstTokenMs);
    }
}
