using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Sluice.Client;

namespace Sluice.Samples.Examples;

/// <summary>What <see cref="Init"/> set up.</summary>
/// <param name="OrganizationId">The organization (created once, reused).</param>
/// <param name="TeamId">The new team.</param>
/// <param name="VirtualKey">The team's key, shown once: the examples' <c>--api-key</c>.</param>
/// <param name="Credits">The team's credits.</param>
public sealed record SampleTeam(string OrganizationId, string TeamId, string VirtualKey, long Credits);

/// <summary>
/// 0. Set-up for the SaaS flow (as an operator, with the master key): an organization, a team with credits allowed to
/// use the simulated models, and its virtual key — printed with the command that makes the other examples use it.
/// </summary>
public static class Init
{
    /// <summary>The organization the examples' teams belong to.</summary>
    public const string OrganizationId = "org_samples";

    /// <summary>Credits given to a new team: each completed job costs one.</summary>
    public const long Credits = 10;

    /// <summary>Creates (or reuses) the organization and creates a new team; prints its key and how to use it.</summary>
    public static async Task<SampleTeam> RunAsync(SampleContext context, string masterKey, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        using var http = new HttpClient { BaseAddress = context.Endpoint, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", masterKey);

        // The organization is created once; a second init reuses it.
        using (var existing = await http.GetAsync(new Uri($"api/organizations/{OrganizationId}", UriKind.Relative), cancellationToken))
        {
            if (!existing.IsSuccessStatusCode)
            {
                await PostAsync(http, "api/organizations/create", new { organization_id = OrganizationId, name = "Sluice samples" }, cancellationToken);
                await context.Output.WriteLineAsync($"Created organization {OrganizationId}.");
            }
        }

        using var team = await PostAsync(
            http,
            "api/teams/create",
            new
            {
                organization_id = OrganizationId,
                // Team names are unique within an organization: each init makes a new one.
                team_alias = "Samples " + Guid.NewGuid().ToString("N")[..8],
                model_groups = new[] { "sim-realistic", "sim-fast", "sim-slow" },
                credits_allocated = Credits,
            },
            cancellationToken);
        var result = new SampleTeam(
            OrganizationId,
            team.RootElement.GetProperty("team_id").GetString()!,
            team.RootElement.GetProperty("virtual_key").GetString()!,
            team.RootElement.GetProperty("credits_remaining").GetInt64());

        await context.Output.WriteLineAsync($"Created team {result.TeamId} with {result.Credits} credits (models sim-realistic, sim-fast, sim-slow).");
        await context.Output.WriteLineAsync("Its key is shown only now. To run the examples as this team (a job per run, one credit per completed job):");
        await context.Output.WriteLineAsync($"  export SLUICE_API_KEY={result.VirtualKey}");
        await context.Output.WriteLineAsync("  dotnet run --project samples/Sluice.Samples -- basic-streaming");
        return result;
    }

    private static async Task<JsonDocument> PostAsync(HttpClient http, string path, object body, CancellationToken cancellationToken)
    {
        using var response = await http.PostAsJsonAsync(new Uri(path, UriKind.Relative), body, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new SluiceBadRequestException(
                $"POST /{path} answered {(int)response.StatusCode}: {text.Trim()} Check the master key (--master-key or SLUICE_MASTER_KEY, as given to 'sluice serve') and --url.",
                new SluiceErrorDetails(StatusCode: (int)response.StatusCode, Message: text));
        }

        return JsonDocument.Parse(text);
    }
}
