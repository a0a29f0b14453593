using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Sluice.Gateway.Tests.Observability;

/// <summary>Reads <c>GET /metrics</c> and finds series by name and labels.</summary>
internal static partial class MetricsScrape
{
    public static async Task<string> ReadAsync(HttpClient client)
    {
        using var response = await client.GetAsync("metrics");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain; version=0.0.4", response.Content.Headers.ContentType!.ToString(), StringComparison.Ordinal);
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The value of the series <paramref name="name"/> with exactly <paramref name="labels"/>; null when absent.</summary>
    public static double? Value(string text, string name, params (string Name, string Value)[] labels)
    {
        var expected = string.Join(",", labels.Select(l => $"{l.Name}=\"{l.Value}\""));
        foreach (var line in text.Split('\n'))
        {
            var match = SeriesLine().Match(line);
            if (!match.Success || match.Groups["name"].Value != name)
            {
                continue;
            }

            var found = match.Groups["labels"].Success ? match.Groups["labels"].Value : string.Empty;
            var sorted = string.Join(",", found.Split(',', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal));
            if (sorted == string.Join(",", expected.Split(',', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal)))
            {
                return double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    /// <summary>Polls until the series reaches <paramref name="expected"/> (the relay reports just after the last byte), then returns the scrape.</summary>
    public static async Task<string> WaitForAsync(HttpClient client, double expected, string name, params (string Name, string Value)[] labels)
    {
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (true)
        {
            var text = await ReadAsync(client);
            if (Value(text, name, labels) is { } value && value >= expected || Stopwatch.GetTimestamp() > deadline)
            {
                return text;
            }

            await Task.Delay(50);
        }
    }

    [GeneratedRegex("^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(?<labels>[^}]*)\\})? (?<value>\\S+)$")]
    private static partial Regex SeriesLine();
}
