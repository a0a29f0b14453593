using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Sluice.Providers;
using Sluice.Providers.Routing;
using Sluice.Providers.Simulation;
using Sluice.Testing;

namespace Sluice.Gateway.Tests;

/// <summary>Groups, aliases, retries and fallbacks — only ever before the first byte.</summary>
public sealed class RoutingTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync() => _gateway = await TestGateway.StartAsync(o =>
    {
        o.Retry = new RetryOptions { BaseDelayMs = 20, MaxDelayMs = 100, MaxRetryAfterSeconds = 5 };
        o.Models =
        [
            BuiltInModels.Fast,
            new ModelOptions { Name = "down-500", FailStatus = 500, MaxAttempts = 2 },
            new ModelOptions { Name = "busy-once", FailStatus = 429, FailTimes = 1, RetryAfterSeconds = 1, MaxAttempts = 2 },
            new ModelOptions { Name = "busy-long", FailStatus = 429, RetryAfterSeconds = 60, MaxAttempts = 3 },
            new ModelOptions { Name = "unauthorized", FailStatus = 401 },
            new ModelOptions { Name = "breaks-mid", FailAfterTokens = 3 },
            new ModelOptions { Name = "spare" },
            new ModelOptions { Name = "fast-alias", Target = "sim-fast" },
        ];
        o.ModelGroups =
        [
            new ModelGroupOptions { Name = "down-then-spare", Models = ["down-500", "spare"] },
            new ModelGroupOptions { Name = "long-wait-then-spare", Models = ["busy-long", "spare"] },
            new ModelGroupOptions { Name = "unauthorized-then-spare", Models = ["unauthorized", "spare"] },
            new ModelGroupOptions { Name = "breaks-then-spare", Models = ["breaks-mid", "spare"] },
            new ModelGroupOptions { Name = "all-down", Models = ["down-500", "busy-long"] },
        ];
    });

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    private int Started(string model)
    {
        Assert.True(_gateway.Gateway.GetRequiredService<ModelCatalog>().TryGet(model, out var entry));
        return ((SimulatedChatBackend)entry.Source!).RequestsStarted;
    }

    private async Task<List<JsonElement>> StreamAsync(string model)
    {
        using var response = await _gateway.PostChatAsync($$"""{"model":"{{model}}","prompt":"Hello routing","stream":true,"max_tokens":8}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();
        Assert.True(events[^1].IsDone, "the stream must complete");
        return events.Take(events.Count - 1).Select(e => e.Json()).ToList();
    }

    [Fact]
    public async Task A_5xx_is_retried_then_the_next_group_member_answers()
    {
        var before = (Started("down-500"), Started("spare"));
        var chunks = await StreamAsync("down-then-spare");
        Assert.All(chunks, c => Assert.Equal("down-then-spare", c.GetProperty("model").GetString()));
        Assert.Equal(before.Item1 + 2, Started("down-500"));
        Assert.Equal(before.Item2 + 1, Started("spare"));
    }

    [Fact]
    public async Task A_429_with_retry_after_is_honoured_then_the_retry_succeeds()
    {
        var started = Stopwatch.GetTimestamp();
        await StreamAsync("busy-once");
        Assert.True(Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(900), "Retry-After: 1 must be waited out");
        Assert.Equal(2, Started("busy-once"));
    }

    [Fact]
    public async Task A_retry_after_beyond_the_cap_moves_on_to_the_next_member_at_once()
    {
        var before = Started("busy-long");
        var started = Stopwatch.GetTimestamp();
        await StreamAsync("long-wait-then-spare");
        Assert.True(Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(5));
        Assert.Equal(before + 1, Started("busy-long"));
    }

    [Fact]
    public async Task Other_4xx_are_returned_as_they_are_without_fallback()
    {
        var spareBefore = Started("spare");
        using var response = await _gateway.PostChatAsync("""{"model":"unauthorized-then-spare","prompt":"hi","stream":true}""");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("authentication_error", error.GetProperty("type").GetString());
        Assert.Equal(spareBefore, Started("spare"));
    }

    [Fact]
    public async Task After_the_first_byte_a_failure_is_an_error_frame_not_a_fallback()
    {
        var spareBefore = Started("spare");
        using var response = await _gateway.PostChatAsync("""{"model":"breaks-then-spare","prompt":"hi","stream":true,"max_tokens":20}""");
        var events = (await SseTestClient.ReadAllAsync(response)).Where(e => !e.IsComment).ToList();
        Assert.DoesNotContain(events, e => e.IsDone);
        Assert.True(events[^1].Json().TryGetProperty("error", out _));
        Assert.Equal(spareBefore, Started("spare"));
    }

    [Fact]
    public async Task When_every_member_fails_the_client_gets_the_last_status_and_every_reason()
    {
        using var response = await _gateway.PostChatAsync("""{"model":"all-down","prompt":"hi"}""");
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.Equal("60", Assert.Single(response.Headers.GetValues("Retry-After")));
        var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString();
        // Each member's failure once, with how many attempts ended that way.
        Assert.Matches(@"down-500( \(\d attempts\))?: 500 ", message);
        Assert.Matches(@"busy-long( \(\d attempts\))?: 429 ", message);
    }

    [Fact]
    public async Task Aliases_and_groups_are_served_and_listed()
    {
        var chunks = await StreamAsync("fast-alias");
        Assert.Equal("fast-alias", chunks[0].GetProperty("model").GetString());

        var models = JsonDocument.Parse(await _gateway.Client.GetStringAsync("v1/models")).RootElement.GetProperty("data")
            .EnumerateArray().ToDictionary(m => m.GetProperty("id").GetString()!, m => m.GetProperty("owned_by").GetString());
        Assert.Equal("sluice-group", models["down-then-spare"]);
        Assert.Equal("sluice-simulation", models["sim-fast"]);
    }

    [Theory]
    [InlineData("""{"Models":[{"Name":"a"}],"ModelGroups":[{"Name":"g","Models":["nope"]}]}""", "ModelGroups[0]", "nope")]
    [InlineData("""{"Models":[{"Name":"a"}],"ModelGroups":[{"Name":"a","Models":["a"]}]}""", "ModelGroups[0]", "unique")]
    [InlineData("""{"Models":[{"Name":"a"}],"ModelGroups":[{"Name":"g","Models":[]}]}""", "ModelGroups[0]", "lists no models")]
    [InlineData("""{"Models":[{"Name":"a","Target":"b"},{"Name":"b","Target":"a"}]}""", "Models[0]", "cycle")]
    [InlineData("""{"Models":[{"Name":"a","Target":"missing"}]}""", "Models[0]", "missing")]
    [InlineData("""{"Models":[{"Name":"a","Provider":"psychic"}]}""", "Models[0]", "psychic")]
    [InlineData("""{"Models":[{"Name":"a"},{"Name":"a"}]}""", "Models[1]", "repeats")]
    public void Configuration_mistakes_name_the_entry_and_the_fix(string json, string entry, string detail)
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, json);
            var options = Hosting.GatewayConfiguration.Bind(Hosting.GatewayConfiguration.Build(file));
            var ex = Assert.Throws<ModelConfigurationException>(() => new ModelCatalog(options.Models, options.ModelGroups));
            Assert.Contains(entry, ex.Message, StringComparison.Ordinal);
            Assert.Contains(detail, ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
