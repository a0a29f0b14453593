using System.Net;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Gateway.Mqtt;

namespace Sluice.Gateway.Tests.Http;

/// <summary>Authentication fails closed: every endpoint declares its key policy, and one that does not is refused.</summary>
public sealed class EndpointPolicyTests
{
    [Fact]
    public async Task Every_mapped_endpoint_declares_a_key_policy_and_only_the_public_few_need_no_key()
    {
        var data = Path.Combine(Path.GetTempPath(), "sluice-policy-" + Guid.NewGuid().ToString("N"));
        await using var app = await SluiceGateway.BuildAsync(
            new GatewayOptions { Port = 0, DataDirectory = data, Models = [.. Sluice.Providers.Simulation.BuiltInModels.All] },
            configureLogging: l => l.SetMinimumLevel(LogLevel.Warning));
        var endpoints = ((IEndpointRouteBuilder)app).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>().ToList();

        Assert.True(endpoints.Count > 40, $"only {endpoints.Count} endpoints found");
        var undeclared = endpoints.Where(e => e.Metadata.GetMetadata<EndpointPolicy>() is null).Select(e => e.RoutePattern.RawText).ToList();
        Assert.Empty(undeclared);

        // The public ones: the web chat page and its assets, liveness and readiness, the JSON 404. Everything else needs a key.
        var open = endpoints.Where(e => !e.Metadata.GetMetadata<EndpointPolicy>()!.RequiresKey).Select(e => e.RoutePattern.RawText!).ToList();
        Assert.All(open, pattern => Assert.True(
            pattern is "/" or "/health" or "/health/live" or "/health/ready" or "{*path}" || pattern.StartsWith("/webchat/", StringComparison.Ordinal), $"{pattern} needs no key"));
        Assert.Contains("/v1/chat/completions", endpoints.Where(e => e.Metadata.GetMetadata<EndpointPolicy>()!.RequiresKey).Select(e => e.RoutePattern.RawText));
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(data, recursive: true);
    }

    [Fact]
    public void A_route_without_a_policy_stops_the_start()
    {
        var declared = new RouteEndpoint(_ => Task.CompletedTask, Microsoft.AspNetCore.Routing.Patterns.RoutePatternFactory.Parse("/ok"), 0, new EndpointMetadataCollection(EndpointPolicy.Key), "ok");
        var forgotten = new RouteEndpoint(_ => Task.CompletedTask, Microsoft.AspNetCore.Routing.Patterns.RoutePatternFactory.Parse("/new-feature"), 0, EndpointMetadataCollection.Empty, "new feature");

        EndpointPolicies.Verify([declared]);
        var error = Assert.Throws<InvalidOperationException>(() => EndpointPolicies.Verify([declared, forgotten]));
        Assert.Contains("new feature", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task At_request_time_an_endpoint_without_a_policy_is_refused_and_consulting_the_caller_without_one_throws()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddSingleton(new GatewayOptions());
        await using var app = builder.Build();
        app.UseRouting();
        app.Use(HttpCallContext.AssignRequestIdAsync);
        app.Use(next => EndpointPolicies.Authenticate(next, app.Services));
        var reached = false;
        app.MapGet("/forgotten", context =>
        {
            reached = true;
            _ = context.GetCaller();
            return Task.CompletedTask;
        });
        await app.StartAsync();
        using var client = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };

        using var response = await client.GetAsync("forgotten");
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("endpoint_not_configured", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.False(reached);

        var context = new DefaultHttpContext();
        Assert.Throws<InvalidOperationException>(() => context.GetCaller());
        await app.StopAsync();
    }

    [Fact]
    public void The_call_pipeline_and_relay_know_nothing_of_ASP_NET()
    {
        // Calls/, Relay/ and Tenancy/ are transport-neutral: HTTP, WebSocket and MQTT all drive them.
        var neutral = typeof(MqttBridge).Assembly.GetTypes()
            .Where(t => t.Namespace is "Sluice.Gateway.Calls" or "Sluice.Gateway.Relay" or "Sluice.Gateway.Tenancy")
            .ToList();
        Assert.NotEmpty(neutral);
        var offenders = neutral
            .SelectMany(t => Members(t).Select(type => (Owner: t, Uses: type)))
            .Where(p => p.Uses.Namespace?.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) == true)
            .Select(p => $"{p.Owner.Name} uses {p.Uses.FullName}")
            .Distinct()
            .ToList();
        Assert.Empty(offenders);
    }

    private static IEnumerable<Type> Members(Type type)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (var field in type.GetFields(all))
        {
            yield return field.FieldType;
        }

        foreach (var method in type.GetMethods(all))
        {
            yield return method.ReturnType;
            foreach (var parameter in method.GetParameters())
            {
                yield return parameter.ParameterType;
            }
        }

        foreach (var constructor in type.GetConstructors(all))
        {
            foreach (var parameter in constructor.GetParameters())
            {
                yield return parameter.ParameterType;
            }
        }
    }
}
