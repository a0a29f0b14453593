using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Accounting;
using Sluice.Gateway.Calls;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Http;
using Sluice.Gateway.Streaming;
using Sluice.Protocol;
using Sluice.Protocol.Ollama;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary>
/// The Ollama API: <c>POST /api/chat</c>, <c>POST /api/generate</c> (NDJSON streams, or one object with
/// <c>"stream": false</c>), <c>GET /api/tags</c>, <c>GET /api/version</c>, <c>POST /api/show</c>, <c>GET /api/ps</c>,
/// <c>POST /api/pull</c> (a served model is "pulled" already; creating or deleting models is refused with a 403) — so Ollama front
/// ends can use any model the gateway serves, groups created through the API included. Errors (401 included) are
/// <c>{"error": "…"}</c>.
/// </summary>
/// <remarks>
/// Ollama model names carry a tag (<c>llama3:latest</c>); the resolver also finds the model without it. Answers
/// echo the name the client sent, as Ollama does.
/// </remarks>
internal sealed class OllamaEndpoints(HttpCalls calls, ModelResolver resolver, GatewayOptions options, TimeProvider time, ModelActivity activity)
{
    /// <summary>The Ollama API version reported by <c>/api/version</c>: the one whose behaviour these endpoints follow.</summary>
    public const string CompatibleVersion = "0.12.0";

    private readonly string _modifiedAt = OllamaStreamWriter.Timestamp(time.GetUtcNow());

    public Task ChatAsync(HttpContext context) => calls.RunAsync(context, CallDialect.OllamaChat, Answer(OllamaApi.Chat));

    public async Task GenerateAsync(HttpContext context)
    {
        if (await calls.BeginAsync(context, CallDialect.OllamaGenerate) is not { } call)
        {
            return;
        }

        try
        {
            call.Request = CallDialect.OllamaGenerate.Parse(call.Body, calls.Pipeline.Limits);
            if (call.Request.Messages.Count == 0)
            {
                // /api/generate without a prompt only loads the model in Ollama: answer "loaded" at once.
                _ = await resolver.ResolveAsync(call.Request.Model, call.Dialect, context.RequestAborted);
                context.Response.ContentType = call.Request.Stream ? "application/x-ndjson" : "application/json";
                new OllamaStreamWriter(call.Request.Model, OllamaApi.Generate, call.StartTimestamp).WriteLoaded(context.Response.BodyWriter);
                await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
                return;
            }
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

        await calls.RunAsync(context, call, Answer(OllamaApi.Generate));
    }

    public Task TagsAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteStartArray("models"u8);
        foreach (var model in resolver.All)
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

    /// <summary>
    /// <c>GET /api/ps</c>: the models that answered within the last five minutes (Ollama's default keep-alive), each with
    /// <c>expires_at</c> = its last answer + five minutes. Sizes are 0: Sluice keeps no weights in memory.
    /// </summary>
    public Task RunningAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteStartArray("models"u8);
        foreach (var (name, expiresAt) in activity.Running())
        {
            if (!resolver.TryGet(name, out var model))
            {
                continue;
            }

            json.WriteStartObject();
            json.WriteString("name"u8, model.Name);
            json.WriteString("model"u8, model.Name);
            json.WriteNumber("size"u8, 0);
            json.WriteString("digest"u8, Digest(model.Name));
            WriteDetails(json, model);
            json.WriteString("expires_at"u8, OllamaStreamWriter.Timestamp(expiresAt));
            json.WriteNumber("size_vram"u8, 0);
            json.WriteNumber("context_length"u8, model.Options.ContextWindow);
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

    /// <summary>Ollama's endpoints that change the set of models, which a gateway serving its configuration does not do.</summary>
    public static IReadOnlyList<(string Method, string Path)> ModelManagement { get; } =
    [
        ("POST", "/api/create"), ("POST", "/api/copy"), ("POST", "/api/push"), ("DELETE", "/api/delete"),
        ("HEAD", "/api/blobs/{digest}"), ("POST", "/api/blobs/{digest}"),
    ];

    /// <summary>
    /// <c>POST /api/pull</c>: a model this gateway serves is there already — <c>{"status": "success"}</c> at once (as the
    /// last line of Ollama's progress stream, or as the one object with <c>"stream": false</c>); any other is the unknown
    /// model's 404. Front ends that pull before they chat then work unchanged.
    /// </summary>
    public async Task PullAsync(HttpContext context)
    {
        if (await ReadModelRequestAsync(context, OllamaRequestParser.ParsePull) is not (_, var stream))
        {
            return;
        }

        context.Response.ContentType = stream ? "application/x-ndjson" : "application/json";
        context.Response.BodyWriter.Write(stream ? "{\"status\":\"success\"}\n"u8 : "{\"status\":\"success\"}"u8);
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    /// <summary>
    /// Reads a body that names a model (<paramref name="parse"/> also returns whether to stream) and resolves it; on a
    /// refusal the error is written in Ollama's shape and the result is null.
    /// </summary>
    private async Task<(ModelEntry Model, bool Stream)?> ReadModelRequestAsync(HttpContext context, Func<ReadOnlyMemory<byte>, (string Model, bool Stream)> parse)
    {
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            var (name, stream) = parse(body);
            return (await resolver.ResolveAsync(name, CallDialect.OllamaChat, context.RequestAborted), stream);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex, ErrorDialect.Ollama);
            return null;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>The <see cref="ModelManagement"/> endpoints: a 403 saying where models come from instead of "no endpoint".</summary>
    public static Task RefuseModelManagementAsync(HttpContext context) => ErrorResponses.WriteAsync(
        context,
        new ChatException(403, new ErrorInfo(
            $"{context.Request.Method} {context.Request.Path} is not available: Sluice serves the models in its configuration (sluice.json) and model groups " +
            "(POST /api/model-groups/create with the master key); it does not create, copy, push or delete models through the Ollama API. GET /api/tags lists the models it serves.",
            ErrorTypes.Permission)),
        ErrorDialect.Ollama);

    public async Task ShowAsync(HttpContext context)
    {
        if (await ReadModelRequestAsync(context, static body => (OllamaRequestParser.ParseShow(body), false)) is not (var model, _))
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
        foreach (var capability in Capabilities(model))
        {
            json.WriteStringValue(capability);
        }

        json.WriteEndArray();
        json.WriteString("modified_at"u8, _modifiedAt);
        json.WriteEndObject();
        json.Flush();
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    /// <summary>Answers carry the name the client sent; the backend and accounting get the catalog's name.</summary>
    private static HttpAnswer Answer(OllamaApi api) => new(
        call => new OllamaStreamFormat(new OllamaStreamWriter(call.RequestedModel, api, call.StartTimestamp)),
        (output, call, answer, usage) =>
            new OllamaStreamWriter(call.RequestedModel, api, call.StartTimestamp).WriteComplete(output, answer.Choices.FirstOrDefault(c => c.Index == 0), usage));

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

    /// <summary>
    /// Ollama's capability names: <c>embedding</c> for an embedding model; otherwise <c>completion</c> and <c>tools</c>, and
    /// <c>vision</c> when the model takes images (upstreams unless <c>Vision: false</c>, simulations with <c>Vision: true</c>).
    /// </summary>
    private static IEnumerable<string> Capabilities(ModelEntry model)
    {
        if (model.Options.Provider == Providers.Simulation.SimulatedEmbeddingBackend.ProviderName)
        {
            yield return "embedding";
            yield break;
        }

        yield return "completion";
        yield return "tools";
        // A group's members may differ, so only a declared Vision counts for it.
        var known = model.Options.Provider is not (Providers.Simulation.SimulatedChatBackend.ProviderName or ModelEntry.GroupProvider);
        if (model.Options.Vision ?? known)
        {
            yield return "vision";
        }
    }

    /// <summary>A stable digest per model name, since clients use digests to tell models apart.</summary>
    private static string Digest(string name) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)));
}
