using Sluice.Protocol.Chat;
using Sluice.Protocol.Events;
using Sluice.Providers.Routing;

namespace Sluice.Providers.Tests;

/// <summary>Model groups registered while the gateway runs (created through the API).</summary>
public sealed class RuntimeGroupTests
{
    [Fact]
    public async Task A_runtime_group_is_found_and_falls_back_in_order()
    {
        var catalog = new ModelCatalog([
            new ModelOptions { Name = "broken", FailStatus = 503 },
            new ModelOptions { Name = "works" },
        ]);
        Assert.False(catalog.TryGet("ChatAgent", out _));

        var entry = catalog.AddGroup(new ModelGroupOptions { Name = "ChatAgent", Models = ["broken", "works"] });

        Assert.True(catalog.TryGet("ChatAgent", out var found));
        Assert.Same(entry, found);
        Assert.Equal(["broken", "works"], found.Members);
        Assert.Equal(ModelEntry.GroupProvider, found.Options.Provider);
        Assert.Equal(["broken", "works"], catalog.Models.Select(m => m.Name));
        Assert.Equal(["ChatAgent"], catalog.RuntimeGroupEntries.Select(m => m.Name));

        var request = new ChatRequest { Model = "ChatAgent", Messages = [new ChatMessage("user", "hello there")], MaxTokens = 5 };
        var text = new List<string>();
        await foreach (var e in found.Backend.StreamAsync(request, CancellationToken.None))
        {
            if (e is TextDeltaEvent delta)
            {
                text.Add(delta.Text);
            }
        }

        Assert.NotEmpty(text);
    }

    [Fact]
    public void Runtime_groups_may_use_aliases_groups_and_earlier_runtime_groups()
    {
        var catalog = new ModelCatalog(
            [new ModelOptions { Name = "a" }, new ModelOptions { Name = "b" }, new ModelOptions { Name = "alias", Target = "b" }],
            [new ModelGroupOptions { Name = "configured", Models = ["a"] }]);
        catalog.AddGroup(new ModelGroupOptions { Name = "first", Models = ["alias", "configured"] });
        var second = catalog.AddGroup(new ModelGroupOptions { Name = "second", Models = ["first"] });
        Assert.Equal(["first"], second.Members);
        Assert.True(catalog.TryGet("second", out _));
    }

    [Fact]
    public void Adding_the_same_name_again_keeps_the_first_definition()
    {
        var catalog = new ModelCatalog(null);
        var first = catalog.AddGroup(new ModelGroupOptions { Name = "g", Models = ["sim-fast"] });
        var again = catalog.AddGroup(new ModelGroupOptions { Name = "g", Models = ["sim-slow"] });
        Assert.Same(first, again);
        Assert.Single(catalog.RuntimeGroupEntries);
    }

    [Fact]
    public void Bad_runtime_groups_are_refused_with_the_reason()
    {
        var catalog = new ModelCatalog(null);
        var clash = Assert.Throws<ModelConfigurationException>(() => catalog.AddGroup(new ModelGroupOptions { Name = "sim-fast", Models = ["sim-slow"] }));
        Assert.Contains("already", clash.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<ModelConfigurationException>(() => catalog.AddGroup(new ModelGroupOptions { Name = "g", Models = ["gpt-9"] }));
        Assert.Contains("gpt-9", unknown.Message, StringComparison.Ordinal);
        Assert.Throws<ModelConfigurationException>(() => catalog.AddGroup(new ModelGroupOptions { Name = "g", Models = [] }));
        Assert.Empty(catalog.RuntimeGroupEntries);
    }

    [Fact]
    public async Task Concurrent_registrations_all_land()
    {
        var catalog = new ModelCatalog(null);
        await Task.WhenAll(Enumerable.Range(0, 50).Select(i => Task.Run(() => catalog.AddGroup(new ModelGroupOptions { Name = $"g{i}", Models = ["sim-fast"] }))));
        Assert.Equal(50, catalog.RuntimeGroupEntries.Count);
        Assert.All(Enumerable.Range(0, 50), i => Assert.True(catalog.TryGet($"g{i}", out _)));
    }
}
