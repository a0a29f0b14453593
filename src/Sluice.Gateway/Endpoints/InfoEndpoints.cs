using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Cluster;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary><c>GET /v1/models</c>, <c>GET /v1/models/{id}</c>, <c>GET /health</c> and the JSON 404 for unknown paths.</summary>
internal sealed class InfoEndpoints(ModelCatalog catalog, ModelResolver resolver, TenantDirectory directory, UsageTotals totals, KeyAuthenticator authenticator, GatewayDrain drain, ClusterNode node, StreamRegistry streams)
{
    private static readonly long StartedAt = Stopwatch.GetTimestamp();
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>
    /// <c>GET /v1/models</c>: the models the caller can call (a team key sees its team's and key's models only). Anthropic
    /// clients (the request carries <c>anthropic-version</c>) also get Anthropic's fields: <c>type</c>,
    /// <c>display_name</c>, <c>created_at</c> per model and <c>has_more</c>, <c>first_id</c>, <c>last_id</c>.
    /// </summary>
    public async Task ListModelsAsync(HttpContext context)
    {
        var allowed = await AllowedAsync(context);
        var anthropic = IsAnthropic(context);
        var models = resolver.All.Where(m => allowed(m.Name)).ToList();
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var model in models)
        {
            WriteModel(json, model, anthropic);
        }

        json.WriteEndArray();
        if (anthropic)
        {
            // Everything fits in one page: Anthropic's paging fields say so.
            json.WriteBoolean("has_more", false);
            WriteNullableString(json, "first_id", models.Count > 0 ? models[0].Name : null);
            WriteNullableString(json, "last_id", models.Count > 0 ? models[^1].Name : null);
        }

        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }

    /// <summary><c>GET /v1/models/{id}</c>: one model (configured, alias or group, created through the API included).</summary>
    public async Task GetModelAsync(HttpContext context)
    {
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        try
        {
            var model = await resolver.ResolveAsync(id, CallDialect.OpenAI, context.RequestAborted);
            if (!(await AllowedAsync(context))(model.Name))
            {
                throw SluiceErrors.ModelNotFound(id);
            }

            context.Response.ContentType = "application/json";
            using var json = new Utf8JsonWriter(context.Response.BodyWriter);
            WriteModel(json, model, IsAnthropic(context));
            await json.FlushAsync(context.RequestAborted);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, IsAnthropic(context) ? ErrorDialect.Anthropic : ErrorDialect.OpenAI);
        }
    }

    /// <summary>Anthropic SDKs send <c>anthropic-version</c> on every request; OpenAI clients never do.</summary>
    private static bool IsAnthropic(HttpContext context) => context.Request.Headers.ContainsKey("anthropic-version");

    private static void WriteNullableString(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }

    /// <summary>Which model names the caller may call (everything for the operator and open mode).</summary>
    private async Task<Func<string, bool>> AllowedAsync(HttpContext context)
    {
        var caller = context.GetCaller();
        if (caller.Key is not { } key || await directory.GetTeamAsync(key.TeamId, context.RequestAborted) is not { } team)
        {
            return caller.Key is null ? static _ => true : static _ => false;
        }

        return name => CallAdmission.MayUse(key, team, name);
    }

    /// <summary><c>GET /health/live</c>: 200 while the process answers at all, draining included (do not restart it then).</summary>
    public static Task LiveAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync("{\"status\":\"live\"}");
    }

    /// <summary>
    /// <c>GET /health/ready</c>: 200 when this instance takes new streams, 503 from the moment it starts draining
    /// (a load balancer stops sending it new work; the running streams and resumes are still served).
    /// </summary>
    public Task ReadyAsync(HttpContext context)
    {
        var draining = drain.IsDraining;
        context.Response.StatusCode = draining ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        if (draining)
        {
            context.Response.Headers.RetryAfter = "1";
        }

        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("status", draining ? "draining" : "ready");
        json.WriteString("instance", node.InstanceId);
        json.WriteNumber("streams_running", drain.InFlight);
        if (draining)
        {
            json.WriteString("message", "This instance is shutting down: it finishes its running streams and takes no new ones. Send new requests to another instance.");
        }

        json.WriteEndObject();
        json.Flush();
        return Task.CompletedTask;
    }

    /// <summary>
    /// <c>GET /health</c>: liveness for anyone (<c>{"status": "ok"}</c>, no key needed, so load balancers can probe it);
    /// the model count, usage totals and runtime figures only for the operator (the master key, or open local mode) —
    /// they tell outsiders how busy the gateway is and what it serves.
    /// </summary>
    public async Task HealthAsync(HttpContext context)
    {
        var (caller, _) = await authenticator.AuthenticateAsync(EndpointPolicies.TokenOf(context.Request), context.RequestAborted);
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("status", "ok");
        if (caller is not { IsOperator: true })
        {
            json.WriteEndObject();
            await json.FlushAsync(context.RequestAborted);
            return;
        }

        json.WriteNumber("models", catalog.Models.Count);
        json.WriteNumber("uptime_seconds", Math.Round(Stopwatch.GetElapsedTime(StartedAt).TotalSeconds, 1));
        json.WriteStartObject("usage");
        json.WriteNumber("requests", totals.Requests);
        json.WriteNumber("completed", totals.Completed);
        json.WriteNumber("failed", totals.Failed);
        json.WriteNumber("abandoned", totals.Abandoned);
        json.WriteNumber("prompt_tokens", totals.PromptTokens);
        json.WriteNumber("completion_tokens", totals.CompletionTokens);
        json.WriteEndObject();
        json.WriteStartObject("replay");
        json.WriteNumber("streams", streams.Count);
        json.WriteNumber("reserved_bytes", streams.TotalBytes);
        json.WriteNumber("budget_bytes", streams.Options.ReplayBudgetBytes);
        json.WriteNumber("pooled_segments", streams.PooledSegments);
        json.WriteEndObject();
        json.WriteStartObject("runtime");
        json.WriteNumber("allocated_bytes", GC.GetTotalAllocatedBytes());
        json.WriteNumber("heap_bytes", GC.GetTotalMemory(forceFullCollection: false));
        json.WriteNumber("gen0_collections", GC.CollectionCount(0));
        json.WriteNumber("gen1_collections", GC.CollectionCount(1));
        json.WriteNumber("gen2_collections", GC.CollectionCount(2));
        json.WriteNumber("gc_pause_ms", Math.Round(GC.GetTotalPauseDuration().TotalMilliseconds, 3));
        json.WriteNumber("thread_pool_threads", ThreadPool.ThreadCount);
        json.WriteNumber("thread_pool_completed_items", ThreadPool.CompletedWorkItemCount);
        json.WriteNumber("lock_contentions", Monitor.LockContentionCount);
        json.WriteEndObject();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }

    /// <summary>
    /// The JSON 404 for unknown paths, in the dialect of the clients that call near it: Ollama clients probe
    /// <c>/api/…</c> (and print an OpenAI-shaped body as "[object Object]"), Anthropic clients <c>/v1/messages/…</c>.
    /// </summary>
    public static Task NotFoundAsync(HttpContext context)
    {
        var path = context.Request.Path;
        var dialect = UnhandledErrors.DialectOfPath(path);
        var hint = dialect == ErrorDialect.Ollama
            ? "The Ollama API is at POST /api/chat, POST /api/generate, GET /api/tags; Sluice's own at /api/sessions, /api/jobs, /api/llm/chat/stream."
            : dialect == ErrorDialect.Anthropic
                ? "The Anthropic Messages API is at POST /v1/messages and POST /v1/messages/count_tokens (message batches are not served); models at GET /v1/models."
            : path.StartsWithSegments("/api")
                ? "Sluice's API is listed in the README (teams and keys under /api/teams, credits under /api/credits, sessions, jobs)."
                : "Chat is at POST /v1/chat/completions; models at GET /v1/models.";
        return ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, new ErrorInfo(
            $"No endpoint {context.Request.Method} {path}. {hint}", ErrorTypes.InvalidRequest, null, "unknown_url"), dialect: dialect);
    }

    private void WriteModel(Utf8JsonWriter json, ModelEntry model, bool anthropic)
    {
        json.WriteStartObject();
        json.WriteString("id", model.Name);
        json.WriteString("object", "model");
        json.WriteNumber("created", _created);
        if (anthropic)
        {
            json.WriteString("type", "model");
            json.WriteString("display_name", model.Name);
            json.WriteString("created_at", DateTimeOffset.FromUnixTimeSeconds(_created).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        }

        json.WriteString("owned_by", model.OwnedBy);
        if (model.Options.Description is { } description)
        {
            json.WriteString("description", description);
        }

        json.WriteNumber("context_window", model.Options.ContextWindow);
        json.WriteNumber("max_output_tokens", model.Options.MaxOutputTokens);

        // Configured but not callable (its key variable is unset): listed, with the reason, rather than hidden.
        if (model.UnavailableReason is { } reason)
        {
            json.WriteBoolean("available", false);
            json.WriteString("unavailable_reason", reason);
        }

        json.WriteEndObject();
    }
}
