using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace Sluice.Fuzz.Tests;

/// <summary>
/// Malformed and hostile requests for every endpoint and dialect, against a real gateway (Kestrel socket, master key,
/// SQLite store): no 5xx, every error body JSON in the endpoint's dialect, nothing stored for a refused request, and the
/// gateway healthy afterwards. 2,400 cases from a fixed seed by default; <c>bench/fuzz.sh --cases N --seed S</c> runs
/// any number (<c>SLUICE_FUZZ_CASES</c>, <c>SLUICE_FUZZ_SEED</c>, <c>SLUICE_FUZZ_CASE</c> for one case).
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Every_endpoint_the_gateway_maps_has_a_working_fuzz_template()
    {
        await using var gateway = await FuzzGateway.StartAsync();
        var covered = EndpointCatalog.All.Select(e => (e.Method, e.Pattern)).ToHashSet();
        var missing = gateway.MappedEndpoints.Where(route => !covered.Contains(route) && !EndpointCatalog.CoveredBySibling(route)).ToList();
        Assert.True(missing.Count == 0, "Endpoints without a fuzz template (add them to EndpointCatalog): " + string.Join(", ", missing));
        var wrong = await new FuzzRunner(gateway, FuzzSettings.FromEnvironment()).CheckTemplatesAsync();
        Assert.True(wrong.Count == 0, "Templates that do not work as they are (fix them in EndpointCatalog):\n" + string.Join("\n", wrong));
        var stale = covered.Where(spec => !gateway.MappedEndpoints.Contains(spec) && !gateway.MappedEndpoints.Contains(("*", spec.Pattern))).ToList();
        Assert.True(stale.Count == 0, "Fuzz templates for endpoints the gateway no longer maps: " + string.Join(", ", stale));
    }

    [Fact]
    public async Task Malformed_and_hostile_requests_never_get_a_5xx_or_a_body_that_is_not_a_JSON_error()
    {
        var settings = FuzzSettings.FromEnvironment();
        output.WriteLine($"fuzz: {settings.Cases} cases, seed {settings.Seed}{(settings.OnlyCase is { } only ? $", only case {only}" : string.Empty)}");
        await using var gateway = await FuzzGateway.StartAsync();
        var runner = new FuzzRunner(gateway, settings);
        var clock = Stopwatch.StartNew();
        await runner.RunAsync();
        await runner.CheckHealthyAsync();
        clock.Stop();

        var report = new StringBuilder();
        report.AppendLine($"fuzz: {runner.Run} cases in {clock.Elapsed.TotalSeconds:F1} s (seed {settings.Seed}): " +
            string.Join(", ", runner.Kinds.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"{k.Value} {k.Key}")));
        report.AppendLine("statuses: " + string.Join(", ", runner.Statuses.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => $"{s.Key} x{s.Value}")));
        report.AppendLine($"5xx: {runner.Statuses.Where(s => s.Key.Length == 3 && s.Key[0] == '5').Sum(s => s.Value)}");
        report.AppendLine("per endpoint: " + string.Join(", ", runner.Endpoints.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key} x{e.Value}")));
        output.WriteLine(report.ToString());
        foreach (var failure in runner.Failures.Take(25))
        {
            output.WriteLine(failure.ToString());
        }

        Assert.True(runner.Failures.Count == 0, $"{runner.Failures.Count} fuzz case(s) failed; first: {runner.Failures.FirstOrDefault()}");
    }
}
