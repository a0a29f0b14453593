using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary><c>GET /v1/models</c>, <c>GET /v1/models/{id}</c>, <c>GET /health</c> and the JSON 404 for unknown paths.</summary>
internal sealed class InfoEndpoints(ModelCatalog catalog, UsageTotals totals)
{
    private static readonly long StartedAt = Stopwatch.GetTimestamp();
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public Task ListModelsAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var model in catalog.Models.Concat(catalog.RuntimeGroupEntries))
        {
            WriteModel(json, model);
        }

        json.WriteEndArray();
        json.WriteEndObject();
        json.Flush();
        return Task.CompletedTask;
    }

    public Task GetModelAsync(HttpContext context)
    {
        var id = context.Request.RouteValues["id"] as string ?? string.Empty;
        if (!catalog.TryGet(id, out var model))
        {
            return ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, new ErrorInfo(
                $"The model '{id}' does not exist. GET /v1/models lists the models this gateway serves.",
                ErrorTypes.InvalidRequest, "model", "model_not_found"));
        }

        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        WriteModel(json, model);
        json.Flush();
        return Task.CompletedTask;
    }

    public Task HealthAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("status", "ok");
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
        json.WriteStartObject("runtime");
        json.WriteNumber("allocated_bytes", GC.GetTotalAllocatedBytes());
        json.WriteNumber("heap_bytes", GC.GetTotalMemory(forceFullCollection: false));
        json.WriteNumber("gen0_collections", GC.CollectionCount(0));
        json.WriteNumber("gen1_collections", GC.CollectionCount(1));
        json.WriteNumber("gen2_collections", GC.CollectionCount(2));
        json.WriteNumber("thread_pool_threads", ThreadPool.ThreadCount);
        json.WriteEndObject();
        json.WriteEndObject();
        json.Flush();
        return Task.CompletedTask;
    }

    public static Task NotFoundAsync(HttpContext context) =>
        ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, new ErrorInfo(
            $"No endpoint {context.Request.Method} {context.Request.Path}. Chat is at POST /v1/chat/completions; models at GET /v1/models.",
            ErrorTypes.InvalidRequest, null, "unknown_url"));

    private void WriteModel(Utf8JsonWriter json, ModelEntry model)
    {
        json.WriteStartObject();
        json.WriteString("id", model.Name);
        json.WriteString("object", "model");
        json.WriteNumber("created", _created);
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
