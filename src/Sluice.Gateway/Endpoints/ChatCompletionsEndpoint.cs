using System.Buffers;
using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Hosting;
using Sluice.Gateway.Streaming;
using Sluice.Gateway.Tenancy;
using Sluice.Protocol;
using Sluice.Protocol.Chat;
using Sluice.Protocol.OpenAI;
using Sluice.Providers;

namespace Sluice.Gateway.Endpoints;

/// <summary><c>POST /v1/chat/completions</c>: OpenAI-compatible, streamed (SSE) or not.</summary>
internal sealed class ChatCompletionsEndpoint(
    ModelCatalog catalog,
    GatewayOptions options,
    StreamRelay relay,
    ModelGroupRegistry groups,
    CallAdmission admission,
    StreamRegistry streams)
{
    private readonly ChatRequestLimits _limits = new() { MaxPromptChars = options.Limits.MaxPromptChars };
    private readonly TimeSpan _pingInterval = TimeSpan.FromSeconds(options.Streaming.PingIntervalSeconds);

    public async Task HandleAsync(HttpContext context)
    {
        var start = Stopwatch.GetTimestamp();
        var requestId = RequestIds.Next();
        context.Response.Headers["x-request-id"] = requestId;

        ChatRequest request;
        ModelEntry model;
        var lease = CallLease.None;
        UsageOwner? owner = null;
        try
        {
            var body = await RequestBody.ReadAsync(context.Request, options.Limits.MaxRequestBodyBytes, context.RequestAborted);
            request = ChatRequestParser.Parse(body, _limits);
            model = await ResolveModelAsync(catalog, groups, request.Model, context.RequestAborted);

            // A virtual key bills its team: access, credits and limits are checked before the model is called.
            (lease, owner) = await TenantCall.AdmitAsync(context, admission, model.Name, request);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        if (request.Model.Length == 0)
        {
            request = ChatRequests.WithModel(request, model.Name);
        }

        await using (lease)
        {
            await ServeAsync(context, request, model, new RelaySettings(requestId, start, _pingInterval, options.Streaming.MaxPendingBytes, owner));
        }
    }

    private async Task ServeAsync(HttpContext context, ChatRequest request, ModelEntry model, RelaySettings settings)
    {
        var completionId = "chatcmpl-" + settings.RequestId;
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (request.Stream)
        {
            var format = new OpenAIStreamFormat(new OpenAIChunkWriter(completionId, created, model.Name), request.IncludeUsage);
            await relay.RelayAsync(context, model.Backend, request, format, settings, streams.Begin(context, format));
            return;
        }

        try
        {
            var (answer, usage) = await relay.CollectAsync(context, model.Backend, request, settings);
            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.ContentType = "application/json";
            OpenAICompletionWriter.Write(context.Response.BodyWriter, completionId, created, model.Name, answer.Choices, usage);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (ChatException ex)
        {
            await ErrorResponses.WriteAsync(context, ex);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left; usage was recorded as abandoned.
        }
    }

    /// <summary>A configured model, alias or group by name (the first model when empty), without a store lookup.</summary>
    internal ModelEntry ResolveConfiguredModel(string name) =>
        name.Length == 0 ? catalog.Models[0]
        : catalog.TryGet(name, out var entry) ? entry
        : throw new ChatException(StatusCodes.Status404NotFound, new ErrorInfo(
            $"The model '{name}' does not exist. GET /v1/models lists the models this gateway serves.",
            ErrorTypes.InvalidRequest, "model", "model_not_found"));

    /// <summary>The model, alias or group (configured or created through the API); the first model when none is named.</summary>
    internal static async ValueTask<ModelEntry> ResolveModelAsync(ModelCatalog catalog, ModelGroupRegistry groups, string name, CancellationToken cancellationToken)
    {
        if (name.Length == 0)
        {
            return catalog.Models[0];
        }

        if (await groups.ResolveAsync(name, cancellationToken) is { } entry)
        {
            return entry;
        }

        throw new ChatException(StatusCodes.Status404NotFound, new ErrorInfo(
            $"The model '{name}' does not exist. GET /v1/models lists the models this gateway serves.",
            ErrorTypes.InvalidRequest, "model", "model_not_found"));
    }
}

/// <summary>Short, unique, URL-safe request ids.</summary>
internal static class RequestIds
{
    public static string Next() => Guid.CreateVersion7().ToString("N");
}
