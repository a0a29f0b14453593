using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Providers;
using Sluice.Storage;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// The tenancy API, with the paths and fields of the SaaS LiteLLM integration guide: organizations, model groups,
/// teams (with their first <c>virtual_key</c>), key management and credits. Creating and changing things needs
/// the master key (or open local mode); a team's key may read its own team, keys, balance and ledger, and
/// anything of another team answers 404 exactly like something that does not exist.
/// </summary>
internal sealed class TenancyEndpoints(TenancyRuntime runtime, TenantDirectory directory, ModelGroupRegistry groups, GatewayOptions options)
{
    private const int MaxDescriptionChars = 1_000;
    private const int MaxKeyNameChars = 100;

    private ISluiceStore Store => runtime.Store;

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/api/organizations/create", c => Run(c, CreateOrganizationAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/organizations/{id}", c => Run(c, GetOrganizationAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/organizations/{id}/teams", c => Run(c, ListTeamsAsync)).WithPolicy(EndpointPolicy.Key);

        app.MapPost("/api/model-groups/create", c => Run(c, CreateModelGroupAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/model-groups", c => Run(c, ListModelGroupsAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/model-groups/{name}", c => Run(c, GetModelGroupAsync)).WithPolicy(EndpointPolicy.Key);

        app.MapPost("/api/teams/create", c => Run(c, CreateTeamAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/teams/{id}", c => Run(c, GetTeamAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPut("/api/teams/{id}/model-groups", c => Run(c, SetModelGroupsAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPut("/api/teams/{id}/limits", c => Run(c, SetLimitsAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/teams/{id}/keys", c => Run(c, CreateKeyAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/teams/{id}/keys", c => Run(c, ListKeysAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/teams/{id}/keys/{keyId}/revoke", c => Run(c, RevokeKeyAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapDelete("/api/teams/{id}/keys/{keyId}", c => Run(c, RevokeKeyAsync)).WithPolicy(EndpointPolicy.Key);

        app.MapGet("/api/credits/teams/{id}/balance", c => Run(c, BalanceAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/credits/teams/{id}/add", c => Run(c, AddCreditsAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapPost("/api/credits/teams/{id}/check", c => Run(c, CheckCreditsAsync)).WithPolicy(EndpointPolicy.Key);
        app.MapGet("/api/credits/teams/{id}/transactions", c => Run(c, TransactionsAsync)).WithPolicy(EndpointPolicy.Key);
    }

    private static Task Run(HttpContext context, Func<HttpContext, Task> handler) => ApiHandler.RunAsync(context, () => handler(context));

    private static string Route(HttpContext context, string name) => context.Request.RouteValues[name] as string ?? string.Empty;

    private Task<JsonDocument> ReadAsync(HttpContext context) => ApiJson.ReadAsync(context, options.Limits.MaxRequestBodyBytes);

    // ---- Organizations ----

    private async Task CreateOrganizationAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        using var body = await ReadAsync(context);
        var root = ApiJson.RequireObject(body, ["organization_id", "name", "metadata"]);
        var id = ApiJson.OptionalName(root, "organization_id", NameKind.Id);
        var name = ApiJson.OptionalName(root, "name", NameKind.Label) ?? id
            ?? throw ChatException.BadRequest("name is required, e.g. {\"organization_id\": \"org_acme\", \"name\": \"Acme\"}.", "name", "missing_required_parameter");
        var organization = await Store.CreateOrganizationAsync(name, id, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteOrganization(json, organization));
    }

    private async Task GetOrganizationAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var id = Route(context, "id");
        var organization = await Store.GetOrganizationAsync(id, context.RequestAborted) ?? throw SluiceErrors.NotFound("organization", id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteOrganization(json, organization));
    }

    private async Task ListTeamsAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var id = Route(context, "id");
        _ = await Store.GetOrganizationAsync(id, context.RequestAborted) ?? throw SluiceErrors.NotFound("organization", id);
        var teams = await Store.ListTeamsAsync(id, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("organization_id", id);
            json.WriteNumber("team_count", teams.Count);
            json.WriteStartArray("teams");
            foreach (var team in teams)
            {
                WriteTeam(json, team, null);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        });
    }

    private static void WriteOrganization(Utf8JsonWriter json, Organization organization)
    {
        json.WriteStartObject();
        json.WriteString("organization_id", organization.Id);
        json.WriteString("name", organization.Name);
        json.WriteString("status", "active");
        json.WriteTime("created_at", organization.CreatedAt);
        json.WriteEndObject();
    }

    // ---- Model groups ----

    private async Task CreateModelGroupAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        using var body = await ReadAsync(context);
        var root = ApiJson.RequireObject(body, ["group_name", "name", "models", "display_name", "description"]);
        var name = ApiJson.OptionalName(root, "group_name", NameKind.ModelName) ?? ApiJson.RequiredName(root, "name", NameKind.ModelName, "ChatAgent");
        var models = ApiJson.OptionalNames(root, "models", "model_name");
        if (models is not { Count: > 0 })
        {
            throw ChatException.BadRequest(
                "models is required: the group's models in priority order, e.g. [{\"model_name\": \"sim-fast\", \"priority\": 0}].",
                "models", "missing_required_parameter");
        }

        var group = new NewModelGroup(
            name, models, ApiJson.OptionalName(root, "display_name", NameKind.Label), ApiJson.OptionalName(root, "description", NameKind.Text, MaxDescriptionChars));
        try
        {
            groups.Validate(group);
        }
        catch (ModelConfigurationException ex)
        {
            throw ChatException.BadRequest(ex.Message, "models");
        }

        var stored = await Store.CreateModelGroupAsync(group, context.RequestAborted);
        groups.Register(stored);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteModelGroup(json, stored));
    }

    private async Task ListModelGroupsAsync(HttpContext context)
    {
        var all = await Store.ListModelGroupsAsync(context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartArray();
            foreach (var group in all)
            {
                WriteModelGroup(json, group);
            }

            json.WriteEndArray();
        });
    }

    private async Task GetModelGroupAsync(HttpContext context)
    {
        var name = Route(context, "name");
        var group = await Store.GetModelGroupAsync(name, context.RequestAborted) ?? throw SluiceErrors.NotFound("model group", name);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteModelGroup(json, group));
    }

    private static void WriteModelGroup(Utf8JsonWriter json, ModelGroup group)
    {
        json.WriteStartObject();
        json.WriteString("model_group_id", group.Name);
        json.WriteString("group_name", group.Name);
        json.WriteString("display_name", group.DisplayName ?? group.Name);
        json.WriteString("description", group.Description);
        json.WriteString("status", "active");
        json.WriteStartArray("models");
        for (var i = 0; i < group.Models.Count; i++)
        {
            json.WriteStartObject();
            json.WriteString("model_name", group.Models[i]);
            json.WriteNumber("priority", i);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteTime("created_at", group.CreatedAt);
        json.WriteEndObject();
    }

    // ---- Teams ----

    private async Task CreateTeamAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        using var body = await ReadAsync(context);
        var root = ApiJson.RequireObject(body, TeamFields);
        var organizationId = ApiJson.RequiredName(root, "organization_id", NameKind.Id, "org_acme");
        var teamId = ApiJson.OptionalName(root, "team_id", NameKind.Id);
        var name = ApiJson.OptionalName(root, "team_alias", NameKind.Label) ?? ApiJson.OptionalName(root, "name", NameKind.Label) ?? teamId
            ?? throw ChatException.BadRequest("team_alias (or team_id) is required, e.g. \"team_alias\": \"Engineering\".", "team_alias", "missing_required_parameter");
        var credits = ApiJson.OptionalLong(root, "credits_allocated", 0) ?? 0;
        var modelGroups = ApiJson.OptionalNames(root, "model_groups") ?? [];
        await RequireServedAsync(modelGroups, "model_groups", context.RequestAborted);
        var limits = ApiJson.ReadLimits(root);
        var keyName = ApiJson.OptionalName(root, "key_alias", NameKind.Label, MaxKeyNameChars) ?? "default";

        var created = await Store.CreateTeamAsync(
            organizationId,
            new NewTeam(name, credits, modelGroups, limits, new NewKey(keyName), teamId),
            context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            WriteTeamFields(json, created.Team);
            json.WriteString("virtual_key", created.FirstKey.Secret);
            json.WriteString("key_id", created.FirstKey.Key.Id);
            json.WriteString("message", "Team created. The virtual_key is shown only now: store it safely.");
            json.WriteEndObject();
        });
    }

    private async Task GetTeamAsync(HttpContext context)
    {
        var team = await RequireTeamAsync(context);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteTeam(json, team, null));
    }

    private async Task SetModelGroupsAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var id = Route(context, "id");
        using var body = await ReadAsync(context);
        var root = body.RootElement;
        var names = root.ValueKind == JsonValueKind.Array
            ? ApiJson.Names(root, "model_groups")
            : ApiJson.OptionalNames(ApiJson.RequireObject(body, ["model_groups"]), "model_groups")
                ?? throw ChatException.BadRequest("Send the model groups as a JSON array, e.g. [\"ChatAgent\"].", "model_groups", "missing_required_parameter");
        await RequireServedAsync(names, "model_groups", context.RequestAborted);
        var team = await Store.SetTeamModelGroupsAsync(id, names, context.RequestAborted);
        directory.ForgetTeam(id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteTeam(json, team, null));
    }

    private async Task SetLimitsAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var id = Route(context, "id");
        using var body = await ReadAsync(context);
        var limits = ApiJson.ReadLimits(ApiJson.RequireObject(body, ApiJson.LimitFields)) ?? RateLimits.None;
        var team = await Store.SetTeamLimitsAsync(id, limits, context.RequestAborted);
        directory.ForgetTeam(id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json => WriteTeam(json, team, null));
    }

    private async Task<Team> RequireTeamAsync(HttpContext context)
    {
        var id = Route(context, "id");
        context.GetCaller().RequireTeam(id);
        return await Store.GetTeamAsync(id, context.RequestAborted) ?? throw SluiceErrors.NotFound("team", id);
    }

    /// <summary>Model groups assigned to a team must be names this gateway serves (configured or created here).</summary>
    private async Task RequireServedAsync(IReadOnlyList<string> names, string param, CancellationToken cancellationToken)
    {
        foreach (var name in names)
        {
            if (await groups.ResolveAsync(name, cancellationToken) is null)
            {
                throw ChatException.BadRequest(
                    $"'{name}' is neither a model nor a model group of this gateway. Create it with POST /api/model-groups/create first, or fix the name.",
                    param, "model_not_found");
            }
        }
    }

    private static void WriteTeam(Utf8JsonWriter json, Team team, string? virtualKey)
    {
        json.WriteStartObject();
        WriteTeamFields(json, team);
        if (virtualKey is not null)
        {
            json.WriteString("virtual_key", virtualKey);
        }

        json.WriteEndObject();
    }

    private static void WriteTeamFields(Utf8JsonWriter json, Team team)
    {
        json.WriteString("team_id", team.Id);
        json.WriteString("organization_id", team.OrganizationId);
        json.WriteString("team_alias", team.Name);
        json.WriteNames("model_groups", team.ModelGroups);
        json.WriteNumber("credits_allocated", team.CreditsAllocated);
        json.WriteNumber("credits_remaining", team.CreditsRemaining);
        json.WriteStartObject("credits");
        WriteCredits(json, team);
        json.WriteEndObject();
        json.WriteLimits(team.Limits);
        json.WriteTime("created_at", team.CreatedAt);
    }

    private static void WriteCredits(Utf8JsonWriter json, Team team)
    {
        json.WriteNumber("credits_allocated", team.CreditsAllocated);
        json.WriteNumber("credits_used", team.CreditsAllocated - team.CreditsRemaining);
        json.WriteNumber("credits_remaining", team.CreditsRemaining);
    }

    // ---- Keys ----

    // "metadata" (free-form, as LiteLLM's callers send it) is accepted and not kept: it changes nothing Sluice enforces.
    private static readonly string[] TeamFields =
        ["organization_id", "team_id", "team_alias", "name", "credits_allocated", "model_groups", "key_alias", "metadata", .. ApiJson.LimitFields];

    private static readonly string[] KeyFields = ["models", "model_groups", "key_alias", "name", "expires_at", "metadata", .. ApiJson.LimitFields];

    private async Task CreateKeyAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var id = Route(context, "id");
        using var body = await ReadAsync(context);
        var root = ApiJson.RequireObject(body, KeyFields);
        var models = ApiJson.OptionalNames(root, "models") ?? [];
        var modelGroups = ApiJson.OptionalNames(root, "model_groups") ?? [];
        await RequireServedAsync(models, "models", context.RequestAborted);
        await RequireServedAsync(modelGroups, "model_groups", context.RequestAborted);
        var keyName = ApiJson.OptionalName(root, "key_alias", NameKind.Label, MaxKeyNameChars)
            ?? ApiJson.OptionalName(root, "name", NameKind.Label, MaxKeyNameChars);
        var expires = ApiJson.OptionalTime(root, "expires_at");
        if (expires is { } at && at <= runtime.Time.GetUtcNow())
        {
            throw ChatException.BadRequest("expires_at is in the past; give a future time or leave it out for a key that does not expire.", "expires_at");
        }

        var created = await Store.CreateKeyAsync(
            id,
            new NewKey(keyName, expires, models, modelGroups, ApiJson.ReadLimits(root)),
            context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            WriteKeyFields(json, created.Key, runtime.Time.GetUtcNow());
            json.WriteString("virtual_key", created.Secret);
            json.WriteString("message", "Key created. The virtual_key is shown only now: store it safely.");
            json.WriteEndObject();
        });
    }

    private async Task ListKeysAsync(HttpContext context)
    {
        var team = await RequireTeamAsync(context);
        var keys = await Store.ListKeysAsync(team.Id, context.RequestAborted);
        var now = runtime.Time.GetUtcNow();
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("team_id", team.Id);
            json.WriteStartArray("keys");
            foreach (var key in keys)
            {
                json.WriteStartObject();
                WriteKeyFields(json, key, now);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        });
    }

    private async Task RevokeKeyAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var key = await Store.RevokeKeyAsync(Route(context, "id"), Route(context, "keyId"), context.RequestAborted);
        directory.ForgetKey(key.Id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            WriteKeyFields(json, key, runtime.Time.GetUtcNow());
            json.WriteString(
                "message",
                $"Key revoked. This gateway refuses it at once; other gateway processes sharing the database within {options.Tenancy.KeyCacheSeconds:0.#} s.");
            json.WriteEndObject();
        });
    }

    private static void WriteKeyFields(Utf8JsonWriter json, VirtualKey key, DateTimeOffset now)
    {
        json.WriteString("key_id", key.Id);
        json.WriteString("team_id", key.TeamId);
        json.WriteString("key_alias", key.Name);
        json.WriteString("key_prefix", key.Prefix);
        json.WriteString("status", key.RevokedAt is not null ? "revoked" : key.IsActiveAt(now) ? "active" : "expired");
        json.WriteNames("models", key.AllowedModels);
        json.WriteNames("model_groups", key.AllowedModelGroups);
        json.WriteLimits(key.Limits);
        json.WriteTime("created_at", key.CreatedAt);
        json.WriteTime("expires_at", key.ExpiresAt);
        json.WriteTime("revoked_at", key.RevokedAt);
    }

    // ---- Credits ----

    private async Task BalanceAsync(HttpContext context)
    {
        var team = await RequireTeamAsync(context);
        var held = await Store.CountOpenJobsAsync(team.Id, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("team_id", team.Id);
            WriteCredits(json, team);
            WriteHolds(json, team.CreditsRemaining, held);
            json.WriteEndObject();
        });
    }

    /// <summary>Credits held by open jobs (one each) and what is left to open new jobs with.</summary>
    private static void WriteHolds(Utf8JsonWriter json, long remaining, int held)
    {
        json.WriteNumber("credits_held", held);
        json.WriteNumber("credits_available", Math.Max(0, remaining - held));
    }

    private async Task AddCreditsAsync(HttpContext context)
    {
        context.GetCaller().RequireOperator();
        var id = Route(context, "id");
        using var body = await ReadAsync(context);
        var root = ApiJson.RequireObject(body, ["credits_amount", "credits", "reason"]);
        var amount = ApiJson.OptionalLong(root, "credits_amount", 1) ?? ApiJson.OptionalLong(root, "credits", 1)
            ?? throw ChatException.BadRequest("credits_amount is required: a positive number of credits, e.g. {\"credits_amount\": 500}.", "credits_amount", "missing_required_parameter");
        var reason = ApiJson.OptionalName(root, "reason", NameKind.Label) ?? "credits added";
        var transaction = await Store.AddCreditsAsync(id, amount, reason, context.RequestAborted);
        directory.ForgetTeam(id);
        var team = await Store.GetTeamAsync(id, context.RequestAborted) ?? throw SluiceErrors.NotFound("team", id);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("team_id", id);
            json.WriteNumber("credits_added", amount);
            WriteCredits(json, team);
            json.WritePropertyName("transaction");
            WriteTransaction(json, transaction);
            json.WriteEndObject();
        });
    }

    private async Task CheckCreditsAsync(HttpContext context)
    {
        var id = Route(context, "id");
        context.GetCaller().RequireTeam(id);
        using var body = await ReadAsync(context);
        var required = ApiJson.OptionalLong(ApiJson.RequireObject(body, ["credits_required"]), "credits_required", 0) ?? 1;
        var balance = await Store.GetBalanceAsync(id, context.RequestAborted);
        var held = await Store.CountOpenJobsAsync(id, context.RequestAborted);

        // What a new job could use: credits held by open jobs are spoken for.
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("team_id", id);
            json.WriteBoolean("available", balance - held >= required);
            json.WriteNumber("credits_required", required);
            json.WriteNumber("credits_remaining", balance);
            WriteHolds(json, balance, held);
            json.WriteEndObject();
        });
    }

    private async Task TransactionsAsync(HttpContext context)
    {
        var team = await RequireTeamAsync(context);
        var (limit, offset) = ApiJson.Page(context);
        var transactions = await Store.ListTransactionsAsync(team.Id, limit, offset, context.RequestAborted);
        await ApiJson.WriteAsync(context, StatusCodes.Status200OK, json =>
        {
            json.WriteStartObject();
            json.WriteString("team_id", team.Id);
            json.WriteNumber("limit", limit);
            json.WriteNumber("offset", offset);
            json.WriteStartArray("transactions");
            foreach (var transaction in transactions)
            {
                WriteTransaction(json, transaction);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        });
    }

    private static void WriteTransaction(Utf8JsonWriter json, CreditTransaction transaction)
    {
        json.WriteStartObject();
        json.WriteNumber("transaction_id", transaction.Id);
        json.WriteString("team_id", transaction.TeamId);
        json.WriteString("transaction_type", transaction.Amount < 0 ? "deduction" : transaction.Reason == CreditReasons.InitialAllocation ? "allocation" : "addition");
        json.WriteNumber("credits_amount", Math.Abs(transaction.Amount));
        json.WriteNumber("amount", transaction.Amount);
        json.WriteNumber("balance_after", transaction.BalanceAfter);
        json.WriteString("reason", transaction.Reason);
        json.WriteString("job_id", transaction.JobId);
        json.WriteTime("created_at", transaction.CreatedAt);
        json.WriteEndObject();
    }
}
