using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.Ollama;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// The Ollama API: <c>POST /api/chat</c>, <c>POST /api/generate</c> (NDJSON streams, or one object with
/// <c>"stream": false</c>), <c>GET /api/tags</c>, <c>GET /api/version</c>, <c>POST /api/show</c> — so Ollama front
/// ends can use any model the gateway serves. Errors are <c>{"error": "…"}</c>.
/// </summary>
/// <remarks>
/// Ollama model names carry a tag (<c>llama3:latest</c>); a name ending in <c>:latest</c> also finds the model
/// without it. Answers echo the name the client sent, as Ollama does.
/// </remarks>
internal sealed class OllamaEndpoints(ModelCatalog catalog, GatewayOptions options, StreamRelay relay, CallAdmission admission)
{
    /// <summary>The Ollama API version reported by <c>/api/version</c>: the one whose behaviour these endpoints follow.</summary>
    public const string CompatibleVersion = "0.12.0";

    private const string LatestTag = ":latest";
    private readonly ChatRequestLimits _limits = new() { MaxPromptChars = options.Limits.MaxPromptChars };
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);
    private readonly string _modifiedAt = OllamaStreamWriter.Timestamp(DateTimeOffset.UtcNow);

    public Task ChatAsync(HttpContext context) => GenerateAsync(context, OllamaApi.Chat);

    public Task GenerateAsync(HttpContext context) => GenerateAsync(context, OllamaApi.Generate);

    public Task TagsAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteStartArray("models"u8);
        foreach (var model in catalog.Models)
        {
            json.WriteStartObject();
            json.WriteString("name"u8, model.Name);
            json.WriteString("model"u8, model.Name);
            json.WriteString("modified_at"u8, _modifiedAt);
            json.WriteNumber("size"u8, 0);
            json.WriteString("digest"u8, Digest(model.Name));
            WriteDetails(json, model);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
        json.Flush();
        return Task.CompletedTask;
    }

    public static Task VersionAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("version"u8, CompatibleVersion);
        json.WriteEndObject();
        json.Flush();
        return Task.CompletedTask;
    }

    public async Task ShowAsync(HttpContext context)
    {
        ModelEntry model;
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            model = Resolve(OllamaRequestParser.ParseShow(body));
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Ollama);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("modelfile"u8, $"# {model.Name}: served by Sluice (provider {model.Options.Provider}); there is no Modelfile.");
        json.WriteString("parameters"u8, string.Empty);
        json.WriteString("template"u8, "{{ .Prompt }}");
        if (model.Options.Description is { } description)
        {
            json.WriteString("license"u8, description);
        }

        WriteDetails(json, model);
        json.WriteStartObject("model_info"u8);
        json.WriteString("general.architecture"u8, model.Options.Provider);
        json.WriteString("general.basename"u8, model.Name);
        json.WriteNumber($"{model.Options.Provider}.context_length", model.Options.ContextWindow);
        json.WriteEndObject();
        json.WriteStartArray("capabilities"u8);
        json.WriteStringValue("completion"u8);
        json.WriteStringValue("tools"u8);
        json.WriteEndArray();
        json.WriteString("modified_at"u8, _modifiedAt);
        json.WriteEndObject();
        json.Flush();
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    private async Task GenerateAsync(HttpContext context, OllamaApi api)
    {
        var start = Stopwatch.GetTimestamp();
        var requestId = RequestIds.Next();
        context.Response.Headers["x-request-id"] = requestId;

        ChatRequest request;
        ModelEntry model;
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            request = api == OllamaApi.Chat ? OllamaRequestParser.ParseChat(body, _limits) : OllamaRequestParser.ParseGenerate(body);
            model = Resolve(request.Model);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Ollama);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        // Answers carry the name the client sent; the backend and accounting get the catalog's name.
        var writer = new OllamaStreamWriter(request.Model, api, start);
        if (request.Model != model.Name)
        {
            request = ChatRequests.WithModel(request, model.Name);
        }

        if (request.Messages.Count == 0)
        {
            // /api/generate without a prompt only loads the model in Ollama: answer "loaded" at once.
            context.Response.ContentType = request.Stream ? "application/x-ndjson" : "application/json";
            writer.WriteLoaded(context.Response.BodyWriter);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
            return;
        }

        CallLease lease;
        UsageOwner? owner;
        try
        {
            (lease, owner) = await TenantCall.AdmitAsync(context, admission, model.Name, request);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Ollama);
            return;
        }

        await using (lease)
        {
            await ServeAsync(context, request, model, writer, new RelaySettings(requestId, start, _pingInterval, options.Streaming.MaxPendingBytes, owner));
        }
    }

    private async Task ServeAsync(HttpContext context, ChatRequest request, ModelEntry model, OllamaStreamWriter writer, RelaySettings settings)
    {
        if (request.Stream)
        {
            await relay.RelayAsync(context, model.Backend, request, new OllamaStreamFormat(writer), settings);
            return;
        }

        try
        {
            var (answer, usage) = await relay.CollectAsync(context, model.Backend, request, settings);
            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/json";
            writer.WriteComplete(context.Response.BodyWriter, answer.Choices.FirstOrDefault(c => c.Index == 0), usage);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Ollama);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left; usage was recorded as abandoned.
        }
    }

    private ModelEntry Resolve(string name)
    {
        if (catalog.TryGet(name, out var entry)
            || (name.EndsWith(LatestTag, StringComparison.Ordinal) && catalog.TryGet(name[..^LatestTag.Length], out entry)))
        {
            return entry;
        }

        throw new ChatException(StatusCodes.Status404NotFound, new ErrorInfo(
            $"model '{name}' not found. GET /api/tags lists the models this gateway serves (Sluice cannot pull models).",
            ErrorTypes.InvalidRequest, "model", "model_not_found"));
    }

    private static void WriteDetails(Utf8JsonWriter json, ModelEntry model)
    {
        json.WriteStartObject("details"u8);
        json.WriteString("parent_model"u8, string.Empty);
        json.WriteString("format"u8, "sluice"u8);
        json.WriteString("family"u8, model.Options.Provider);
        json.WriteStartArray("families"u8);
        json.WriteStringValue(model.Options.Provider);
        json.WriteEndArray();
        json.WriteString("parameter_size"u8, string.Empty);
        json.WriteString("quantization_level"u8, string.Empty);
        json.WriteEndObject();
    }

    /// <summary>A stable digest per model name, since clients use digests to tell models apart.</summary>
    private static string Digest(string name) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)));
}
